"""Issue #11: warnings that hold up on realistic sensor data. The shipped landslide
profile through the node's sampler and step order (bench/warnings.py) on a short subset
of the evaluation corpus, the config checks for rules that cannot fire, and the fault
behaviour per SPEC section 4 fault kind (protocol/TRIP.md 3.2)."""
import math
import random

import pytest

from bench import warnings as corpus
from firmware import nodeconfig
from protocol import ruleparse
from protocol.trip import BLIND, CLEAR, RATE, TANGENT, TRIP, Rule, TripEngine
from protocol.tripstate import NO_FAILURE

DISP = 0x10


def _run_family(fam, base, cases, seed=7):
    res = corpus.evaluate(corpus.shipped_disp_rules(), (fam,), (base,), cases, seed)
    return res[(fam, base)]


@pytest.mark.parametrize("base", [60, 600])
def test_creep_to_failure_gets_red_at_least_30_min_ahead(base):
    r = _run_family("creep", base, 3)
    assert r["no_red"] == 0 and r["red_lead_min"] >= 30, r


@pytest.mark.parametrize("fam", ["rainstep", "faults"])
def test_still_and_stepping_slopes_with_faulty_sensors_never_reach_orange(fam):
    r = _run_family(fam, 600, 2)
    assert r["false_red_per_year"] == 0 and r["false_orange_per_year"] == 0, r


def test_a_decelerating_slope_never_reaches_red_and_ends_normal():
    r = _run_family("decel", 600, 3)
    assert r["false_red_per_year"] == 0 and r["above_normal_at_end"] == 0, r


# -- rules that cannot fire at the configured interval ---------------------------------------

@pytest.mark.parametrize("wire, sample_s, fast, ok", [
    ([1, DISP, RATE, 2, 3600, 200, 50, 0], 600, 0, True),      # 3 samples per half
    ([1, DISP, RATE, 2, 1800, 200, 50, 0], 600, 0, False),
    ([1, DISP, 4, 4, 7200, 3600, 900, 0], 600, 10, True),      # one per sub-window, and
    ([1, DISP, 4, 4, 7200, 3600, 900, 0], 900, 10, False),     # two when intensified
    ([1, DISP, 4, 4, 7200, 3600, 900, 0], 600, 0, False),
    ([1, DISP, 4, 4, 7200, 3600, 900, 0], 300, 0, True),
    ([1, DISP, TANGENT, 4, 3600, 50, 850, 0], 600, 0, True),
    ([1, DISP, TANGENT, 4, 3600, 50, 850, 0], 601, 0, False),
    ([1, 0x08, 3, 2, 600, 100, 10, 0], 600, 0, True),           # a sum fires at any interval
])
def test_check_timing_names_a_rule_that_cannot_fire(wire, sample_s, fast, ok):
    bad = ruleparse.check_timing([Rule.from_wire(wire)], sample_s, fast)
    if ok:
        assert bad is None
    else:
        assert bad[0] == 0 and "rule 1" in bad[1] and "window_s" in bad[1]


def test_node_config_refuses_a_rule_that_cannot_fire_at_its_sampling_interval():
    with pytest.raises(nodeconfig.ConfigError) as ei:
        corpus.profile_config([[1, DISP, RATE, 2, 1800, 200, 50, 0]], 600, 10)
    msg = str(ei.value)
    assert "rules[0]" in msg and "rule 1" in msg and ">= 3600" in msg


# -- TANGENT_ANGLE ---------------------------------------------------------------------------

def test_tangent_angle_defaults_by_level_and_compares_tangents():
    for level, alpha, tan_pm in ((1, 450, 1000), (3, 800, 5671), (4, 850, 11430)):
        r = Rule.from_dict({"id": 1, "chan": "displacement.0", "kind": "tangent", "level": level,
                            "window_s": 3600, "v0": 50, "hold_s": 0})
        assert r.alpha == alpha and r.tan_pm == tan_pm and r.quiet_s == 0


def test_tangent_angle_counts_in_the_direction_of_v0():
    # a sensor counting down as the slope moves: v0 negative
    eng = TripEngine([Rule.from_wire([1, DISP, TANGENT, 4, 3600, -100, 850, 0])])
    ev = []
    for t in range(0, 3 * 3600, 60):
        ev += eng.update(DISP, t, -(t * 1200) // 3600)      # 12 mm/h: 12 v0, 85.2 deg
    assert [(e.event, e.level) for e in ev] == [(TRIP, 4)] and ev[0].value >= 11430


def test_learnt_v0_is_never_below_its_floor():
    rnd = random.Random(3)
    eng = TripEngine([Rule.from_wire([1, DISP, TANGENT, 3, 3600, 50, 800, 0, 7200])])
    for t in range(0, 12 * 3600, 60):      # a still slope with 0.3 mm of noise
        assert eng.update(DISP, t, int(rnd.gauss(0, 30))) == []
    assert eng._by_chan[DISP][0].v0 == 50


# -- faults (TRIP.md 3.2) --------------------------------------------------------------------

def _moving(rules, until=7200):
    eng = TripEngine([Rule.from_wire(r) for r in rules])
    ev = []
    for t in range(0, until, 60):
        ev += eng.update(DISP, t, t * 2000 // 3600)        # 20 mm/h
    return eng, ev


ORANGE_RATE = [1, DISP, RATE, 3, 3600, 1000, 200, 1800]


@pytest.mark.parametrize("fault, escalates", [(1, True), (8, True), (4, False), (5, False),
                                              (6, False), (0x207, False), (11, False)])
def test_a_fault_run_at_orange_raises_one_blind_and_a_broken_wire_escalates(fault, escalates):
    eng, ev = _moving([ORANGE_RATE])
    assert eng.level(DISP) == 3
    ev = eng.update(DISP, 7200, None, fault) + eng.update(DISP, 7260, None, fault)
    assert [(e.event, e.prev_level, e.level, e.value) for e in ev] == [
        (BLIND, 3, 4 if escalates else 3, fault & 0xFF)]
    # never frozen: the escalation and the blind rule end with the hold (1800 s)
    assert eng.tick(7200 + 1799) == []
    assert [(e.event, e.level) for e in eng.tick(7200 + 1800)] == [(CLEAR, 0)]


def test_over_range_in_the_direction_of_motion_counts_as_the_range_limit():
    eng, _ = _moving([ORANGE_RATE])
    # the caller knows the span's end: the clipped reading at it keeps the rate going
    ev = eng.update(DISP, 7200, 4000, 2)
    assert [(e.event, e.level) for e in ev] == [(BLIND, 3)]
    assert eng.metric(1) >= 1000
    # a later clipped reading below the last good one still counts as at least that one
    eng.update(DISP, 7260, 100, 2)
    assert eng._spike[DISP].last >= 4000


def test_faults_on_a_channel_at_normal_raise_nothing():
    eng = TripEngine([Rule.from_wire(ORANGE_RATE)])
    for t in range(0, 7200, 60):
        kind = (1, 2, 3, 4, 5, 8, 11)[t // 60 % 7]
        assert eng.update(DISP, t, None, kind) == []
    assert eng.level() == 0


def test_a_broken_wire_at_red_raises_blind_without_a_level_above_red():
    eng, ev = _moving([ORANGE_RATE, [2, DISP, RATE, 4, 3600, 1500, 200, 3600]])
    assert eng.level(DISP) == 4 and [e.event for e in ev][0] == TRIP
    ev = eng.update(DISP, 7200, None, 1)
    assert [(e.event, e.prev_level, e.level) for e in ev] == [(BLIND, 4, 4)]



# -- INVVEL: onset and v_min (TRIP.md 4.4) ---------------------------------------------------

def test_a_trend_below_v_min_intensifies_sampling_but_trips_nothing():
    # creep with 1/v linear to zero at 6 h, 3 mm ln: 1 mm/h at 3 h before failure;
    # believed from 4 mm/h only: near (the node samples faster), no event, until then
    tf = 6 * 3600
    eng = TripEngine([Rule.from_wire([2, DISP, 4, 4, 7200, 3600, 850, 3600, 400])])
    seen_near = False
    for t in range(0, tf - 45 * 60, 300):
        assert eng.update(DISP, t, int(round(300 * math.log(tf / (tf - t))))) == []
        seen_near = seen_near or eng.near()
    assert seen_near and eng.metric(2) == NO_FAILURE
