"""The daemon's shutdown, status and start-up errors, with the daemon as a subprocess
(and, for the status text, the pure formatter)."""
import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import time

import cbor2
import pytest

from gateway import daemon
from hil.demo import ROOT, Air, GatewayProcess, ModbusSim, make_keys, wait_until, write_site
from protocol import frame as fr
from protocol import messages as msg
from protocol import readings as rd
from protocol.framing import Deframer, wrap
from protocol.mic import Hmac

LEVEL = 3 << 3
NODES = ((101, "n101", ("water_level.0",)), (102, "n102", ("water_level.0",)))


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


@pytest.mark.broker
def test_sigterm_commits_and_acks_what_was_read_then_exits_clean(tmp_path, broker, subscriber):
    sub = subscriber()
    keys = make_keys([n[0] for n in NODES])
    air = Air([])
    cfg = write_site(str(tmp_path / "site"), broker.port, air.path, keys, nodes=NODES)
    gw = GatewayProcess(cfg, str(tmp_path)).start()
    try:
        k = Hmac(keys[102])
        first = wrap(fr.encode(k, fr.READINGS, 102, 1, 0, rd.encode(
            [rd.Block(LEVEL, 10, 5, [1, 2, 3])]), 0, 0))
        os.write(air.master, first)                 # the reader is up once this is acked
        assert len(read_downlink(air.master, 1)) == 1
        burst = b"".join(wrap(fr.encode(k, fr.READINGS, 102, seq, 0, rd.encode(
            [rd.Block(LEVEL, 10, 5, [seq, seq + 1, seq + 2])]), 0, 0)) for seq in range(2, 41))
        os.write(air.master, burst)
        gw.proc.send_signal(signal.SIGTERM)       # while the burst is being read
        assert gw.proc.wait(20) == 0, gw.text()
        acks = []
        data = b""
        while True:
            try:
                os.set_blocking(air.master, False)
                chunk = os.read(air.master, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        for item in Deframer().feed(data):
            f = fr.decode(item, lambda n: k, fr.DOWNLINK_TYPES)
            acks.append(msg.decode_ack(f.payload)[0])
        acks.append(1)
        # every acked frame reaches the subscriber, now or after the next start
        gw.start()
        want = {(102, s, i) for s in acks for i in range(3)}
        assert sub.wait_for(lambda s: want <= s.keys(), 60), sorted(want - sub.keys())[:5]
        text = gw.text()
        assert gw.term() == 0
        log = open(os.path.join(str(tmp_path), "gw-1.log")).read()
        for event in ("event=stop_requested signal=SIGTERM", "event=stopped"):
            assert event in log
        # the retained status says offline after a clean stop
        statuses = [cbor2.loads(p) for t, p, _m, _c in sub.snapshot() if t.endswith("/status")]
        assert statuses[-1][3] == 0
        assert "Traceback" not in text and "Traceback" not in log
    finally:
        gw.close()
        air.close()


@pytest.mark.broker
def test_status_command_shows_nodes_lanes_broker_and_counters(tmp_path, broker):
    keys = make_keys([n[0] for n in NODES])
    air = Air([])
    cfg = write_site(str(tmp_path / "site"), broker.port, air.path, keys, nodes=NODES)
    gw = GatewayProcess(cfg, str(tmp_path)).start()
    try:
        k = Hmac(keys[101])
        stat = msg.encode_map({msg.S_BATTERY_MV: 3712, msg.S_LOG_DEPTH: 4})
        os.write(air.master, wrap(fr.encode(k, fr.STATUS, 101, 3, 0, stat, 0, 0)))
        os.write(air.master, wrap(fr.encode(k, fr.READINGS, 101, 7, 0,
                                            rd.encode([rd.Block(LEVEL, 1, 0, [5])]), 0, 4)))
        assert len(read_downlink(air.master, 2)) == 2
        path = os.path.join(os.path.dirname(cfg), "status.json")

        def snap():
            try:
                return json.load(open(path))
            except (OSError, ValueError):
                return {}
        # frames count at receipt, gaps once the commit is done: wait for the snapshot to
        # hold both (a snapshot between the two showed gaps 0 on a loaded CI run)
        assert wait_until(lambda: (snap().get("nodes", {}).get("101", {}).get("frames"),
                                   snap().get("nodes", {}).get("101", {}).get("seq_gaps")) == (2, 3), 60)
        out = subprocess.run([sys.executable, "-m", "gateway.cli", "status", "-c", cfg], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        line = [x for x in out.stdout.splitlines() if x.startswith("101 ")][0]
        assert "3712mV" in line and " 3 " in line      # battery; gaps 4,5,6 (frame 7 says 3 is its oldest)
        assert "CONNECTED" in out.stdout and "live" in out.stdout and "frames_rejected" in out.stdout
        j = subprocess.run([sys.executable, "-m", "gateway.cli", "status", "--json", "-c", cfg],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
        n101 = json.loads(j.stdout)["nodes"]["101"]
        assert (n101["battery_mv"], n101["log_depth"], n101["seq_gaps"]) == (3712, 4, 3)
        assert gw.term() == 0
        # no key material anywhere an operator or a log shipper looks
        everything = gw.text() + open(path).read() + out.stdout + j.stdout
        for key in keys.values():
            assert key.hex() not in everything and key.hex().upper() not in everything
    finally:
        gw.close()
        air.close()


def test_status_without_a_running_daemon_says_what_to_do(tmp_path, capsys):
    keys = make_keys([101])
    cfg_path = write_site(str(tmp_path), 1883, "/dev/null", keys, nodes=NODES[:1])
    from gateway import config
    cfg = config.load(cfg_path)
    assert daemon.status(cfg) == 1
    err = capsys.readouterr().err
    assert "no status snapshot" in err and "is the gateway running" in err
    assert daemon.status(cfg_path) == 1          # a path works as well
    assert daemon.status(str(tmp_path / "missing.toml")) == 2


def test_stale_snapshot_is_flagged():
    snap = {"t": 1000.0, "site": "s", "gateway": "g", "pid": 1, "nodes": {
        "101": {"name": "crack", "last_seen": 990, "rssi_dbm": -97, "battery_mv": 3700,
                "seq_gaps": 2, "log_depth": 5, "frames": 10}},
        "lanes": {"live": {"depth": 3, "oldest_age_s": 4}}, "counters": {"frames_rejected": 1},
        "broker": {"connected": True, "broker": "h:1", "protocol": "v5", "last_puback": 999}}
    fresh = daemon.format_status(snap, 1001.0)
    assert "STALE" not in fresh
    assert "-97" in fresh and "3700mV" in fresh and "frames_rejected=1" in fresh
    assert "STALE" in daemon.format_status(snap, 1000.0 + daemon.STALE_AFTER_S + 1)


def test_bad_radio_port_is_a_clear_error_and_exit_1(tmp_path, broker):
    keys = make_keys([n[0] for n in NODES])
    cfg = write_site(str(tmp_path / "site"), broker.port, str(tmp_path / "no-such-tty"), keys,
                     nodes=NODES)
    p = subprocess.run([sys.executable, "-m", "gateway.cli", "run", "-c", cfg], cwd=ROOT,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert "event=radio_failed" in p.stdout and "no-such-tty" in p.stdout


def test_run_with_a_bad_config_exits_2_naming_file_and_key(tmp_path, capsys):
    keys = make_keys([101])
    cfg_path = write_site(str(tmp_path), 1883, "/dev/null", keys, nodes=NODES[:1])
    with open(cfg_path, "a") as f:
        f.write("\n[extra]\nx = 1\n")
    assert daemon.run(cfg_path) == 2
    err = capsys.readouterr().err
    assert cfg_path in err and "extra" in err


def test_atomic_status_write_leaves_no_partial_file(tmp_path):
    p = str(tmp_path / "status.json")
    daemon.write_atomic(p, b'{"a": 1}')
    daemon.write_atomic(p, b'{"a": 2}', 0o644)
    assert json.load(open(p)) == {"a": 2}
    assert os.listdir(tmp_path) == ["status.json"]
    assert os.stat(p).st_mode & 0o777 == 0o644


def test_log_lines_are_one_event_per_line_key_value():
    buf = io.StringIO()
    daemon.setup_logging(buf)
    import logging
    logging.getLogger("stationgw.test").info("event=x node=%d", 5)
    line = buf.getvalue().strip()
    assert line.count("\n") == 0
    assert line.startswith("ts=") and "level=INFO logger=stationgw.test event=x node=5" in line
    logging.getLogger().handlers[:] = []


def alarm_frame(k, seq, event, level, prev):
    payload = msg.encode_alarms([{msg.A_EVENT: event, msg.A_LEVEL: level, msg.A_PREV: prev,
                                  msg.A_CHAN: LEVEL, msg.A_RULE: 1, msg.A_KIND: 1,
                                  msg.A_VALUE: 3600, msg.A_THRESHOLD: 3500, msg.A_AGE: 0}])
    return wrap(fr.encode(k, fr.ALARM, 101, seq, 0, payload, 0, 0))


@pytest.mark.broker
def test_radio_node_alarm_drives_the_site_siren(tmp_path, broker):
    relay = ModbusSim(device_id=2, values=[0] * 8).start()
    keys = make_keys([n[0] for n in NODES])
    air = Air([])
    extra = """
[[modbus.buses]]
name = "relay-net"
type = "tcp"
host = "127.0.0.1"
port = %d

[[modbus.devices]]
name = "siren-relay"
bus = "relay-net"
node = 9002
device_id = 2
poll_s = 1
[[modbus.devices.points]]
chan = "supply.0"
table = "holding"
address = 1
type = "u16"

[modbus.alarm_output]
device = "siren-relay"
address = 0
min_level = "orange"
""" % relay.port
    cfg = write_site(str(tmp_path / "site"), broker.port, air.path, keys, nodes=NODES,
                     extra=extra)
    gw = GatewayProcess(cfg, str(tmp_path)).start()
    try:
        k = Hmac(keys[101])
        coil = lambda: relay.get(1, 0)[0]     # noqa: E731

        def coil_writes():
            return re.findall(r"event=siren_coil .*\bon=(\w+)", gw.text())
        # events, not sleeps: the bridge's first write (off, once the gauge was polled),
        # then every write it makes is in its log, so "yellow did not sound the siren"
        # is read from the sequence of writes, however slow the machine
        assert wait_until(lambda: coil_writes() == ["false"], 60), gw.text()[-2000:]
        assert not coil()
        os.write(air.master, alarm_frame(k, 1, 1, 2, 0))        # yellow: below min_level
        assert len(read_downlink(air.master, 1)) == 1
        os.write(air.master, alarm_frame(k, 2, 2, 3, 2))        # orange: siren on
        assert wait_until(coil, 60), gw.text()[-2000:]
        os.write(air.master, alarm_frame(k, 3, 3, 0, 3))        # clear: siren off
        assert wait_until(lambda: not coil(), 60)
        assert wait_until(lambda: len(coil_writes()) == 3, 60), coil_writes()
        assert coil_writes() == ["false", "true", "false"]
        # and the siren went on for the orange frame, not the yellow one before it
        text = gw.text()
        on_at = [m.start() for m in re.finditer(r"event=siren_coil .*\bon=true", text)][0]
        assert text.index("event=radio_alarm node=101 seq=2 ") < on_at
        assert "event=radio_alarm node=101" in gw.text()
        assert gw.term() == 0
    finally:
        gw.close()
        air.close()
        relay.stop()


def test_a_clock_before_2025_or_gone_backwards_is_reported(tmp_path):
    keys = make_keys([101])
    from gateway import config
    cfg = config.load(write_site(str(tmp_path), 1883, "/dev/null", keys, nodes=NODES[:1]))
    d = daemon.Daemon(cfg, clock=lambda: 1_000_000.0)
    assert "before 2025" in d.clock_check({})
    d = daemon.Daemon(cfg, clock=lambda: 1_800_000_000.0)
    assert d.clock_check({101: 1_800_000_030}) is None
    assert "went backwards" in d.clock_check({101: 1_800_000_500})
    text = daemon.format_status({"t": 1.0, "clock_suspect": "clock is 500 s behind"}, 2.0)
    assert "CLOCK SUSPECT: clock is 500 s behind" in text
