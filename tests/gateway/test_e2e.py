"""End to end with real parts: frames made with protocol/ on a pty pair (the radio line),
the gateway daemon as a real subprocess (`python -m gateway.cli run`), a real Mosquitto
and an MQTT subscriber that decodes what arrives."""
import json
import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import time

import cbor2
import pytest

from gateway.records import FrameSeen, Reading
from gateway.store import Store
from hil.demo import Air, GatewayProcess, make_keys, signed, wait_until, write_site
from hil.simnode import Channel, SimNode, World
from protocol import frame as fr
from protocol import messages as msg
from protocol import readings as rd
from protocol.framing import Deframer, wrap
from protocol.mic import Hmac

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LEVEL = 3 << 3
DISP = 2 << 3
NODES = ((101, "n101", ("water_level.0", "displacement.0")),
         (102, "n102", ("water_level.0",)),
         (103, "n103", ("water_level.0",)))
pytestmark = pytest.mark.broker


Gateway = GatewayProcess


@pytest.fixture
def site(tmp_path, broker):
    keys = make_keys([n[0] for n in NODES])
    made = []

    def make(nodes=None, speed=10.0, air=True, **kw):
        a = Air(nodes or [], speed=speed) if air else None
        cfg = write_site(str(tmp_path / "site"), broker.port, a.path if a else "/dev/null", keys,
                         nodes=NODES, **kw)
        gw = Gateway(cfg, str(tmp_path))
        made.append((a, gw))
        return a, gw
    make.keys = keys
    yield make
    for a, gw in made:
        gw.close()
        if a:
            a.close()


def read_downlink(fd, want, timeout=30.0):
    out = b""
    frames = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(frames) < want:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            out += os.read(fd, 4096)
            frames = [x for x in Deframer().feed(out) if isinstance(x, bytes)]
    return frames


def sim(node, keys, chans=((LEVEL, 1500, 200),), **kw):
    kw.setdefault("sample_s", 5)
    kw.setdefault("report_s", 10)
    kw.setdefault("status_s", 600)
    kw.setdefault("link_kw", {"down_after": 1000, "retry_max_s": 8.0, "budget_s": 1e6})
    return SimNode(node, keys[node], [Channel(c, World(b, a, 300)) for c, b, a in chans], **kw)


# ------------------------------------------------------------------ frames in, batches out

def test_frames_in_decoded_batches_out_values_and_times_right(site, subscriber):
    sub = subscriber()
    air, gw = site()
    gw.start()
    k = Hmac(site.keys[101])
    blocks = [rd.Block(LEVEL, 600, 300, [1500, 1520, 1555]), rd.Block(DISP, 30, 0, [1234])]
    t_before = time.time()
    os.write(air.master, wrap(fr.encode(k, fr.READINGS, 101, 42, 77, rd.encode(blocks))))
    acks = read_downlink(air.master, 1)
    t_after = time.time()
    assert len(acks) == 1
    a = fr.decode(acks[0], lambda n: k, fr.DOWNLINK_TYPES)
    re, gw_time, ranges = msg.decode_ack(a.payload)
    assert a.mtype == fr.ACK and re == 42 and (42, 42) in ranges
    assert t_before - 1 <= gw_time <= t_after + 1
    assert sub.wait_for(lambda s: len(s.readings()) >= 4, 60)
    got = {(r[0], r[1], r[2]): r for r in sub.readings()}
    assert set(got) == {(101, 42, i) for i in range(4)}
    for idx, (chan, age, v) in enumerate([(LEVEL, 600, 1500), (LEVEL, 300, 1520), (LEVEL, 0, 1555),
                                          (DISP, 30, 1234)]):
        node, seq, i, c, t, value, flags = got[(101, 42, idx)]
        assert (c, value, flags) == (chan, v, 0)
        assert int(t_before) - age - 1 <= t <= int(t_after) - age + 1
    # the raw node time (77 s since boot) must not leak into stamps
    assert all(r[4] > 1_000_000_000 for r in sub.readings())
    assert gw.term() == 0
    assert "event=stopped" in gw.text()


def test_bad_input_on_the_line_is_rejected_counted_and_never_published(site, subscriber):
    sub = subscriber()
    air, gw = site()
    gw.start()
    k101, k102 = Hmac(site.keys[101]), Hmac(site.keys[102])
    good = fr.encode(k101, fr.READINGS, 101, 10, 0, rd.encode([rd.Block(LEVEL, 1, 0, [1])]), 0, 0)
    os.write(air.master, wrap(good))
    assert len(read_downlink(air.master, 1)) == 1
    assert sub.wait_for(lambda s: len(s.readings()) == 1, 60)
    bad = [b"\x00" + b"\xde\xad\xbe\xef" * 20 + b"\x00",                      # garbage
           wrap(good)[:20] + b"\x00",                                       # truncated
           wrap(fr.encode(k102, fr.READINGS, 101, 11, 0, rd.encode([rd.Block(LEVEL, 1, 0, [2])]),
                          0, 0)),                                          # forged: wrong key
           wrap(fr.encode(k101, fr.READINGS, 101, 9, 0, rd.encode([rd.Block(LEVEL, 1, 0, [3])]),
                          0, 0))]                                          # replayed: below floor
    gw_status = os.path.join(os.path.dirname(gw.cfg), "status.json")

    def counters():
        try:
            with open(gw_status) as f:
                return json.load(f)["counters"]
        except (OSError, ValueError, KeyError):
            return {}
    for b in bad:
        os.write(air.master, b)
    # once all four are counted they have been handled: whatever the gateway answered
    # them is on the line by then, however slow the machine
    assert wait_until(lambda: counters().get("frames_rejected") == 4, 60), counters()
    assert read_downlink(air.master, 1, timeout=0.5) == []      # nothing acked
    os.write(air.master, wrap(good))                             # a duplicate: acked again
    assert len(read_downlink(air.master, 1)) == 1
    assert wait_until(lambda: counters().get("frames_rejected") == 4 and
                      counters().get("frames_duplicate") == 1, 60), counters()
    c = counters()
    assert c["rejected_mic"] == 1 and c["rejected_replay"] == 1 and c["frames_duplicate"] == 1
    assert sum(c.get("rejected_" + r, 0) for r in ("crc", "cobs", "too_short")) == 2, c
    # a barrier instead of a sleep: a new frame's reading is published after anything
    # the bad frames or the duplicate could have made
    os.write(air.master, wrap(fr.encode(k101, fr.READINGS, 101, 12, 0,
                                        rd.encode([rd.Block(LEVEL, 1, 0, [4])]), 0, 0)))
    assert len(read_downlink(air.master, 1)) == 1
    assert sub.wait_for(lambda s: (101, 12, 0) in s.keys(), 60)
    assert [r[:3] for r in sub.readings()] == [(101, 10, 0), (101, 12, 0)]   # nothing else
    # a restart does not reopen the replay window: the old frame is still refused
    assert gw.term() == 0
    gw.start()
    os.write(air.master, bad[3])
    assert wait_until(lambda: counters().get("rejected_replay") == 2, 60), counters()
    assert read_downlink(air.master, 1, timeout=0.5) == []
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "status", "-c", gw.cfg],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "n101" in out.stdout and "rejects" in out.stdout and "mic=1" in out.stdout
    assert gw.term() == 0


# ------------------------------------------------------------------ crash safety

def test_kill9_repeatedly_loses_nothing_that_was_acked(site, subscriber, tmp_path):
    sub = subscriber()
    nodes = [sim(n, site.keys, sample_s=1, report_s=2) for n in (101, 102, 103)]
    air, gw = site(nodes, speed=20.0)
    air.start()
    rng = random.Random(7)
    for _ in range(10):
        gw.start()
        time.sleep(rng.uniform(0.3, 1.2))
        gw.kill9()
        assert gw.proc.returncode == -signal.SIGKILL
    gw.start()
    acked = {}

    def drained():
        return all(not n.log for n in nodes)
    assert wait_until(drained, 120), [len(n.log) for n in nodes]
    for n in nodes:
        acked[n.node] = [s for s in sorted(n.acked) if s in n.readings_in]
    want = {(node, s, i) for node, seqs in acked.items() for s in seqs
            for i in range(nodes[node - 101].readings_in[s])}
    assert len(want) > 30
    assert sub.wait_for(lambda s: want <= s.keys(), 120), len(want - sub.keys())
    # order kept per node within what arrived, duplicates only with the same dedup key
    assert gw.term() == 0
    db = sqlite3.connect(os.path.join(os.path.dirname(gw.cfg), "store.db"))
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


# ------------------------------------------------------------------ alarms first

def test_alarm_overtakes_a_draining_backlog(site, subscriber, broker, tmp_path):
    air, gw = site(max_readings=1000)          # 100 batches to drain
    store_path = os.path.join(os.path.dirname(gw.cfg), "store.db")
    s = Store(store_path)
    old = int(time.time()) - 7 * 86400
    recs = []
    n = 0
    for seq in range(1, 1001):                         # 1000 frames, 100 readings each
        recs.append(FrameSeen(9001, seq))
        for i in range(100):
            recs.append(Reading(9001, seq, i, LEVEL, old + n, 1000 + i))
            n += 1
        if len(recs) > 20000:
            s.commit(recs)
            recs = []
    s.commit(recs)
    s.close()
    sub = subscriber()
    gw.start()
    assert sub.wait_for(lambda x: len(x.batches()) >= 1, 60)
    # Staged with the broker frozen (SIGSTOP) mid-drain, so neither side's speed decides:
    # every batch the gateway took before the alarm's commit is in its store's batches
    # table (no PUBACK can come back), and any batch taken later must arrive after the
    # alarm. The radio ACK comes after the commit, and the commit hands the alarm to
    # the uplink at once (the fast lane).
    k = Hmac(site.keys[101])
    payload = msg.encode_alarms([{msg.A_EVENT: 1, msg.A_LEVEL: 4, msg.A_PREV: 0,
                                  msg.A_CHAN: DISP, msg.A_RULE: 3, msg.A_KIND: 1,
                                  msg.A_VALUE: 2500, msg.A_THRESHOLD: 2000, msg.A_AGE: 1}])
    broker.proc.send_signal(signal.SIGSTOP)
    try:
        os.write(air.master, wrap(fr.encode(k, fr.ALARM, 101, 5, 0, payload, 0, 0)))
        assert len(read_downlink(air.master, 1, timeout=60)) == 1, "the alarm was not acked"
        db = sqlite3.connect("file:%s?mode=ro" % store_path, uri=True, timeout=60)
        taken = db.execute("SELECT MAX(seq) FROM batches").fetchone()[0]
        db.close()
    finally:
        broker.proc.send_signal(signal.SIGCONT)
    assert taken is not None and taken < 100, \
        "the backlog drained before the freeze (last batch %s): nothing to overtake" % taken
    assert sub.wait_for(lambda x: len(x.alarms()) == 1, 60)
    assert sub.wait_for(lambda x: len(x.readings()) >= 100000, 180)
    msgs = sub.snapshot()
    i_alarm = [m[0] for m in msgs].index("stations/demo/gw1/alarm")
    ahead = {cbor2.loads(m[1])[3] for m in msgs[:i_alarm] if m[0].endswith("/data")}
    behind = {cbor2.loads(m[1])[3] for m in msgs[i_alarm:] if m[0].endswith("/data")}
    assert max(ahead) <= taken, "batches taken after the alarm went out before it: %s" % sorted(
        q for q in ahead if q > taken)
    assert behind - ahead, "the alarm did not overtake the backlog"
    a = sub.alarms()[0]
    assert (a[3], a[4], a[6], a[8]) == (101, 5, 4, DISP)
    assert gw.term() == 0


# ------------------------------------------------------------------ downlink end to end

def site_dir(gw):
    return os.path.dirname(gw.cfg)


def wait_for_birth(subscriber):
    """The gateway subscribes to cmd/# before it publishes its birth message, so once the
    birth is seen a command cannot fall into the gap before its subscription exists."""
    st = subscriber(topic="stations/demo/gw1/status", client_id="test-birth-watch")
    assert st.wait_for(lambda s: any(cbor2.loads(m[1]).get(3) == 1 for m in s.snapshot()), 60)


def test_command_over_mqtt_reaches_the_node_and_the_result_comes_back(site, subscriber, broker):
    import paho.mqtt.client as mqtt
    sub = subscriber(topic="stations/demo/gw1/cmd-result")
    node = sim(101, site.keys)
    air, gw = site([node], speed=10.0)
    gw.start()
    air.start()
    wait_for_birth(subscriber)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="operator",
                      protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    try:
        sd = str(site_dir(gw))
        pub.publish("stations/demo/gw1/cmd/set-intervals",
                    signed(sd, "set-intervals", {"node": 101, "sampel_s": 30}),
                    qos=1).wait_for_publish(60)
        pub.publish("stations/demo/gw1/cmd/set-intervals",
                    signed(sd, "set-intervals", {"node": 101, "sample_s": 2, "id": "op-1"}),
                    qos=1).wait_for_publish(60)

        def results():
            return [cbor2.loads(p) for _t, p, _m, _c in sub.snapshot()]
        assert sub.wait_for(lambda s: any(r[5] == "applied" for r in results()), 60), results()
        rs = results()
        assert rs[0][5] == "invalid" and "sampel_s" in rs[0][7]
        assert [r[5] for r in rs[1:]] == ["queued", "applied"]
        assert rs[2][4] == "op-1" and rs[2][6] == 101 and rs[2][8] == node.config_version
        assert node.sample_s == 2
    finally:
        pub.disconnect()
        pub.loop_stop()
    assert gw.term() == 0


def test_queued_command_survives_a_gateway_restart(site, subscriber, broker):
    import paho.mqtt.client as mqtt
    sub = subscriber(topic="stations/demo/gw1/cmd-result")
    node = sim(102, site.keys)
    air, gw = site([node], speed=10.0)
    gw.start()                                     # the node is silent for now
    wait_for_birth(subscriber)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="operator2",
                      protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    try:
        pub.publish("stations/demo/gw1/cmd/emergency",
                    signed(str(site_dir(gw)), "emergency",
                           {"node": 102, "duration_s": 900, "id": "storm"}),
                    qos=1).wait_for_publish(60)

        def results():
            return [cbor2.loads(p)[5] for _t, p, _m, _c in sub.snapshot()]
        assert sub.wait_for(lambda s: results() == ["queued"], 60)
    finally:
        pub.disconnect()
        pub.loop_stop()
    assert gw.term() == 0
    gw.start()
    air.start()                                    # now the node talks
    assert sub.wait_for(lambda s: results() == ["queued", "applied"], 60), results()
    assert node.emergency_until is not None
    assert gw.term() == 0


def test_broker_outage_and_kill9_lose_nothing_acked(site, subscriber, broker):
    sub = subscriber()
    nodes = [sim(n, site.keys, sample_s=1, report_s=2) for n in (101, 102)]
    air, gw = site(nodes, speed=20.0)
    gw.start()
    air.start()
    assert sub.wait_for(lambda s: len(s.readings()) > 0, 60)

    def acked_frames():
        return sum(len(n.acked) for n in nodes)

    def acked_readings():
        return {(n.node, s, i) for n in nodes for s in sorted(n.acked) if s in n.readings_in
                for i in range(n.readings_in[s])}
    broker.stop()                          # a clean outage: frames keep coming, all acked
    before = acked_frames()
    # events, not sleeps: each phase lasts until something happened in it, however
    # slow the machine
    assert wait_until(lambda: acked_frames() >= before + 5, 60)
    acked_in_outage = acked_frames() - before
    broker.start()
    n_sub = len(sub.readings())
    assert sub.wait_for(lambda s: len(s.readings()) > n_sub, 60)
    broker.save()                          # the broker crashes with its sessions on disk
    broker.stop(kill=True)                 # and a crash of the broker
    k = acked_frames()
    assert wait_until(lambda: acked_frames() >= k + 3, 60)
    broker.start()
    n_sub = len(sub.readings())
    assert sub.wait_for(lambda s: len(s.readings()) > n_sub, 60)
    assert wait_until(lambda: len(acked_readings()) > 100, 60)
    air.stop()
    want = acked_readings()
    assert acked_in_outage > 0 and len(want) > 100
    assert sub.wait_for(lambda s: want <= s.keys(), 120), len(want - sub.keys())
    seen = {}
    for r in sub.readings():               # a duplicate is the same reading, key and all
        assert seen.setdefault(r[:3], r) == r
    assert gw.term() == 0
