"""Issue 12, defects 1 and 2: a frame with a valid MIC whose integers do not fit
(CONFIG_ACK version 2^64-1, 64-bit values in ALARM/STATUS/HELLO) costs that frame only.
It is counted as `payload`, logged with its hex and acked (SPEC 7.1); the frames read
with it commit and are acked; nothing out of range reaches the store, a CONFIG or the
downlink queue file. The supervisor property: the ingest survives any single frame."""
import asyncio
import os
import select
import time
import tty

import cbor2
import pytest
import serial
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import downlink as dl
from gateway.radio import RadioIngest, RadioPort
from gateway.records import Alarm
from gateway.store import Store
from protocol import frame as fr
from protocol import messages as msg
from protocol import readings as rd
from protocol.framing import Deframer, wrap
from protocol.mic import Hmac

K101 = bytes(range(1, 33))
K102 = bytes(range(101, 133))
KEYS = {101: K101, 102: K102}
LEVEL = 3 << 3
T_RX = 1_800_000_000.25
BIG = (1 << 64) - 1


def frame(node, seq, mtype, payload):
    return wrap(fr.encode(Hmac(KEYS[node]), mtype, node, seq, 1000, payload, 0, 0))


def readings(node, seq, v=1500):
    return frame(node, seq, fr.READINGS, rd.encode([rd.Block(LEVEL, 1, 0, [v])]))


def alarm_payload(value=3600, threshold=3500, over=None):
    a = {msg.A_EVENT: 1, msg.A_LEVEL: 3, msg.A_PREV: 0, msg.A_CHAN: LEVEL, msg.A_RULE: 2,
         msg.A_KIND: 1, msg.A_VALUE: value, msg.A_THRESHOLD: threshold, msg.A_AGE: 3}
    a.update(over or {})
    return cbor2.dumps([a])


def acked(ing, g, node_keys=KEYS):
    out = {}
    for item in Deframer().feed(b"".join(ing.committed(g, T_RX))):
        f = fr.decode(item, lambda n: Hmac(node_keys[n]), fr.DOWNLINK_TYPES)
        if f.mtype == fr.ACK:
            out.setdefault(f.node, set()).add(msg.decode_ack(f.payload)[0])
    return out


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store.db")
    yield s
    s.close()


def test_config_ack_version_2_64_is_a_payload_reject_and_the_queue_stays_usable(tmp_path,
                                                                                 store):
    results = []
    q = dl.DownlinkQueue(lambda cmd, node, r, detail, v: results.append((node, r, v)))
    ing = RadioIngest(KEYS, downlink=q)
    q.put(dl.parse_command("emergency", {"node": 101, "duration_s": 60}, {101}), T_RX)
    ing.feed(readings(101, 1), T_RX)
    g = ing.take_group()
    store.commit(g.records)
    ing.committed(g, T_RX)                       # ACK + CONFIG went out
    assert 101 in q.in_flight
    bad = frame(101, 2, fr.CONFIG_ACK, cbor2.dumps({msg.K_VERSION: BIG,
                                                    msg.K_RESULT: msg.RESULT_STALE}))
    ing.feed(bad + readings(102, 1), T_RX)       # with a genuine frame of another node
    g = ing.take_group()
    store.commit(g.records)                      # the group commits
    assert acked(ing, g) == {101: {2}, 102: {1}}
    assert ing.counters["payload"] == 1
    assert store.counters()["rejected_payload"] == 1
    assert q.last_version.get(101, 0) <= dl.MAX_VERSION
    # the queue file holds nothing unencodable and a restart reads it back
    q2 = dl.DownlinkQueue(lambda *a: None)
    q2.load(q.dump())
    # the node's next frame still gets its ACK and an encodable CONFIG
    ing.feed(readings(101, 3), T_RX + 5)
    g = ing.take_group()
    store.commit(g.records)
    down = [fr.decode(i, lambda n: Hmac(KEYS[n]), fr.DOWNLINK_TYPES)
            for i in Deframer().feed(b"".join(ing.committed(g, T_RX + 5)))]
    assert [f.mtype for f in down] == [fr.ACK, fr.CONFIG]
    _re, cfg = msg.decode_config(down[1].payload)
    assert 1 <= cfg[msg.C_VERSION] <= dl.MAX_VERSION


def test_queue_file_with_an_unencodable_version_from_an_old_gateway_is_repaired():
    q = dl.DownlinkQueue(lambda *a: None)
    q.put(dl.parse_command("request-status", {"node": 101}, {101}), T_RX)
    q.config_for(101, 1, T_RX)
    doc = cbor2.loads(q.dump())
    doc["in_flight"][0]["version"] = BIG + 1
    doc["in_flight"][0]["cfg"][msg.C_VERSION] = BIG + 1
    doc["last_version"] = {101: BIG + 1}
    q2 = dl.DownlinkQueue(lambda *a: None)
    q2.load(cbor2.dumps(doc))
    cfg = q2.config_for(101, 2, T_RX + 1)[0]
    assert 1 <= cfg[msg.C_VERSION] <= dl.MAX_VERSION
    msg.encode_map(cfg)                           # fits the node's CBOR


def test_node_at_the_last_version_gets_a_clear_rejection_not_a_crash():
    results = []
    q = dl.DownlinkQueue(lambda cmd, node, r, detail, v: results.append((r, detail)),
                         clock_versions=False)
    q.note_version(101, dl.MAX_VERSION)
    q.put(dl.parse_command("request-status", {"node": 101}, {101}), T_RX)
    assert q.config_for(101, 1, T_RX) == []
    assert results[0][0] == dl.R_REJECTED and "provision" in results[0][1]


@pytest.mark.parametrize("mtype,payload", [
    (fr.ALARM, alarm_payload(value=BIG)),
    (fr.ALARM, alarm_payload(threshold=-(1 << 63) - 1)),
    (fr.ALARM, alarm_payload(over={msg.A_AGE: 1 << 40})),
    (fr.ALARM, alarm_payload(over={msg.A_RULE: 1 << 63})),
    (fr.STATUS, cbor2.dumps({msg.S_BATTERY_MV: BIG})),
    (fr.STATUS, cbor2.dumps({msg.S_LOG_DEPTH: 1 << 63})),
    (fr.HELLO, cbor2.dumps({msg.H_CONFIG_VERSION: BIG, msg.H_FW: "x"})),
    (fr.HELLO, cbor2.dumps({msg.H_RESET_CAUSE: 1 << 64})),
], ids=["alarm-value", "alarm-threshold", "alarm-age", "alarm-rule", "status-battery",
        "status-depth", "hello-version", "hello-reset-bignum"])
def test_64_bit_integer_costs_its_frame_only(store, caplog, mtype, payload):
    ing = RadioIngest(KEYS)
    bad = frame(101, 5, mtype, payload)
    ing.feed(readings(102, 1) + bad + frame(102, 2, fr.ALARM, alarm_payload()), T_RX)
    g = ing.take_group()
    store.commit(g.records)                       # no OverflowError: the group commits
    assert acked(ing, g) == {101: {5}, 102: {1, 2}}
    assert store.counters()["rejected_payload"] == 1
    assert "raw=" + fr.decode(Deframer().feed(bad)[0], lambda n: Hmac(KEYS[n])).raw.hex() \
        in caplog.text
    with store._lock:
        assert store._db.execute("SELECT count(*) FROM readings").fetchone()[0] == 1
    assert [a.node for _i, a in store.pending_alarms()] == [102]


def test_handler_bug_costs_the_frame_only(store, monkeypatch):
    ing = RadioIngest(KEYS)
    real = ing._records

    def buggy(f, now):
        if f.node == 101:
            raise KeyError("bug")
        return real(f, now)
    monkeypatch.setattr(ing, "_records", buggy)
    ing.feed(readings(101, 1) + readings(102, 1), T_RX)
    g = ing.take_group()
    store.commit(g.records)
    assert acked(ing, g) == {101: {1}, 102: {1}}
    assert ing.counters["payload"] == 1


def test_a_bug_in_the_link_layer_costs_that_frame_not_the_read(monkeypatch):
    ing = RadioIngest(KEYS)
    real = ing.link.receive
    calls = []

    def receive(data):
        calls.append(data)
        if len(calls) == 1:
            raise RuntimeError("bug")
        return real(data)
    monkeypatch.setattr(ing.link, "receive", receive)
    ing.feed(readings(101, 1) + readings(102, 1), T_RX)
    assert [(f.node, f.seq) for f in ing.group.frames] == [(102, 1)]
    assert ing.counters == {"internal": 1}


# ------------------------------------------------------------------ the shell


class PickyStore:
    """A real store whose commit fails like SQLite on a 64-bit value for one node's
    alarms (as the old code did): the port must isolate that frame and ack the rest."""

    def __init__(self, store, bad_node):
        self.store, self.bad_node, self.calls = store, bad_node, 0

    def commit(self, records):
        self.calls += 1
        if any(isinstance(r, Alarm) and r.node == self.bad_node for r in records):
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return self.store.commit(records)

    def committed_seqs(self, node):
        return self.store.committed_seqs(node)


def test_port_commits_frame_by_frame_when_one_frame_fails_the_transaction(store):
    m, s = os.openpty()
    tty.setraw(m)
    tty.setraw(s)
    ser = serial.Serial(os.ttyname(s), 9600, timeout=0)
    picky = PickyStore(store, 101)
    ing = RadioIngest(KEYS)
    port = RadioPort(ser, ing, picky, lambda: T_RX)

    async def main():
        task = asyncio.create_task(port.run())
        os.write(m, readings(102, 1) + frame(101, 7, fr.ALARM, alarm_payload())
                 + readings(102, 2))
        loop = asyncio.get_running_loop()
        data = await loop.run_in_executor(None, _read_frames, m, 3)
        port.stop()
        await asyncio.wait_for(task, 60)
        return data, task

    try:
        data, task = asyncio.run(asyncio.wait_for(main(), 300))
    finally:
        ser.close()
        os.close(m)
        os.close(s)
    got = {}
    for item in Deframer().feed(data):
        f = fr.decode(item, lambda n: Hmac(KEYS[n]), fr.DOWNLINK_TYPES)
        got.setdefault(f.node, set()).add(msg.decode_ack(f.payload)[0])
    assert got == {101: {7}, 102: {1, 2}}
    assert task.exception() is None and port.failed is None
    assert store.counters()["rejected_payload"] == 1
    assert store.committed_seqs(101)[1] or store.committed_seqs(101)[0] > 7


def _read_frames(fd, want, timeout=60.0):
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            out += os.read(fd, 4096)
            if len(Deframer().feed(out)) >= want:
                break
    return out


# ------------------------------------------------------------------ supervisor property

_ints = st.one_of(st.integers(-(1 << 70), 1 << 70), st.sampled_from([BIG, 1 << 63, -(1 << 63)]))
_values = st.recursive(st.one_of(_ints, st.text(max_size=8), st.binary(max_size=8),
                                 st.booleans(), st.none()),
                       lambda c: st.one_of(st.lists(c, max_size=4),
                                           st.dictionaries(st.integers(0, 20), c, max_size=6)),
                       max_leaves=12)


def _payload(draw_value):
    try:
        return cbor2.dumps(draw_value)
    except Exception:
        return b"\xff"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(mtype=st.sampled_from(fr.UPLINK_TYPES),
       payload=st.one_of(st.binary(min_size=1, max_size=120),
                         _values.map(_payload).filter(lambda b: 0 < len(b) <= 150)))
def test_ingest_survives_any_single_valid_mic_frame(tmp_path_factory, mtype, payload):
    """Whatever one valid-MIC frame holds, the group commits and every frame is acked."""
    q = dl.DownlinkQueue(lambda *a: None)
    q.put(dl.parse_command("request-status", {"node": "all"}, {101, 102}), T_RX)
    ing = RadioIngest(KEYS, downlink=q)
    s = Store(tmp_path_factory.mktemp("sv") / "s.db")
    try:
        ing.feed(readings(101, 1) + readings(102, 1), T_RX)     # CONFIGs now in flight
        g = ing.take_group()
        s.commit(g.records)
        ing.committed(g, T_RX)
        ing.feed(readings(102, 2) + frame(101, 2, mtype, payload) + readings(102, 3), T_RX)
        g = ing.take_group()
        s.commit(g.records)
        assert acked(ing, g) == {101: {2}, 102: {2, 3}}
        q2 = dl.DownlinkQueue(lambda *a: None)
        q2.load(q.dump())
        for n in (101, 102):
            for cfg in q.config_for(n, 9, T_RX + 1):
                msg.encode_map(cfg)
    finally:
        s.close()
