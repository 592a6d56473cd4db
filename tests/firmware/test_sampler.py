"""Sampler: grid scheduling, regular runs, intensified interval, fault runs, packing."""
import pytest

from firmware.sampler import Sampler
from protocol import readings
from protocol.channels import chan_id

RAIN = chan_id(1)
DISP = chan_id(2)
LVL = chan_id(3)


def run(s, t_end, t=0, value=lambda c, t: 100 + t // 60, fault=lambda c, t: 0, intensify=None):
    """Drive the sampler second by second like the app does; returns payloads with t_ref."""
    out = []
    while t <= t_end:
        if intensify is not None:
            s.set_intensified(intensify(t), t)
        if s.report_due(t):
            out.append((t, s.take(t)))
        for c in s.due(t):
            f = fault(c, t)
            s.add(c, s.sample_time(c, t), None if f else value(c, t), f)
        t += 1
    return out


def times(block, t_ref):
    return [t_ref - block.age + k * block.step for k in range(block.count)]


def test_one_run_per_channel_per_report():
    s = Sampler([RAIN, DISP], sample_s=60, intensified_s=10, report_s=600)
    reports = run(s, 1800)
    assert len(reports) == 3
    t_ref, p = reports[1]
    blocks = readings.decode(p)
    assert [b.chan for b in blocks] == [RAIN, DISP]
    for b in blocks:
        assert b.count == 10 and b.step == 60
        assert times(b, t_ref) == list(range(600, 1200, 60))
    assert blocks[1].values == [100 + t // 60 for t in range(600, 1200, 60)]


def test_intensified_interval_starts_a_new_run_and_reports_sooner():
    s = Sampler([DISP], sample_s=60, intensified_s=10, report_s=600)
    reports = run(s, 1300, intensify=lambda t: 330 <= t < 1000)
    steps = []
    for t_ref, p in reports:
        for b in readings.decode(p):
            steps.append(b.step if b.count > 1 else None)
            ts = times(b, t_ref)
            assert ts == sorted(ts) and ts[-1] <= t_ref
    assert 10 in steps and 60 in steps
    # while intensified, reports went out at least every 60 s
    intensified_refs = [t for t, _ in reports if 400 <= t <= 1000]
    assert len(intensified_refs) >= 9


def test_all_samples_arrive_once_in_time_order():
    s = Sampler([DISP, LVL], sample_s=60, intensified_s=5, report_s=900)
    reports = run(s, 5000, intensify=lambda t: (t // 700) % 2 == 1)
    seen = {DISP: [], LVL: []}
    for t_ref, p in reports:
        for b in readings.decode(p):
            seen[b.chan].extend(times(b, t_ref))
    for c in seen:
        assert seen[c] == sorted(set(seen[c]))
        assert seen[c][0] == 0
        gaps = {b - a for a, b in zip(seen[c], seen[c][1:], strict=False)}
        assert gaps <= {5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60}


def test_fault_samples_travel_as_fault_runs_not_values():
    s = Sampler([LVL], sample_s=60, intensified_s=10, report_s=600)
    reports = run(s, 600, fault=lambda c, t: 8 if 180 <= t < 420 else 0)
    (t_ref, p), = reports
    blocks = readings.decode(p)
    assert [b.values is None for b in blocks] == [False, True, False]
    assert blocks[1].fault == 8 and blocks[1].count == 4
    assert times(blocks[1], t_ref) == [180, 240, 300, 360]
    assert blocks[0].count == 3 and blocks[2].count == 3


def test_payload_always_fits_a_frame():
    s = Sampler([RAIN, DISP, LVL], sample_s=10, intensified_s=1, report_s=3600)
    big = lambda c, t: (t * 7919) % 200000 - 100000   # noqa: E731  (deltas need 3 bytes)
    reports = run(s, 1200, value=big)
    assert len(reports) > 3
    for _t_ref, p in reports:
        assert len(p) <= 160
        readings.decode(p)


def test_late_sample_breaks_the_run():
    s = Sampler([DISP], sample_s=60, intensified_s=10, report_s=600)
    s.add(DISP, 0, 1)
    s.add(DISP, 60, 2)
    s.add(DISP, 125, 3)        # loop held up 5 s: stamped with the real time
    s.add(DISP, 180, 4)
    blocks = readings.decode(s.take(200))
    assert [(b.count, b.step) for b in blocks] == [(2, 60), (2, 55)]
    assert sum(b.count for b in blocks) == 4


def test_sample_time_snaps_to_grid_within_slack():
    s = Sampler([DISP], sample_s=60, intensified_s=10, report_s=600)
    s.add(DISP, 0, 1)
    assert s.sample_time(DISP, 61) == 60
    assert s.sample_time(DISP, 65) == 65


def test_bad_intervals_are_refused():
    with pytest.raises(ValueError, match="intensified_s"):
        Sampler([DISP], sample_s=60, intensified_s=120, report_s=600)
