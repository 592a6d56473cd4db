"""Issue #11's two safety properties over generated displacement traces, run through the
shipped landslide profile as a node runs it (bench/warnings.py: the node's config
checks, sampler and step order, intensified sampling while a rule is near):

- steady creep at any speed never raises a forecast (INVVEL) or tangent-angle alarm,
  nor red by any rule;
- accelerating creep to failure (Voight's law, alpha 1.7..2.2, 5..30 mm/h an hour before
  failure) gets red at least 30 min before failure.

Both with the sensor's Gaussian noise (0.1..0.5 mm), 0.01 mm counts, drift and single
spikes. Hypothesis draws new examples every run (tests/conftest.py: no derandomize, no
example database); a failure prints the example, its noise seed and the
@reproduce_failure blob, and the pytest header the run's seed (--hypothesis-seed=N)."""
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import warnings as corpus
from protocol.trip import INVVEL, TANGENT

HOUR = 3600
SAFETY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _profile(base):
    return corpus.profile_config(corpus.shipped_disp_rules(), base, 10)


CFG = {60: _profile(60), 600: _profile(600)}


@SAFETY
@given(st.floats(0.0, 30.0), st.floats(0.1, 0.5), st.sampled_from((60, 600)),
       st.integers(0, 2 ** 32))
def test_steady_creep_never_raises_a_forecast_or_red(v_mm_h, noise, base, seed):
    rnd = random.Random(seed)
    sensor = corpus.Sensor(corpus.steady(v_mm_h), rnd, noise, rnd.uniform(50.0, 100.0))
    events, _ = corpus.run_case(CFG[base], sensor, 10 * HOUR)
    bad = [e for e in events if e.rule_kind in (INVVEL, TANGENT) or e.level >= 4]
    assert bad == [], (v_mm_h, noise, base, seed, bad)


@SAFETY
@given(st.floats(1.7, 2.2), st.floats(5.0, 30.0), st.floats(0.0, 0.2), st.floats(0.1, 0.5),
       st.integers(0, 2 ** 32))
def test_creep_to_failure_gets_red_at_least_30_min_ahead(alpha, v1h, v_bg, noise, seed):
    # The node sees the last 10 h of a creep that fails at t_f (the wire then breaks),
    # sampled every 60 s, moving >= 5 mm/h an hour before failure. Slower ones under
    # 0.5 mm of noise can get red 10-30 min ahead only (3 mm/h, alpha 1.5..1.75; also at
    # 600 s sampling): the known limit, TRIP.md 4.4.
    base = 60
    rnd = random.Random(seed)
    t_f = 10 * HOUR
    model = corpus.voight(alpha, v1h, v_bg, t_f)
    sensor = corpus.Sensor(model, rnd, noise, rnd.uniform(50.0, 100.0), t_fail=t_f)
    events, _ = corpus.run_case(CFG[base], sensor, t_f)
    reds = [e.t for e in events if e.level >= 4 and e.prev_level < 4]
    assert reds and t_f - reds[0] >= 1800, (alpha, v1h, v_bg, noise, base, seed, events)
