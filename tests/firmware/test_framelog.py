"""Flash frame log: records survive reopen, torn writes, acks, thinning and drops."""
import json
import os

import pytest
from fake_hw import fs_at
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import framelog
from firmware.framelog import FrameLog, thin_payload
from firmware.logscan import open_log
from firmware.nodeclock import NodeClock
from protocol import readings
from protocol.channels import chan_id
from protocol.frame import ALARM, READINGS

RAIN = chan_id(1)
DISP = chan_id(2)




def payload(t_ref, n=10, step=60, base=100):
    vals = [base + k for k in range(n)]
    return readings.encode([readings.Block(DISP, (n - 1) * step, step, vals),
                            readings.Block(RAIN, (n - 1) * step, step, [2] * n)])


def log_at(path, **kw):
    log = FrameLog(fs_at(path), **kw)
    open_log(log, NodeClock(0))
    return log


def write_n(log, n, mtype=READINGS, keep=False, size=10):
    seqs = []
    for _ in range(n):
        s = log.take_seq()
        log.append(s, mtype, payload(0, size), True, log.boot, 1000 + s, keep)
        seqs.append(s)
    return seqs


def test_records_survive_reopen_in_order(tmp_path):
    log = log_at(tmp_path)
    seqs = write_n(log, 5)
    log2 = log_at(tmp_path)
    assert log2.boot == log.boot + 1
    got = []
    r = log2.next_record()
    while r is not None:
        got.append(r.seq)
        log2.ack([(r.seq, r.seq)])
        r = log2.next_record()
    assert got == seqs
    assert log2.depth() == 0


def test_seq_never_reused_across_reboots(tmp_path):
    seen = set()
    for _ in range(5):
        log = log_at(tmp_path, seq_block=4)
        for _ in range(3):
            s = log.take_seq()
            assert s not in seen
            seen.add(s)


def test_a_meta_write_with_less_than_half_the_block_left_reserves_the_next_block(tmp_path):
    # the node's reports take seqs; its acks reclaim segments, which writes meta.json:
    # that write carries the next reservation, so no report writes one of its own
    log = log_at(tmp_path, seq_block=8)
    first = log.alloc.next
    assert log.alloc.reserved == first + 8  # open's meta write reserved a block
    writes = []
    write = log._write_meta
    log._write_meta = lambda: (writes.append(1), write())
    for _ in range(4):
        log.take_seq()                      # half the block left: nothing written
    s = log.take_seq()                      # 3 left
    log.append(s, READINGS, payload(0), True, log.boot, 1000)
    assert writes == []
    log.ack([(s, s)])                       # reclaims the segment: a meta write
    assert writes == [1] and log.alloc.reserved == first + 16
    assert json.loads((tmp_path / "log" / "meta.json").read_text())["reserve"] == first + 16
    seqs = [log.take_seq() for _ in range(9)]   # across the first block's end
    assert seqs == list(range(s + 1, s + 10)) and writes == [1]
    log2 = log_at(tmp_path, seq_block=8)
    assert log2.take_seq() >= first + 16    # never a seq that may have been used


def test_reservation_covers_seqs_on_flash_even_without_meta(tmp_path):
    log = log_at(tmp_path, seq_block=1000)
    seqs = write_n(log, 3)
    os.remove(tmp_path / "log" / "meta.json")
    log2 = log_at(tmp_path)
    assert log2.take_seq() > max(seqs)


def test_alarm_goes_before_older_readings(tmp_path):
    log = log_at(tmp_path)
    write_n(log, 3)
    a = write_n(log, 1, mtype=ALARM)[0]
    assert log.next_record().seq == a
    assert log.next_record(exclude=a).mtype == READINGS
    log.ack([(a, a)])
    assert log.next_record().mtype == READINGS


def test_ack_ranges_reclaim_segments_and_tail_persists(tmp_path):
    log = log_at(tmp_path, segment_bytes=512)
    seqs = write_n(log, 30)
    nsegs = len(log.segs)
    assert nsegs >= 3
    log.ack([(seqs[0], seqs[19])])
    assert len(log.segs) < nsegs
    assert log.oldest_unacked() == seqs[20]
    files = [f for f in os.listdir(tmp_path / "log") if f.endswith(".seg")]
    assert len(files) == len(log.segs)
    log2 = log_at(tmp_path, segment_bytes=512)
    # records acked before the saved tail do not come back after a reboot
    assert log2.oldest_unacked() == seqs[20]
    assert log2.depth() == 10
    log2.ack([(seqs[0], seqs[-1])])
    assert log2.depth() == 0 and log2.oldest_unacked() is None


def test_out_of_order_ack_leaves_gap(tmp_path):
    log = log_at(tmp_path)
    seqs = write_n(log, 4)
    log.ack([(seqs[2], seqs[3])])
    assert log.depth() == 2
    assert log.oldest_unacked() == seqs[0]
    log.ack([(seqs[0], seqs[0])])
    assert log.oldest_unacked() == seqs[1]


def test_torn_last_record_loses_only_that_record(tmp_path):
    log = log_at(tmp_path)
    seqs = write_n(log, 4)
    seg = tmp_path / "log" / ("%08d.seg" % log.segs[-1].no)
    data = seg.read_bytes()
    rec_len = len(data) // 4
    for cut in range(len(data) - rec_len + 1, len(data)):
        seg.write_bytes(data[:cut])
        log2 = log_at(tmp_path)
        assert log2.torn >= 1
        assert log2.depth() == 3
        # appends go to a fresh segment, never after the torn bytes
        s = log2.take_seq()
        log2.append(s, READINGS, payload(0), True, log2.boot, 5, False)
        log3 = log_at(tmp_path)
        assert log3.depth() == 4
        got = []
        r = log3.next_record()
        while r is not None:
            got.append(r.seq)
            log3.ack([(r.seq, r.seq)])
            r = log3.next_record()
        assert got == seqs[:3] + [s]
        # restore for the next cut position
        for f in os.listdir(tmp_path / "log"):
            os.remove(tmp_path / "log" / f)
        log = log_at(tmp_path)
        seqs = write_n(log, 4)
        seg = tmp_path / "log" / ("%08d.seg" % log.segs[-1].no)


def test_flipped_bit_is_caught_by_crc(tmp_path):
    log = log_at(tmp_path)
    write_n(log, 2)
    seg = tmp_path / "log" / ("%08d.seg" % log.segs[-1].no)
    data = bytearray(seg.read_bytes())
    data[-3] ^= 0x10
    seg.write_bytes(bytes(data))
    assert log_at(tmp_path).depth() == 1


def test_thin_payload_keeps_newest_and_all_rain():
    p = readings.encode([readings.Block(RAIN, 540, 60, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
                         readings.Block(DISP, 480, 60, [0, 1, 2, 3, 4, 5, 6, 7, 8])])
    out, removed = thin_payload(p)
    rain, disp = readings.decode(out)
    assert removed == 5 + 4
    assert sum(rain.values) == 55
    assert rain.values[-1] == 19 and rain.step == 120 and rain.age == 480
    assert disp.values == [0, 2, 4, 6, 8] and disp.age == 480 and disp.step == 120
    # the newest sample keeps its time: age - (count-1)*step unchanged
    assert rain.age - (rain.count - 1) * rain.step == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=40), st.integers(1, 600))
def test_thinning_preserves_rain_and_newest_time(vals, step):
    n = len(vals)
    age = (n - 1) * step + 7
    out, removed = thin_payload(readings.encode([readings.Block(RAIN, age, step, vals)]))
    (b,) = readings.decode(out)
    assert sum(b.values) == sum(vals)
    assert b.count + removed == n
    assert b.age - (b.count - 1) * b.step == age - (n - 1) * step


def test_full_log_thins_before_dropping_and_never_drops_alarms(tmp_path):
    log = log_at(tmp_path, capacity=4096, segment_bytes=1024)
    alarms = write_n(log, 2, mtype=ALARM)
    kept = write_n(log, 2, keep=True)
    write_n(log, 100, size=12)
    assert log.thinned > 0 and log.dropped == 0
    assert log.live_bytes() <= 4096
    write_n(log, 200, size=12)
    assert log.dropped > 0
    assert log.live_bytes() <= 4096 + 1024
    log2 = log_at(tmp_path, capacity=4096, segment_bytes=1024)
    assert log2.thinned == log.thinned and log2.dropped == log.dropped
    left = set()
    r = log2.next_record()
    while r is not None:
        left.add(r.seq)
        log2.ack([(r.seq, r.seq)])
        r = log2.next_record()
    assert set(alarms) <= left and set(kept) <= left


def test_thinned_records_keep_decodable_payloads(tmp_path):
    log = log_at(tmp_path, capacity=3000, segment_bytes=1024)
    write_n(log, 60, size=12)
    assert log.thinned > 0
    r = log.next_record()
    while r is not None:
        blocks = readings.decode(r.payload)
        rain = [b for b in blocks if b.chan == RAIN][0]
        assert sum(rain.values) == 2 * 12   # no rain lost by thinning
        log.ack([(r.seq, r.seq)])
        r = log.next_record()


def test_bad_segment_size_is_refused(tmp_path):
    with pytest.raises(ValueError):
        FrameLog(fs_at(tmp_path), segment_bytes=100)


def test_record_codec_roundtrip(tmp_path):
    """A record written by encode_record reads back whole; torn bytes after it do not."""
    rec = framelog.encode_record(7, READINGS, framelog.R_KEEP, 3, 12345, b"\x01\x02")
    log = FrameLog(fs_at(tmp_path))
    (tmp_path / "log").mkdir()
    for torn in (b"", b"\xa5\x00", rec[:-1], rec[:5 + 12]):
        (tmp_path / "log" / "00000001.seg").write_bytes(rec + torn)
        recs, good = log._read_seg(1)
        assert good == len(rec)
        assert [(r.seq, r.rflags, r.boot, r.t_ref, r.payload) for r in recs] == [
            (7, framelog.R_KEEP, 3, 12345, b"\x01\x02")]


def _unacked_on_log(log):
    out = []
    for g in log.segs:
        recs = log._read_seg(g.no)[0]
        assert len(recs) == g.n
        for i, r in enumerate(recs):
            if not g.is_acked(i):
                out.append(r.seq)
    return out


OPS = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(1, 4), st.booleans()),
    st.tuples(st.just("ack"), st.integers(0, 30), st.integers(0, 6)),
    st.tuples(st.just("ack_next"), st.just(0), st.just(0)),
    st.tuples(st.just("reopen"), st.just(0), st.just(0)),
), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_log_matches_a_model_through_acks_and_reboots(tmp_path_factory, ops):
    path = tmp_path_factory.mktemp("model")
    log = log_at(path, segment_bytes=512, seq_block=4)
    logged, acked, last_seq = [], set(), 0
    for op, a, b in ops:
        if op == "append":
            for s in write_n(log, a, mtype=ALARM if b else READINGS):
                assert s > last_seq
                last_seq = s
                logged.append(s)
        elif op == "ack" and logged:
            lo = logged[min(a, len(logged) - 1)]
            hi = logged[min(a + b, len(logged) - 1)]
            log.ack([(lo, hi)])
            acked.update(s for s in logged if lo <= s <= hi)
        elif op == "ack_next":
            pending_alarms = alarm_seqs(log)
            r = log.next_record()
            if r is not None:
                assert (r.mtype == ALARM) == bool(pending_alarms)     # alarms first
                log.ack([(r.seq, r.seq)])
                acked.add(r.seq)
        elif op == "reopen":
            log = log_at(path, segment_bytes=512, seq_block=4)
        on_log = _unacked_on_log(log)
        assert on_log == sorted(on_log) and len(set(on_log)) == len(on_log)
        assert set(on_log) <= set(logged)
        must = [s for s in logged if s not in acked]
        assert set(must) <= set(on_log), "an unacked record vanished"
        oldest = log.oldest_unacked()
        assert oldest == (on_log[0] if on_log else None)
        assert log.depth() == len(on_log)
        files = [f for f in os.listdir(path / "log") if f.endswith(".seg")]
        assert len(files) == len(log.segs)
        assert {a[0] for a in log.alarms} <= set(on_log)


def alarm_seqs(log):
    return {a[0] for a in log.alarms}


def test_meta_json_is_what_json_dumps_wrote(tmp_path):
    # _write_meta formats the JSON itself (no dict built on the node's heap): the file
    # stays byte for byte what json.dumps of the same dict gave
    log = log_at(tmp_path, seq_block=4)
    write_n(log, 5)
    log.thinned, log.dropped = 7, 3
    log._write_meta()
    text = (tmp_path / "log" / "meta.json").read_text()
    want = {"reserve": log.alloc.reserved, "boot": log.boot, "tail": list(log.tail),
            "thinned": 7, "dropped": 3}
    assert text == json.dumps(want)
    assert log_at(tmp_path).thinned == 7
