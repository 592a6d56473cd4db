"""Issue 12 against the real daemon (a subprocess), a real Mosquitto and a pty radio line:
unsigned commands refused over MQTT (defect 3), a 3,000-command flood that leaves radio
ACKs and alarms alone (defect 4), the directory fsync of write_atomic (defect 5), a
second daemon on the same config (defect 7), and the daemon surviving poisoned frames
(defects 1, 2)."""
import json
import os
import random
import select
import stat
import subprocess
import sys
import threading
import time

import cbor2
import paho.mqtt.client as mqtt
import pytest

from gateway import daemon
from hil.demo import ROOT, Air, GatewayProcess, make_keys, signed, wait_until, write_site
from protocol import frame as fr
from protocol import messages as msg
from protocol import readings as rd
from protocol.framing import Deframer, wrap
from protocol.mic import Hmac

LEVEL = 3 << 3
NODES = ((101, "n101", ("water_level.0",)), (102, "n102", ("water_level.0",)))
BASE = "stations/demo/gw1"
pytestmark = pytest.mark.broker


@pytest.fixture
def gwsite(tmp_path, broker):
    keys = make_keys([n[0] for n in NODES])
    air = Air([])
    cfg = write_site(str(tmp_path / "site"), broker.port, air.path, keys, nodes=NODES)
    gw = GatewayProcess(cfg, str(tmp_path))
    yield keys, air, cfg, gw
    gw.close()
    air.close()


def status(cfg):
    try:
        with open(os.path.join(os.path.dirname(cfg), "status.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def publisher(port, client_id):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(200)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def downlink(fd, keys, want, timeout, settle=0.3):
    """Downlink frames from the gateway (decoded), until `want` ACKs and whatever they
    announce (an ACK or CONFIG with F_PENDING says more follows: waited for as an
    event, not a time), then `settle` s more in which nothing else may come; or the
    timeout, a hang guard."""
    out = b""
    frames = []
    deadline = time.monotonic() + timeout
    done = False
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            out += os.read(fd, 65536)
            frames = [fr.decode(x, lambda n: Hmac(keys[n]), fr.DOWNLINK_TYPES)
                      for x in Deframer().feed(out) if isinstance(x, bytes)]
            last = {}
            for f in frames:
                last[f.node] = f
            if not done and sum(1 for f in frames if f.mtype == fr.ACK) >= want and \
                    not any(f.flags & fr.F_PENDING for f in last.values()):
                done = True
                deadline = min(deadline, time.monotonic() + settle)
    return frames


def readings(keys, node, seq):
    return wrap(fr.encode(Hmac(keys[node]), fr.READINGS, node, seq, 0,
                          rd.encode([rd.Block(LEVEL, 1, 0, [seq])]), 0, 0))


def test_unsigned_commands_are_refused_counted_and_never_reach_a_node(gwsite, broker,
                                                                      subscriber):
    keys, air, cfg, gw = gwsite
    res = subscriber(topic=BASE + "/cmd-result", client_id="res")
    gw.start()
    assert wait_until(lambda: "subscribed" in gw.text() or status(cfg).get("broker", {})
                      .get("connected"), 60)
    pub = publisher(broker.port, "anonymous")
    try:
        attack = [("set-rules", {"node": "all", "rules": []}),
                  ("set-intervals", {"node": "all", "sample_s": 86400, "report_s": 86400}),
                  ("emergency", {"node": "all", "duration_s": 7 * 86400})]
        sent = 0
        for _i in range(350):
            for verb, doc in attack:
                pub.publish(BASE + "/cmd/" + verb, json.dumps(doc), qos=1)
                sent += 1
        # a replayed genuine command: accepted once, refused ever after
        genuine = signed(os.path.dirname(cfg), "request-status", {"node": 101, "id": "g1"})
        for _ in range(60):
            pub.publish(BASE + "/cmd/request-status", genuine, qos=1).wait_for_publish(60)
        sent += 59
        assert wait_until(lambda: sum(status(cfg).get("commands", {}).get("refused", {})
                                      .values()) >= sent, 30), status(cfg).get("commands")
        c = status(cfg)["commands"]
        assert c["accepted"] == 1 and c["refused"]["malformed"] == 1050
        assert c["refused"]["replay"] == 59
        assert c["queue_depth"] == 1
        # results: "refused" (rate limited, so a flood cannot flood the uplink), one queued
        rs = [cbor2.loads(p) for _t, p, _m, _c in res.snapshot()]
        assert any(r[5] == "refused" for r in rs)
        assert sum(1 for r in rs if r[5] == "refused") <= 60
        assert [r[4] for r in rs if r[5] == "queued"] == ["g1"]
        # the node's next frame: its ACK carries only the status request, no other CONFIG
        os.write(air.master, readings(keys, 102, 1))
        frames = downlink(air.master, keys, 1, 60)
        assert [f.mtype for f in frames] == [fr.ACK]         # nothing for node 102
        os.write(air.master, readings(keys, 101, 1))
        frames = downlink(air.master, keys, 1, 60)
        cfgs = [msg.decode_config(f.payload)[1] for f in frames if f.mtype == fr.CONFIG]
        assert len(cfgs) == 1 and set(cfgs[0]) == {msg.C_VERSION, msg.C_STATUS_NOW}
        log = gw.text()
        assert "event=command_refused" in log and "reason=malformed" in log
    finally:
        pub.disconnect()
        pub.loop_stop()
    assert gw.term() == 0


def test_dangerous_command_needs_the_flag_and_is_logged(gwsite, broker, subscriber):
    keys, air, cfg, gw = gwsite
    res = subscriber(topic=BASE + "/cmd-result", client_id="res2")
    gw.start()
    assert wait_until(lambda: status(cfg).get("broker", {}).get("connected"), 60)
    d = os.path.dirname(cfg)
    pub = publisher(broker.port, "op")
    try:
        doc = {"node": 101, "rules": [], "id": "strip"}
        pub.publish(BASE + "/cmd/set-rules", signed(d, "set-rules", doc), qos=1)
        pub.publish(BASE + "/cmd/set-rules", signed(d, "set-rules", dict(doc, id="strip2"),
                                                    dangerous=True), qos=1)

        def results():
            return [(r[4], r[5]) for r in (cbor2.loads(p) for _t, p, _m, _c in res.snapshot())]
        assert wait_until(lambda: ("strip2", "queued") in results(), 60), results()
        assert ("strip", "refused") in results() and ("strip", "queued") not in results()
        assert "event=command_dangerous operator=duty verb=set-rules id=strip2" in gw.text()
    finally:
        pub.disconnect()
        pub.loop_stop()
    assert gw.term() == 0


def test_command_flood_leaves_radio_acks_and_alarms_alone(gwsite, broker, subscriber):
    """3,000 commands (signed ones from a busy operator, unsigned junk) while two nodes
    send frames and an alarm. Every frame is acked at its first sending, the alarm is
    published, the queue stays bounded and its file is written a few times, not 3,000.
    Latency figures: `python -m bench flood` (no timed assertion here)."""
    keys, air, cfg, gw = gwsite
    alarms = subscriber(topic=BASE + "/alarm", client_id="alarms")
    gw.start()
    assert wait_until(lambda: status(cfg).get("broker", {}).get("connected"), 60)
    d = os.path.dirname(cfg)
    envs = [signed(d, "set-intervals", {"node": 101 + i % 2, "sample_s": 30 + i % 100})
            for i in range(1500)]
    pub = publisher(broker.port, "flooder")
    stop = threading.Event()

    def flood():
        for i in range(1500):
            pub.publish(BASE + "/cmd/set-intervals", envs[i], qos=1)
            pub.publish(BASE + "/cmd/emergency", b'{"node": "all", "duration_s": 604800}',
                        qos=1)
        stop.set()
    t = threading.Thread(target=flood)
    t.start()
    acked = set()
    seq = 0
    alarm_sent = False
    try:
        while not stop.is_set() or seq < 40:
            seq += 1
            node = 101 + seq % 2
            if seq == 20:
                payload = msg.encode_alarms([{msg.A_EVENT: 1, msg.A_LEVEL: 4, msg.A_PREV: 0,
                                              msg.A_CHAN: LEVEL, msg.A_RULE: 1, msg.A_KIND: 1,
                                              msg.A_VALUE: 5000, msg.A_THRESHOLD: 4000,
                                              msg.A_AGE: 0}])
                os.write(air.master, wrap(fr.encode(Hmac(keys[node]), fr.ALARM, node, seq, 0,
                                                    payload, 0, 0)))
                alarm_sent = True
            else:
                os.write(air.master, readings(keys, node, seq))
            # the node waits for its ACK (a 10 s guard against a hang, not a speed test)
            for f in downlink(air.master, keys, 1, 60, settle=0):
                if f.mtype == fr.ACK:
                    acked.add((f.node, msg.decode_ack(f.payload)[0]))
            if seq > 400:
                break
        t.join(60)
        assert alarm_sent and stop.is_set()
        assert all(((101 + s % 2), s) in acked for s in range(1, seq + 1)), \
            sorted({(101 + s % 2, s) for s in range(1, seq + 1)} - acked)[:5]
        assert alarms.wait_for(lambda s: len(s.alarms()) == 1, 60)
        def handled(c):
            return c.get("accepted", 0) + sum(c.get("refused", {}).values()) + \
                c.get("dropped_overload", 0)
        assert wait_until(lambda: handled(status(cfg).get("commands", {})) >= 3000, 60), \
            status(cfg).get("commands")
        c = status(cfg)["commands"]
        assert handled(c) == 3000                    # each one counted exactly once
        assert c["queue_depth"] <= 2 * 16 + 2
        assert c["refused"]["malformed"] <= 1500 and c["accepted"] >= 1
        assert c["accepted"] + c["refused"].get("rate_limited", 0) <= 1500
        assert c["queue_saves"] < c["accepted"] or c["accepted"] < 3
    finally:
        stop.set()
        t.join(60)
        pub.disconnect()
        pub.loop_stop()
    assert gw.term() == 0


def test_second_daemon_on_the_same_config_refuses_naming_the_first(gwsite):
    keys, air, cfg, gw = gwsite
    gw.start()
    second = subprocess.run([sys.executable, "-m", "gateway.cli", "run", "-c", cfg], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert second.returncode == 1
    assert "pid %d" % gw.proc.pid in second.stderr and "systemctl stop" in second.stderr
    # the first one is untouched: it still acks
    os.write(air.master, readings(keys, 101, 1))
    assert [f.mtype for f in downlink(air.master, keys, 1, 60)] == [fr.ACK]
    gw.kill9()                                   # the kernel drops the lock with the process
    gw.start()
    assert gw.term() == 0


def test_write_atomic_fsyncs_the_directory_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", stat.S_ISDIR(os.fstat(fd).st_mode)))
        return real_fsync(fd)

    def replace(a, b):
        events.append(("rename", None))
        return real_replace(a, b)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    daemon.write_atomic(str(tmp_path / "downlink.cbor"), b"x")
    assert events == [("fsync", False), ("rename", None), ("fsync", True)]


def test_daemon_survives_poisoned_frames_and_restarts_clean(gwsite, broker):
    """The issue's restart loop: CONFIG_ACK version 2^64-1 and 64-bit ALARM/STATUS values
    with good MICs; each is acked, the daemon keeps running and starts again cleanly."""
    keys, air, cfg, gw = gwsite
    gw.start()
    d = os.path.dirname(cfg)
    pub = publisher(broker.port, "op3")
    try:
        assert wait_until(lambda: status(cfg).get("broker", {}).get("connected"), 60)
        pub.publish(BASE + "/cmd/request-status", signed(d, "request-status", {"node": 101}),
                    qos=1).wait_for_publish(60)
        assert wait_until(lambda: status(cfg).get("commands", {}).get("queue_depth") == 1, 60)
    finally:
        pub.disconnect()
        pub.loop_stop()
    k = Hmac(keys[101])
    os.write(air.master, readings(keys, 101, 1))
    assert fr.CONFIG in [f.mtype for f in downlink(air.master, keys, 1, 60)]
    big = (1 << 64) - 1
    poison = [(fr.CONFIG_ACK, cbor2.dumps({1: big, 2: 2})),
              (fr.ALARM, cbor2.dumps([{1: 1, 2: 3, 4: LEVEL, 5: 1, 7: big}])),
              (fr.STATUS, cbor2.dumps({1: big, 6: 1 << 63}))]
    for i, (mtype, payload) in enumerate(poison):
        os.write(air.master, wrap(fr.encode(k, mtype, 101, 2 + i, 0, payload, 0, 0)))
        os.write(air.master, readings(keys, 102, 1 + i))
        acks = {(f.node, msg.decode_ack(f.payload)[0])
                for f in downlink(air.master, keys, 2, 60) if f.mtype == fr.ACK}
        assert acks == {(101, 2 + i), (102, 1 + i)}, (i, acks)
    # and any other single frame: random payloads of every uplink type, each followed
    # by a genuine frame of the other node; all acked, the daemon stays up
    rng = random.Random(1212)
    for i in range(30):
        mtype = fr.UPLINK_TYPES[i % len(fr.UPLINK_TYPES)]
        payload = bytes(rng.randrange(256) for _ in range(rng.randint(1, 150)))
        os.write(air.master, wrap(fr.encode(k, mtype, 101, 10 + i, 0, payload, 0, 0))
                 + readings(keys, 102, 10 + i))
        acks = {(f.node, msg.decode_ack(f.payload)[0])
                for f in downlink(air.master, keys, 2, 60, settle=0.05) if f.mtype == fr.ACK}
        assert acks == {(101, 10 + i), (102, 10 + i)}, (i, mtype, payload.hex(), acks)
    assert gw.proc.poll() is None
    assert gw.term() == 0
    gw.start()
    os.write(air.master, readings(keys, 101, 90))
    assert fr.ACK in [f.mtype for f in downlink(air.master, keys, 1, 60)]
    assert gw.term() == 0
    assert "Traceback" not in gw.text()


def test_a_radio_port_that_does_not_open_says_what_to_check(tmp_path):
    # issue 14: "cannot open radio port ... [Errno 2]" gave no next step
    import serial

    from gateway.daemon import _port_hint
    missing = str(tmp_path / "ttyNOPE")
    try:
        serial.Serial(missing)
    except serial.SerialException as e:
        hint = _port_hint(missing, e)
    assert "connected" in hint and "radio.port" in hint
    blocked = tmp_path / "ttyLOCKED"
    blocked.write_text("")
    blocked.chmod(0)
    err = PermissionError(13, "Permission denied")
    assert "dialout" in _port_hint(str(blocked), err)
