"""The durable store: one transaction per arrival group, dedup, seqs, batches that
survive a restart, integrity check, lanes."""
import sqlite3

import pytest

from gateway.records import Count, FrameSeen, NodeStatus, Reading
from gateway.store import BACKLOG, LIVE, Store, StoreError


def enc(seq, created, rows, statuses, counters):
    # A stand-in encoder: the store must hand over exactly these rows.
    return repr((seq, created, [r[1:] for r in rows], statuses, counters)).encode()


class Clock:
    def __init__(self, t=1_700_000_000.0):
        self.t = t
        self.mono = 1000.0

    def __call__(self):
        return self.t

    def monotonic(self):
        return self.mono

    def advance(self, s):
        self.t += s
        self.mono += s


def count(path, table):
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM %s" % table).fetchone()[0]


def test_store_is_wal_with_full_sync(make_store, store_path):
    s = make_store()
    assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 2      # FULL


def test_redelivered_frame_is_a_no_op(make_store, store_path, mk):
    s = make_store()
    r = s.commit(mk.frame(101, 5, 1000, [1, 2, 3]) + [mk.alarm(101, 5, 1000)])
    assert (r.readings, len(r.alarms), r.duplicate_frames) == (3, 1, [])
    again = s.commit(mk.frame(101, 5, 1000, [9, 9, 9]) + [mk.alarm(101, 5, 1000)])
    assert (again.readings, again.alarms, again.duplicate_frames) == (0, [], [(101, 5)])
    assert count(store_path, "readings") == 3 and count(store_path, "alarms") == 1
    # the UNIQUE key also guards readings that come without a FrameSeen (Modbus)
    assert s.commit([Reading(101, 5, 0, 24, 1000, 7)]).readings == 0


def test_committed_seqs_ranges_and_floor(make_store, store_path):
    s = make_store()
    s.commit([FrameSeen(7, q) for q in (3, 4, 5, 9, 11, 12)])
    assert s.committed_seqs(7) == (None, [(3, 5), (9, 9), (11, 12)])
    s.commit([FrameSeen(7, 13, floor=9)])
    assert s.committed_seqs(7) == (9, [(9, 9), (11, 13)])
    assert s.commit([FrameSeen(7, 4)]).duplicate_frames == [(7, 4)]      # below the floor
    s.close()
    s2 = Store(store_path)
    assert s2.committed_seqs(7) == (9, [(9, 9), (11, 13)])
    assert s2.committed_seqs(8) == (None, [])
    s2.close()


def test_bad_record_changes_nothing(make_store, store_path, mk):
    s = make_store()
    with pytest.raises(TypeError, match="gateway.records"):
        s.commit(mk.frame(1, 1, 1000, [1]) + [("not", "a", "record")])
    assert count(store_path, "readings") == 0 and s.committed_seqs(1) == (None, [])


@pytest.mark.parametrize("bad", [Reading(1, 1, 0, 8, None, 5), Reading(1, 1, 0, 8, 10, "5"),
                                 Reading(1, 1, 0, 8, 10, None), Reading(1, "1", 0, 8, 10, 5)])
def test_malformed_reading_is_refused_before_anything_is_written(make_store, store_path, bad):
    s = make_store()
    with pytest.raises(ValueError, match="reading"):
        s.commit([FrameSeen(1, 1), Reading(1, 1, 1, 8, 10, 4), bad])
    assert s.committed_seqs(1) == (None, []) and count(store_path, "readings") == 0


def test_failed_transaction_rolls_back(make_store, store_path, mk):
    s = make_store()
    with pytest.raises(ValueError):
        s.commit(mk.frame(1, 1, 1000, [1, 2]) + [Count("frames_rejected", "many")])
    assert s.committed_seqs(1) == (None, []) and count(store_path, "readings") == 0
    assert s.counters()["frames_rejected"] == 0


def test_next_seq_is_never_reused(make_store, store_path):
    s = make_store()
    assert s.next_seq(9001) == 1
    assert s.next_seq(9001, 10) == 2
    assert s.next_seq(9002) == 1
    s.close()
    s2 = make_store()
    assert s2.next_seq(9001) == 12
    with pytest.raises(ValueError):
        s2.next_seq(9001, 0)


def test_counters_statuses_and_last_seen(make_store, mk):
    clock = Clock()
    s = make_store(clock=clock)
    s.commit([Count("frames_rejected", 2), Count("rejected_bad_mic"), FrameSeen(3, 1),
              NodeStatus(3, 1000, battery_mv=3900, log_depth=12)])
    c = s.counters()
    assert c["frames_rejected"] == 2 and c["rejected_bad_mic"] == 1 and c["readings_dropped"] == 0
    st = s.stats()
    assert st["nodes"][3]["last_seen"] == int(clock.t)
    assert st["nodes"][3]["battery_mv"] == 3900 and st["nodes"][3]["log_depth"] == 12


def test_unacked_batch_survives_restart_with_same_seq_and_bytes(make_store, store_path, mk):
    clock = Clock()
    s = make_store(clock=clock, monotonic=clock.monotonic)
    s.commit(mk.frame(1, 1, int(clock.t) - 10, [1, 2, 3]))
    b1 = s.take_batch(LIVE, 100, enc, 10_000)
    assert b1.seq == 1 and b1.n_readings == 3
    assert count(store_path, "readings") == 0          # moved into the batch, not lost
    s.close()                                          # crash before the PUBACK
    s = make_store(clock=clock, monotonic=clock.monotonic)
    (again,) = s.unacked_batches()
    assert (again.seq, again.payload) == (1, b1.payload)
    s.commit(mk.frame(1, 2, int(clock.t) - 10, [4]))
    b2 = s.take_batch(LIVE, 100, enc, 10_000)
    assert b2.seq == 2                                 # seq 1 is never reused
    s.ack_batches([1, 2])
    assert s.unacked_batches() == [] and s.stats()["last_puback"] == clock.t


def test_take_batch_cuts_to_max_bytes_and_keeps_the_rest(make_store, mk):
    clock = Clock()
    s = make_store(clock=clock, monotonic=clock.monotonic)
    s.commit(mk.frame(1, 1, int(clock.t) - 5, list(range(200)), step=0))
    b = s.take_batch(LIVE, 1000, enc, 2000)
    assert len(b.payload) <= 2000 and 0 < b.n_readings < 200
    rest = s.take_batch(LIVE, 1000, enc, 100_000)
    assert b.n_readings + rest.n_readings == 200


def test_lanes_split_by_age_and_commit_time(make_store, mk):
    clock = Clock()
    s = make_store(clock=clock, monotonic=clock.monotonic, live_horizon_s=300)
    now = int(clock.t)
    s.commit(mk.frame(1, 1, now - 3600, [1, 2]))       # a node's flash backlog
    s.commit(mk.frame(1, 2, now - 5, [3, 4]))          # live
    assert s.lane_hint()[0] == 2 and s.lane_hint()[2] is True
    st = s.stats()["lanes"]
    assert (st["live"]["depth"], st["backlog"]["depth"]) == (2, 2)
    assert st["backlog"]["oldest_age_s"] == 3600
    live = s.take_batch(LIVE, 100, enc, 10_000)
    assert b"(1, 2, 0," in live.payload and b"(1, 1, 0," not in live.payload
    back = s.take_batch(BACKLOG, 100, enc, 10_000)
    assert back.n_readings == 2
    s.commit(mk.frame(1, 3, now, [5]))
    clock.advance(301)                                 # not sent for a whole horizon
    assert s.take_batch(LIVE, 100, enc, 10_000) is None
    assert s.take_batch(BACKLOG, 100, enc, 10_000).n_readings == 1


def test_integrity_failure_is_a_clear_error(tmp_path, mk):
    p = tmp_path / "store.db"
    s = Store(p)
    s.commit(mk.frame(1, 1, 1000, list(range(3000))))
    s.close()
    data = bytearray(p.read_bytes())
    for off in range(4096 * 3, min(len(data), 4096 * 6)):
        data[off] = 0x5A                                # trash some b-tree pages
    p.write_bytes(bytes(data))
    with pytest.raises(StoreError) as e:
        Store(p)
    msg = str(e.value)
    assert str(p) in msg and ("integrity_check" in msg or "cannot be opened" in msg)
    assert "move the file aside" in msg.lower()


def test_not_a_database_is_a_clear_error(tmp_path):
    p = tmp_path / "store.db"
    p.write_bytes(b"this is not sqlite" * 300)
    with pytest.raises(StoreError, match="cannot be opened"):
        Store(p)


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "nope" / "store.db")


def test_live_lane_stays_due_while_full_batches_come(make_store, mk):
    """The live count is an estimate; a full batch must never leave readings stranded."""
    clock = Clock(1_700_000_000.7)
    s = make_store(clock=clock, monotonic=clock.monotonic, live_horizon_s=300)
    cutoff = int(clock.t - 300)
    s.commit(mk.frame(1, 1, cutoff, [1] * 5, step=0))            # on the line
    s.commit(mk.frame(1, 2, cutoff + 10, [2] * 5, step=0))
    taken = 0
    while s.lane_hint()[0] > 0:
        b = s.take_batch(LIVE, 5, enc, 100_000)
        taken += b.n_readings if b else 0
    assert taken == 10


def test_a_failing_listener_does_not_undo_or_hide_a_commit(make_store, store_path, mk):
    s = make_store()

    def broken(*args):
        raise RuntimeError("listener bug")
    seen = []
    s.add_listener(broken)
    s.add_listener(lambda alarms, *rest: seen.append(len(alarms)))
    r = s.commit(mk.frame(1, 1, 1000, [1, 2]) + [mk.alarm(1, 1, 1000)])
    assert r.readings == 2 and seen == [1]
    assert count(store_path, "readings") == 2
