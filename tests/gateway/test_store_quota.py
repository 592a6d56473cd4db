"""Quota (DESIGN.md I4): thin old routine readings before dropping anything; alarms and
the readings around them are never touched; every thinned/dropped reading is counted
and reported upstream."""
import sqlite3
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.records import FLAG_THINNED, Reading
from gateway.store import plan_thinning

HOUR = 3600


def fill(store, mk, t_end, nodes=(1, 2), n=3000, step=60):
    """n old readings per node on a rain and a level channel, one frame per 10."""
    t0 = t_end - n * step
    for node in nodes:
        recs = []
        for i in range(n):
            seq = 1 + i // 10
            t = t0 + i * step
            recs.append(Reading(node, seq, 2 * (i % 10), mk.RAIN, t, 1 + i % 3))
            recs.append(Reading(node, seq, 2 * (i % 10) + 1, mk.LEVEL, t, 5000 + i))
        store.commit(recs)
    return t0


def rows(path):
    with sqlite3.connect(path) as db:
        return db.execute("SELECT node, seq, idx, chan, t, value, flags FROM readings").fetchall()


def test_thinning_keeps_alarm_windows_sums_rain_and_counts(make_store, store_path, mk):
    now = int(time.time())
    s = make_store(live_horizon_s=300)
    t0 = fill(s, mk, now - 600)
    t_alarm = t0 + 1000 * 60
    s.commit([mk.alarm(1, 9999, t_alarm)])
    s.commit([Reading(1, 10_000, 0, mk.LEVEL, now - 5, 42)])       # live: never thinned
    before = rows(store_path)
    rain_before = {n: sum(r[5] for r in before if r[0] == n and r[3] == mk.RAIN) for n in (1, 2)}
    s.quota_bytes = int(s.used_bytes() * 0.6)
    thinned, dropped = s.enforce_quota()
    after = rows(store_path)
    assert dropped == 0 and thinned > 0
    assert len(before) - len(after) == thinned
    assert s.counters()["readings_thinned"] == thinned and s.counters()["readings_dropped"] == 0
    assert s.used_bytes() <= s.quota_bytes * 0.9
    # rain: the sum is kept, in fewer readings
    rain_after = {n: sum(r[5] for r in after if r[0] == n and r[3] == mk.RAIN) for n in (1, 2)}
    assert rain_after == rain_before
    # readings within an hour of the alarm on node 1 are all there, unchanged
    near = [r for r in before if r[0] == 1 and abs(r[4] - t_alarm) <= HOUR]
    assert near and set(near) <= set(after)
    # ... but node 2 at the same time is fair game
    assert any(r not in after for r in before if r[0] == 2 and abs(r[4] - t_alarm) <= HOUR)
    assert (1, 10_000, 0, mk.LEVEL, now - 5, 42, 0) in after
    assert all(r[6] & FLAG_THINNED for r in after if r not in before)
    assert s.pending_alarms()[0][1].t == t_alarm


def test_over_quota_after_thinning_drops_oldest_routine_but_never_alarm_windows(
        make_store, store_path, mk):
    now = int(time.time())
    s = make_store(live_horizon_s=300)
    t0 = fill(s, mk, now - 600, nodes=(1,), n=4000)
    t_alarm = t0 + 100 * 60
    s.commit([mk.alarm(1, 9999, t_alarm)])
    before = rows(store_path)
    s.quota_bytes = 8192                                          # cannot be met
    thinned, dropped = s.enforce_quota()
    after = rows(store_path)
    assert thinned > 0 and dropped > 0
    assert len(before) - len(after) == thinned + dropped
    c = s.counters()
    assert (c["readings_thinned"], c["readings_dropped"], c["alarms_dropped"]) == \
        (thinned, dropped, 0)
    near = [r for r in before if abs(r[4] - t_alarm) <= HOUR]
    assert set(near) <= set(after) and set(after) == set(near)
    assert len(s.pending_alarms()) == 1


def test_thinning_reported_upstream(broker, make_store, store_path, mk, make_uplink, subscriber):
    sub = subscriber()
    now = int(time.time())
    s = make_store(live_horizon_s=300)
    fill(s, mk, now - 600, nodes=(3,), n=2000)
    s.quota_bytes = int(s.used_bytes() * 0.7)
    thinned, _ = s.enforce_quota()
    assert thinned > 0
    left = len(rows(store_path))
    make_uplink(s)
    assert sub.wait_for(lambda x: len(x.readings()) >= left, 60)
    got = sub.readings()
    assert len(got) == left and any(r[6] & FLAG_THINNED for r in got)
    assert all(b[7][1] == thinned and b[7][2] == 0 for b in sub.batches())


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 50)), min_size=0, max_size=60),
       st.sampled_from([8, 24]))
def test_plan_thinning_halves_and_keeps_rain_sum(items, chan):
    group = [(i + 1, 1, 1, i, chan, t, v, None, 0, 0) for i, (t, v) in enumerate(items)]
    updates, deletes = plan_thinning([group], 1)
    assert len(deletes) == len(group) // 2
    kept = {r[0]: r for r in group if r[0] not in deletes}
    for value, flags, level, rid in updates:
        assert rid in kept and flags & FLAG_THINNED and level == 1
        kept[rid] = kept[rid][:6] + (value,) + kept[rid][7:]
    if chan == 8:                                      # rain: nothing is lost in the sum
        assert sum(r[6] for r in kept.values()) == sum(v for _, v in items)
    else:                                              # level: kept values are real samples
        assert {r[6] for r in kept.values()} <= {v for _, v in items}


def test_alarm_marks_are_forgotten_only_when_no_reading_is_near(make_store, mk):
    now = int(time.time())
    s = make_store()
    s.commit([mk.alarm(1, 1, now - 10 * HOUR), mk.alarm(1, 2, now - 2 * HOUR)])
    s.commit([Reading(1, 3, 0, mk.LEVEL, now - 3 * HOUR, 5)])
    assert s.prune_alarm_marks() == 1                  # the 10 h old one: nothing near it
    assert s._marks() == {1: [now - 2 * HOUR]}
