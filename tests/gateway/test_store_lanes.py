"""A reading counted live when it was committed can age past the live horizon before a
live batch takes it: it is backlog then, and must still go out. Found under load by
tests/gateway/test_e2e.py (kill -9 loop): two readings sat in the store for minutes,
published by no lane, because nothing told the batcher there was backlog."""
import json

from gateway.batcher import BACKLOG, LIVE
from gateway.records import FrameSeen, Reading
from gateway.store import Store

LEVEL = 3 << 3
HORIZON = 300.0


def encode(seq, created, rows, statuses, counters):
    return json.dumps([list(r[1:4]) for r in rows]).encode()


def drain(store):
    """What the uplink does: take batches of the lanes the store says are due until
    none is; returns the (node, seq, idx) keys batched."""
    keys = []
    for _ in range(20):
        live_n, _since, backlog = store.lane_hint()
        lane = LIVE if live_n else BACKLOG if backlog else None
        if lane is None:
            break
        b = store.take_batch(lane, 1000, encode, 65536)
        if b is not None:
            keys += [tuple(k) for k in json.loads(b.payload)]
    return keys


def test_a_reading_that_ages_past_the_horizon_before_its_batch_still_goes_out(tmp_path):
    now = [1_800_000_000.0]
    mono = [1000.0]
    s = Store(tmp_path / "s.db", live_horizon_s=HORIZON, clock=lambda: now[0],
              monotonic=lambda: mono[0])
    try:
        # committed 1 s inside the live horizon: counted live, no backlog
        t = int(now[0] - HORIZON) + 1
        s.commit([FrameSeen(7, 1), Reading(7, 1, 0, LEVEL, t, 100)])
        assert s.lane_hint()[0] == 1 and not s.lane_hint()[2]
        now[0] += 5                                       # the batch comes late: now it is old
        mono[0] += 5
        assert drain(s) == [(7, 1, 0)]
        assert s.stats()["lanes"]["live"]["depth"] + s.stats()["lanes"]["backlog"]["depth"] == 0
    finally:
        s.close()
