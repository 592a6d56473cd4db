"""Pure batching logic: CBOR batch encoding round trip (schema 2 and 1), runs, groups,
delta-coded values, the counter policy, lane policy."""
import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.batcher import (
    BACKLOG,
    LIVE,
    CounterPolicy,
    LanePolicy,
    decode_batch_readings,
    encode_alarm,
    encode_batch,
    encode_batch_v1,
    encode_status,
    status_map,
)
from gateway.records import Alarm, NodeStatus

row_st = st.tuples(
    st.integers(1, 5),                       # node
    st.integers(1, 6),                       # seq
    st.integers(0, 12),                      # idx
    st.sampled_from([8, 9, 24, 25]),         # chan
    st.integers(1_700_000_000, 1_700_000_600),
    st.one_of(st.integers(-2**31, 2**31), st.none()),
    st.integers(0, 3),                       # flags
)


@settings(max_examples=200, deadline=None)
@given(st.lists(row_st, max_size=120, unique_by=lambda r: r[:3]))
def test_batch_round_trip_keeps_every_reading_and_key(raw):
    rows = [(i, n, s, x, c, t, v, (9 if v is None else None), f)
            for i, (n, s, x, c, t, v, f) in enumerate(raw, 1)]
    want = sorted((n, s, x, c, t, [9] if v is None else v, f) for n, s, x, c, t, v, f in raw)
    payload = encode_batch(3, 1_700_000_700, rows, (), {1: 0, 2: 0, 3: 0, 4: 0, 5: 0})
    m, out = decode_batch_readings(payload)
    assert m[0] == 2 and m[3] == 3 and 1 not in m and 2 not in m
    assert sorted(out) == want
    nodes = [nb[0] for nb in m[5]]
    assert nodes == sorted(set(nodes))
    for _, groups in m[5]:
        assert [g[:2] for g in groups] == sorted(g[:2] for g in groups)
    # schema 1, as stores upgraded from it still hold: the same readings
    m, out = decode_batch_readings(encode_batch_v1("s", "g", 3, 1_700_000_700, rows, (), {1: 0}))
    assert m[0] == 1 and m[1] == "s" and m[2] == "g"
    assert sorted(out) == want
    for _, chans in m[5]:
        assert [cb[0] for cb in chans] == sorted({cb[0] for cb in chans})


def test_runs_split_on_seq_gap_step_change_and_flags():
    t = 1000
    rows = [(1, 1, 1, 0, 8, t, 5, None, 0), (2, 1, 1, 1, 8, t + 10, 6, None, 0),
            (3, 1, 1, 2, 8, t + 20, 7, None, 0),
            (4, 1, 1, 3, 8, t + 25, 8, None, 0),           # step changes
            (5, 1, 2, 0, 8, t + 30, 9, None, 0),           # next frame
            (6, 1, 2, 1, 8, t + 40, None, 3, 0),           # a fault in the run
            (7, 1, 2, 2, 8, t + 50, 11, None, 2)]          # thinned flag
    m = cbor2.loads(encode_batch(1, t + 60, rows))
    # [seq, idx, t - B, step, flags, stride, [chan, first, deltas...]]
    assert m[5] == [[1, [[1, 0, -60, 10, 0, 0, [8, 5, 1, 1]], [1, 3, -35, 0, 0, 0, [8, 8]],
                         [2, 0, -30, 10, 0, 0, [8, 9, [3]]], [2, 2, -10, 0, 2, 0, [8, 11]]]]]
    assert 7 not in m
    m = cbor2.loads(encode_batch_v1("s", "g", 1, t, rows))
    assert m[5] == [[1, [[8, [[1, 0, t, 10, [5, 6, 7]], [1, 3, t + 25, 0, [8]],
                              [2, 0, t + 30, 10, [9, [3]]], [2, 2, t + 50, 0, [11], 2]]]]]]


def test_deltas_skip_faults_and_keep_extremes():
    t = 5000
    vals = [2**31 - 1, -(2**31), None, 7, None, 7]
    rows = [(k, 3, 4, k, 16, t + k, v, None if v is not None else 0x0102, 0)
            for k, v in enumerate(vals)]
    m = cbor2.loads(encode_batch(9, t, rows))
    assert m[5] == [[3, [[4, 0, 0, 1, 0, 0,
                          [16, 2**31 - 1, -(2**32 - 1), [0x0102], 2**31 + 7, [0x0102], 0]]]]]
    assert [r[5] for r in decode_batch_readings(encode_batch(9, t, rows))[1]] == \
        [2**31 - 1, -(2**31), [0x0102], 7, [0x0102], 7]


def test_counters_when_changed_first_and_every_minute():
    p = CounterPolicy(every_s=60)
    c = {1: 0, 2: 0}
    assert p.pick(1, 1000, c) == c                  # first batch since start
    assert p.pick(1, 1000, c) == c                  # the same batch re-encoded smaller
    assert p.pick(2, 1005, c) is None
    assert p.pick(2, 1005, c) is None
    assert p.pick(3, 1010, {1: 0, 2: 1}) == {1: 0, 2: 1}   # a change
    assert p.pick(4, 1069, {1: 0, 2: 1}) is None
    assert p.pick(5, 1070, {1: 0, 2: 1}) == {1: 0, 2: 1}   # a minute since it was sent
    assert p.pick(6, 900, {1: 0, 2: 1}) == {1: 0, 2: 1}    # the clock stepped back


def test_alarm_and_status_maps():
    a = Alarm(101, 77, 1, 2, 3, 2, 24, 9, 4, 123, 100, 1_700_000_000, 1_700_000_000_123)
    assert cbor2.loads(encode_alarm("s", "g", a)) == {
        0: 1, 1: "s", 2: "g", 3: 101, 4: 77, 15: 1, 5: 2, 6: 3, 7: 2, 8: 24, 9: 9, 10: 4,
        11: 123, 12: 100, 13: 1_700_000_000, 14: 1_700_000_000_123}
    assert cbor2.loads(encode_status("s", "g", 1, 5.5, "v", {101: 4})) == \
        {0: 1, 1: "s", 2: "g", 3: 1, 4: 5, 5: "v", 6: {101: 4}}
    assert status_map(NodeStatus(3, 10, rssi_dbm=-97)) == {1: 3, 2: 10, 11: -97}


def test_live_waits_for_a_full_batch_or_its_age():
    p = LanePolicy(max_items=100, max_age_s=5.0)
    assert p.choose(10.0, 10, 8.0, False, room=4) == (None, 13.0)
    assert p.choose(13.0, 10, 8.0, False, room=4) == (LIVE, None)
    assert p.choose(10.0, 100, 9.9, False, room=4) == (LIVE, None)
    assert p.choose(10.0, 0, None, False, room=4) == (None, None)


def test_backlog_and_live_alternate_and_window_blocks_both():
    p = LanePolicy(max_items=100, max_age_s=5.0)
    picks = [p.choose(100.0, 500, 0.0, True, room=2)[0] for _ in range(6)]
    assert picks == [LIVE, BACKLOG, LIVE, BACKLOG, LIVE, BACKLOG]
    assert p.choose(100.0, 500, 0.0, True, room=0) == (None, None)
    assert p.choose(100.0, 0, None, True, room=1) == (BACKLOG, None)


def test_modbus_polls_under_one_window_form_one_run_per_channel():
    # keys as gateway/modbus.py gives them: seq per window, idx = point * WINDOW + poll
    from gateway.modbus import WINDOW
    rows = []
    for k in range(5):
        for i, (chan, v) in enumerate(((0x18, 1500 + k), (0x38, 215))):
            rows.append((len(rows), 9001, 7, i * WINDOW + k, chan, 1_780_000_000 + k, v, None, 0))
    m = cbor2.loads(encode_batch(1, 1_780_000_005, rows))
    # both points' runs share one group header: stride WINDOW between their idx
    assert m[5] == [[9001, [[7, 0, -5, 1, 0, WINDOW, [0x18, 1500, 1, 1, 1, 1],
                             [0x38, 215, 0, 0, 0, 0]]]]]
    # two polls stamped in the same second stay apart (a run's step is at least 1 s)
    rows[2] = rows[2][:5] + (1_780_000_000,) + rows[2][6:]
    groups = cbor2.loads(encode_batch(1, 1_780_000_005, rows))[5][0][1]
    assert [(g[1], g[3], g[5], [len(r) - 1 for r in g[6:]]) for g in groups] == \
        [(0, 0, 0, [1]), (1, 2, 0, [2]), (3, 1, 0, [2]), (WINDOW, 1, 0, [5])]
