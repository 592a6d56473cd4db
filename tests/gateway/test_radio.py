"""Radio ingest: frames made with protocol/ on a pty pair (the radio serial line) into a
real store; ACKs read back from the line and checked with protocol/."""
import asyncio
import os
import select
import threading
import time
import tty

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import downlink as dl
from gateway.radio import RadioIngest, RadioPort
from gateway.records import Count, FrameSeen, Reading
from gateway.store import Store
from hil.simnode import Channel, SimNode, World
from protocol import frame as fr
from protocol import messages as msg
from protocol import readings as rd
from protocol.framing import Deframer, wrap
from protocol.mic import Hmac

K101 = bytes(range(1, 33))
K102 = bytes(range(101, 133))
KEYS = {101: K101, 102: K102}
LEVEL = 3 << 3
RAIN = 1 << 3
T_RX = 1_800_000_000.25


def readings_frame(node, seq, blocks, back=0, key=None, flags=0, time=1000):
    return fr.encode(Hmac(key or KEYS[node]), fr.READINGS, node, seq, time, rd.encode(blocks),
                     flags, back)


def alarm_frame(node, seq, age=3, back=0):
    payload = msg.encode_alarms([{msg.A_EVENT: 1, msg.A_LEVEL: 3, msg.A_PREV: 0,
                                  msg.A_CHAN: LEVEL, msg.A_RULE: 2, msg.A_KIND: 1,
                                  msg.A_VALUE: 3600, msg.A_THRESHOLD: 3500, msg.A_AGE: age}])
    return fr.encode(Hmac(KEYS[node]), fr.ALARM, node, seq, 1000, payload, 0, back)


def decode_downlink(data, node=101):
    out = []
    for item in Deframer().feed(data):
        assert isinstance(item, bytes), item
        f = fr.decode(item, lambda n: Hmac(KEYS[n]), fr.DOWNLINK_TYPES)
        assert f.node == node
        out.append(f)
    return out


def rows(store, sql):
    with store._lock:
        return store._db.execute(sql).fetchall()


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store.db")
    yield s
    s.close()


# ------------------------------------------------------------------ pure ingest

def test_readings_get_absolute_times_and_dedup_keys(store):
    ing = RadioIngest(KEYS)
    blocks = [rd.Block(LEVEL, 120, 60, [1500, 1510, 1530]), rd.Block(RAIN, 5, 0, [4]),
              rd.Block(RAIN + 1, 30, 10, None, fault=5, count=2)]
    ing.feed(wrap(readings_frame(101, 7, blocks)), T_RX)
    g = ing.take_group()
    store.commit(g.records)
    t = int(T_RX + 0.5)
    got = rows(store, "SELECT node, seq, idx, chan, t, value, fault FROM readings ORDER BY idx")
    assert got == [(101, 7, 0, LEVEL, t - 120, 1500, None), (101, 7, 1, LEVEL, t - 60, 1510, None),
                   (101, 7, 2, LEVEL, t, 1530, None), (101, 7, 3, RAIN, t - 5, 4, None),
                   (101, 7, 4, RAIN + 1, t - 30, None, 5), (101, 7, 5, RAIN + 1, t - 20, None, 5)]
    acks = decode_downlink(b"".join(ing.committed(g, T_RX)))
    assert [a.mtype for a in acks] == [fr.ACK]
    re, gw_time, ranges = msg.decode_ack(acks[0].payload)
    assert (re, gw_time, ranges) == (7, int(T_RX), [(7, 7)])


def test_time_approx_flag_reaches_the_readings():
    ing = RadioIngest(KEYS)
    ing.feed(wrap(readings_frame(101, 1, [rd.Block(LEVEL, 0, 0, [1])],
                                 flags=fr.F_TIME_APPROX)), T_RX)
    r = [x for x in ing.take_group().records if isinstance(x, Reading)]
    assert r[0].flags == 1


def test_alarm_frame_gives_alarm_record_with_trip_time():
    ing = RadioIngest(KEYS)
    ing.feed(wrap(alarm_frame(101, 3, age=4)), T_RX)
    a = [x for x in ing.take_group().records if type(x).__name__ == "Alarm"]
    assert len(a) == 1
    a = a[0]
    assert (a.node, a.seq, a.index, a.event, a.level, a.chan, a.rule_id, a.value) == \
        (101, 3, 0, 1, 3, LEVEL, 2, 3600)
    assert a.t == int(T_RX + 0.5) - 4 and a.rx_ms == int(T_RX * 1000)


def test_bad_input_is_rejected_counted_and_never_stored(store):
    ing = RadioIngest(KEYS)
    good = readings_frame(101, 5, [rd.Block(LEVEL, 0, 0, [1])], back=0)
    store.commit(ing_commit(ing, wrap(good)))
    bad = [
        b"\x00\x13\x37garbage\x00",                                   # cobs/crc
        wrap(good)[:-6] + b"\x00",                                     # truncated
        wrap(readings_frame(101, 6, [rd.Block(LEVEL, 0, 0, [2])], key=K102)),   # forged
        wrap(readings_frame(101, 4, [rd.Block(LEVEL, 0, 0, [3])])),   # replay (< floor 5)
        wrap(fr.encode(Hmac(K101), fr.READINGS, 555, 1, 0, b"\x18\x02\x00\x02")),  # unknown
        wrap(fr.encode(Hmac(K101), fr.ACK, 101, 9, 0, b"\x00" * 8)),  # wrong direction
        wrap(good[:12] + b"\x00"),                                     # too short for a frame
    ]
    for b in bad:
        ing.feed(b, T_RX)
    assert not ing.take_immediate()          # nothing acked
    g = ing.take_group()
    assert not g.frames and not g.acks_only
    assert all(isinstance(r, Count) for r in g.records)
    store.commit(g.records)
    assert ing.committed(g, T_RX) == []
    assert rows(store, "SELECT count(*) FROM readings")[0][0] == 1
    c = store.counters()
    assert c["frames_rejected"] == len(bad)
    for reason in ("mic", "replay", "unknown_node", "type", "short"):
        assert c["rejected_" + reason] == 1, reason
    assert ing.nodes[101].rejects == {"mic": 1, "replay": 1, "type": 1}


def ing_commit(ing, data):
    ing.feed(data, T_RX)
    g = ing.take_group()
    recs = list(g.records)
    ing.committed(g, T_RX)
    return recs


def test_reject_log_is_rate_limited_per_node_and_reason(caplog):
    ing = RadioIngest(KEYS, log_every_s=60)
    forged = wrap(readings_frame(101, 6, [rd.Block(LEVEL, 0, 0, [2])], key=K102))
    with caplog.at_level("WARNING", logger="stationgw.radio"):
        for i in range(50):
            ing.feed(forged, T_RX + i)
        ing.feed(forged, T_RX + 61)
    lines = [r.getMessage() for r in caplog.records if "frame_rejected" in r.getMessage()]
    assert len(lines) == 2
    assert "suppressed=49" in lines[1]
    assert ing.counters["mic"] == 51


def test_duplicate_is_acked_again_and_not_stored_twice(store):
    ing = RadioIngest(KEYS)
    f = wrap(readings_frame(101, 9, [rd.Block(LEVEL, 10, 0, [77])]))
    store.commit(ing_commit(ing, f))
    ing.feed(f, T_RX + 5)                      # its ACK was lost: the node sends it again
    acks = decode_downlink(b"".join(ing.take_immediate()))
    assert [msg.decode_ack(a.payload)[0] for a in acks] == [9]
    g = ing.take_group()
    assert not g.frames and [type(r) for r in g.records] == [Count]
    store.commit(g.records)
    assert rows(store, "SELECT count(*) FROM readings")[0][0] == 1
    assert store.counters()["frames_duplicate"] == 1


def test_duplicate_of_a_frame_not_yet_committed_waits_for_the_commit():
    ing = RadioIngest(KEYS)
    f = wrap(readings_frame(101, 9, [rd.Block(LEVEL, 10, 0, [77])]))
    ing.feed(f, T_RX)
    g1 = ing.take_group()              # commit in flight
    ing.feed(f, T_RX + 0.1)            # retransmission meanwhile
    assert ing.take_immediate() == []  # no ACK before the commit (I1)
    g2 = ing.take_group()
    assert g2.acks_only and not g2.frames
    assert len(decode_downlink(b"".join(ing.committed(g1, T_RX)))) == 1
    assert len(decode_downlink(b"".join(ing.committed(g2, T_RX)))) == 1


def test_failed_commit_acks_nothing_and_retransmission_is_new():
    ing = RadioIngest(KEYS)
    f = wrap(readings_frame(101, 9, [rd.Block(LEVEL, 10, 0, [77])]))
    ing.feed(f, T_RX)
    g = ing.take_group()
    ing.feed(f, T_RX + 0.1)            # a retransmission while the commit runs
    ing.abandoned(g)                    # ... and the commit failed
    g2 = ing.take_group()
    assert ing.committed(g2, T_RX) == []     # the waiting duplicate is not acked either
    ing.feed(f, T_RX + 3)
    assert len(ing.take_group().frames) == 1


def test_restart_does_not_reopen_the_replay_window(tmp_path):
    path = tmp_path / "s.db"
    s = Store(path)
    ing = RadioIngest(KEYS)
    for seq, back in ((10, 0), (11, 0), (14, 2)):       # floor becomes 12
        s.commit(ing_commit(ing, wrap(readings_frame(101, seq, [rd.Block(LEVEL, 1, 0, [seq])],
                                                     back=back))))
    s.close()
    s = Store(path)
    try:
        ing2 = RadioIngest(KEYS)
        floor, ranges = s.committed_seqs(101)
        ing2.load(101, floor, ranges)
        ing2.feed(wrap(readings_frame(101, 11, [rd.Block(LEVEL, 1, 0, [0])])), T_RX)
        ing2.feed(wrap(readings_frame(101, 14, [rd.Block(LEVEL, 1, 0, [0])])), T_RX)
        ing2.feed(wrap(readings_frame(101, 13, [rd.Block(LEVEL, 1, 0, [13])])), T_RX)
        assert ing2.counters == {"replay": 1, "duplicate": 1}
        assert [f.seq for f in ing2.group.frames] == [13]
        assert len(ing2.take_immediate()) == 1          # the duplicate 14 is acked again
    finally:
        s.close()


def test_payload_error_with_good_mic_is_acked_but_not_stored(store):
    ing = RadioIngest(KEYS)
    bad = fr.encode(Hmac(K101), fr.READINGS, 101, 3, 0, b"\x18\x02", 0, 0)   # cut block
    ing.feed(wrap(bad), T_RX)
    g = ing.take_group()
    assert not [r for r in g.records if isinstance(r, Reading)]
    assert FrameSeen(101, 3, 3) in g.records
    store.commit(g.records)
    assert len(decode_downlink(b"".join(ing.committed(g, T_RX)))) == 1
    assert store.counters()["rejected_payload"] == 1


def test_rssi_byte_after_each_packet_is_read_and_frames_still_decode():
    ing = RadioIngest(KEYS, rssi_byte=True)
    f1 = wrap(readings_frame(101, 1, [rd.Block(LEVEL, 1, 0, [1])]))
    f2 = wrap(readings_frame(102, 1, [rd.Block(LEVEL, 1, 0, [2])]))
    stream = f1 + bytes([256 - 87]) + f2 + bytes([256 - 101])
    for i in range(0, len(stream), 7):                 # in odd pieces, as a UART delivers
        ing.feed(stream[i:i + 7], T_RX)
    g = ing.take_group()
    assert [(f.node, f.seq) for f in g.frames] == [(101, 1), (102, 1)]
    assert ing.nodes[101].rssi_dbm == -87 and ing.nodes[102].rssi_dbm == -101
    assert ing.counters == {}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.binary(min_size=0, max_size=40), st.integers(1, 30)), max_size=12),
       st.integers(1, 23))
def test_every_good_frame_survives_any_garbage_around_it(parts, cut):
    ing = RadioIngest(KEYS)
    stream = b""
    want = []
    for p in parts:
        if isinstance(p, int):
            stream += wrap(readings_frame(101, p, [rd.Block(LEVEL, 2, 0, [p])]))
            if p not in want:
                want.append(p)
        else:
            stream += p
    stream += b"\x00"
    for i in range(0, len(stream), cut):
        ing.feed(stream[i:i + cut], T_RX)
    seen = [f.seq for f in ing.group.frames]
    # a wrapped frame brings its own leading delimiter, so garbage never eats it
    assert seen == want
    assert all(isinstance(r, (Reading, FrameSeen, Count)) for r in ing.group.records)


# ------------------------------------------------------------------ downlink queue

def test_queued_command_goes_out_after_the_ack_and_result_comes_back():
    results = []
    q = dl.DownlinkQueue(lambda cmd, node, r, detail, v: results.append((node, r, v)))
    node = SimNode(101, K101, [Channel(LEVEL, World(1500))], sample_s=60, report_s=60)
    ing = RadioIngest(KEYS, downlink=q)
    cmd = dl.parse_command("set-intervals", {"node": 101, "sample_s": 30, "id": "c1"}, {101, 102})
    q.put(cmd, T_RX)
    now = 0.0
    answered = False
    for _ in range(400):
        now += 0.5
        out = node.step(now)
        if out:
            ing.feed(out, T_RX + now)
            g = ing.take_group()
            if g:
                down = b"".join(ing.committed(g, T_RX + now))
                frames = decode_downlink(down)
                if any(f.mtype == fr.CONFIG for f in frames):
                    assert frames[0].mtype == fr.ACK and frames[0].flags & fr.F_PENDING
                    answered = True
                node.receive(down, now)
        if results:
            break
    assert answered
    assert results and results[0][:2] == (101, dl.R_APPLIED)
    assert node.sample_s == 30 and node.config_version == results[0][2]
    assert q.depth() == 0


def test_config_is_resent_until_acked_then_expires():
    results = []
    q = dl.DownlinkQueue(lambda cmd, node, r, detail, v: results.append(r), max_sends=3)
    q.put(dl.parse_command("emergency", {"node": "all", "duration_s": 600}, {101, 102}), 100.0)
    assert q.depth() == 2
    for i in range(3):
        cfgs = q.config_for(101, 5 + i, 100.0 + i)
        assert cfgs[0][msg.C_EMERGENCY_S] == 600
    assert q.config_for(101, 9, 104.0) == []
    assert results == [dl.R_EXPIRED]


@pytest.mark.parametrize("verb,doc,words", [
    ("reboot", {"node": 101}, "unknown command"),
    ("set-intervals", {"node": 999, "sample_s": 5}, "'node' must be a radio node"),
    ("set-intervals", {"node": 101}, "needs at least one"),
    ("set-intervals", {"node": 101, "sample_s": 0}, "'sample_s' must be an integer 1..86400"),
    ("set-intervals", {"node": 101, "sampel_s": 5}, "unknown key 'sampel_s'"),
    ("emergency", {"node": 101}, "'duration_s' must be an integer"),
    ("set-rules", {"node": 101, "rules": [{"id": 1, "chan": "nope.0", "kind": "threshold"}]},
     "rules[0].chan"),
    ("set-rules", {"node": 101, "rules": [{"id": 1, "chan": "water_level.0", "kind": "threshold",
                                            "level": "orange", "op": "above"}]}, "missing key"),
    ("set-rules", {"node": 101, "rules": [{"id": 1, "chan": "rain.0", "kind": "sum",
                                            "level": "red", "window_s": 3600, "threshold": 500,
                                            "hysteresis": 10, "hold_s": 600}]},
     "node 101 has no channel rain.0"),
])
def test_bad_commands_say_what_is_wrong(verb, doc, words):
    with pytest.raises(dl.CommandError) as e:
        dl.parse_command(verb, doc, {101, 102}, {101: {LEVEL}})
    assert words in str(e.value)


def test_command_payload_json_or_cbor():
    import cbor2
    assert dl.decode_payload(b'{"node": 101}') == {"node": 101}
    assert dl.decode_payload(cbor2.dumps({"node": "all"})) == {"node": "all"}
    with pytest.raises(dl.CommandError, match="JSON object or a CBOR map"):
        dl.decode_payload(b"[1, 2]")
    with pytest.raises(dl.CommandError, match="not valid JSON"):
        dl.decode_payload(b"{node: 1}")
    cmd = dl.parse_command("set-rules", {"node": 101, "rules": [
        {"id": 1, "chan": "water_level.0", "kind": "threshold", "level": "orange", "op": "above",
         "threshold": 3500, "hysteresis": 100, "persist_s": 60, "hold_s": 600}]}, {101})
    assert cmd.partial[msg.C_RULES] == [[1, LEVEL, 1, 3, 1, 3500, 100, 60, 600]]


# ------------------------------------------------------------------ the shell on a pty

class GatedStore:
    """A real store whose commit waits for the test's go: lets the test look at the line
    while a commit is in flight."""

    def __init__(self, store):
        self.store = store
        self.entered = threading.Event()
        self.go = threading.Event()
        self.calls = []

    def commit(self, records):
        self.calls.append(len(records))
        self.entered.set()
        assert self.go.wait(60)
        return self.store.commit(records)

    def committed_seqs(self, node):
        return self.store.committed_seqs(node)


def pty_pair():
    m, s = os.openpty()
    tty.setraw(m)
    tty.setraw(s)
    return m, s, os.ttyname(s)


def read_all(fd, timeout=2.0, want=1):
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            out += os.read(fd, 4096)
            if len(Deframer().feed(out)) >= want:
                break
    return out


def test_port_acks_only_after_commit_and_groups_frames(store):
    m, s, path = pty_pair()
    ser = serial.Serial(path, 9600, timeout=0)
    gated = GatedStore(store)
    ing = RadioIngest(KEYS)
    port = RadioPort(ser, ing, gated, lambda: T_RX)

    async def main():
        task = asyncio.create_task(port.run())
        os.write(m, wrap(readings_frame(101, 1, [rd.Block(LEVEL, 1, 0, [1])])))
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, gated.entered.wait, 60)
        # commit in flight: five more frames arrive, and nothing is acked yet. Waited
        # for until the port has read all five into its next group (not for a time: a
        # slow port would split them over two more commits)
        for seq in range(2, 7):
            os.write(m, wrap(readings_frame(101, seq, [rd.Block(LEVEL, 1, 0, [seq])])))
        for _ in range(60 * 100):
            if len(ing.group.frames) == 5:
                break
            await asyncio.sleep(0.01)
        assert len(ing.group.frames) == 5, "the port did not read the five frames"
        assert read_all(m, 0.2) == b""
        gated.go.set()
        data = await loop.run_in_executor(None, read_all, m, 60.0, 6)
        acks = decode_downlink(data)
        assert sorted(msg.decode_ack(a.payload)[0] for a in acks) == [1, 2, 3, 4, 5, 6]
        port.stop()
        await asyncio.wait_for(task, 60)

    try:
        asyncio.run(asyncio.wait_for(main(), 300))
    finally:
        ser.close()
        os.close(m)
        os.close(s)
    assert gated.calls[0] >= 2 and len(gated.calls) == 2      # 6 frames, 2 commits
    assert rows(store, "SELECT count(*) FROM readings")[0][0] == 6


def test_port_stops_with_a_reason_when_the_line_dies(store):
    m, s, path = pty_pair()
    ser = serial.Serial(path, 9600, timeout=0)
    ing = RadioIngest(KEYS)
    port = RadioPort(ser, ing, store, lambda: T_RX)

    async def main():
        task = asyncio.create_task(port.run())
        os.write(m, wrap(readings_frame(101, 1, [rd.Block(LEVEL, 1, 0, [1])])))
        # its ACK (written after the commit), not a sleep: then the frame is stored
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, read_all, m, 60.0, 1)
        os.close(m)                      # the adapter is gone: reads fail with EIO
        await asyncio.wait_for(task, 60)

    try:
        asyncio.run(asyncio.wait_for(main(), 300))
    finally:
        ser.close()
        os.close(s)
    assert port.failed and "serial read failed" in port.failed
    assert rows(store, "SELECT count(*) FROM readings")[0][0] == 1   # what came before is kept


def test_downlink_queue_survives_a_restart_with_versions_and_sends():
    results = []
    q = dl.DownlinkQueue(lambda cmd, node, r, detail, v: results.append((cmd.id, node, r, v)))
    q.put(dl.parse_command("emergency", {"node": "all", "duration_s": 600, "id": "s1"},
                           {101, 102}), 100.0)
    q.put(dl.parse_command("request-status", {"node": 102, "id": "s2"}, {101, 102}), 100.0)
    sent = q.config_for(101, 7, 101.0)[0]           # in flight for 101
    assert q.dirty
    data = q.dump()
    assert not q.dirty
    q2 = dl.DownlinkQueue(lambda cmd, node, r, detail, v: results.append((cmd.id, node, r, v)))
    q2.load(data)
    assert q2.depth() == q.depth() == 3
    again = q2.config_for(101, 8, 102.0)[0]
    assert again == sent                             # same version: the node can tell
    q2.on_config_ack(101, {msg.K_VERSION: sent[msg.C_VERSION], msg.K_RESULT: msg.RESULT_STALE},
                     103.0)
    assert results == [("s1", 101, dl.R_APPLIED, sent[msg.C_VERSION])]
    merged = q2.config_for(102, 3, 104.0)[0]         # both commands for 102 in one CONFIG
    assert merged[msg.C_EMERGENCY_S] == 600 and merged[msg.C_STATUS_NOW] is True
    assert merged[msg.C_VERSION] > sent[msg.C_VERSION] - 1


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["put", "send", "ok", "stale", "reject", "tick"]),
                          st.sampled_from([101, 102])), max_size=40))
def test_every_queued_command_ends_with_exactly_one_result_per_node(ops):
    results = []
    q = dl.DownlinkQueue(lambda cmd, node, r, detail, v: results.append((cmd.id, node, r)),
                         max_sends=3)
    now = 1000.0
    queued = []
    last_cfg = {}
    for i, (op, node) in enumerate(ops):
        now += 10
        if op == "put":
            cid = "c%d" % i
            q.put(dl.parse_command("request-status", {"node": node, "id": cid, "ttl_s": 200},
                                   {101, 102}), now)
            queued.append((cid, node))
        elif op == "send":
            cfgs = q.config_for(node, i, now)
            if cfgs:
                last_cfg[node] = cfgs[0][msg.C_VERSION]
        elif op in ("ok", "stale", "reject") and node in last_cfg:
            res = {"ok": msg.RESULT_OK, "stale": msg.RESULT_STALE,
                   "reject": msg.RESULT_REJECTED}[op]
            q.on_config_ack(node, {msg.K_VERSION: last_cfg[node], msg.K_RESULT: res}, now)
        else:
            q.expire(now)
    q.expire(now + 10_000)
    for node in (101, 102):
        assert q.config_for(node, 1, now + 10_000) == []
    ends = [(cid, node) for cid, node, r in results]
    assert sorted(ends) == sorted(queued)            # one terminal result each, none extra
    assert all(r in (dl.R_APPLIED, dl.R_REJECTED, dl.R_EXPIRED) for _c, _n, r in results)
    assert q.depth() == 0


def test_forged_node_ids_do_not_grow_state_without_bound():
    ing = RadioIngest(KEYS, log_every_s=1.0)
    stranger = Hmac(bytes(range(7, 39)))
    for i in range(3000):
        node = 1000 + i
        ing.feed(wrap(fr.encode(stranger, fr.READINGS, node, 1, 0, b"\x18\x02\x00\x02")),
                 T_RX + i * 0.01)
    assert ing.counters == {"unknown_node": 3000}
    assert len(ing.nodes) == 0
    assert len(ing.reject_log._last) <= 1024


def test_unknown_node_ids_share_one_log_limit(caplog):
    ing = RadioIngest(KEYS, log_every_s=60)
    stranger = Hmac(bytes(range(7, 39)))
    with caplog.at_level("WARNING", logger="stationgw.radio"):
        for i in range(200):
            ing.feed(wrap(fr.encode(stranger, fr.READINGS, 2000 + i, 1, 0, b"\x18\x02\x00\x02")),
                     T_RX + i)
    lines = [r.getMessage() for r in caplog.records if "frame_rejected" in r.getMessage()]
    assert len(lines) == 4 and "node=2000 reason=unknown_node" in lines[0]
