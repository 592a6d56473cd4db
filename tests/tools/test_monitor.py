"""monitor against a real Mosquitto: status (retained), a batch and alarms published as
the gateway publishes them, printed one line each, coloured by level on request."""
import os
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from harness import free_port
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway import batcher
from gateway.records import Alarm
from protocol import channels
from tools import cli, errors, monitor

ROOT = Path(__file__).resolve().parents[2]
WATER = channels.chan_id(channels.kind_by_name("water_level"))
DISP = channels.chan_id(channels.kind_by_name("displacement"))

pytestmark = pytest.mark.broker


def publisher(port):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-gw", protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def publish(c, topic, payload, retain=False):
    p = Properties(PacketTypes.PUBLISH)
    p.ContentType = "application/cbor"
    c.publish(topic, payload, qos=1, retain=retain, properties=p).wait_for_publish(60)


def start_monitor(port, *extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "monitor", "--broker",
                             "mqtt://127.0.0.1:%d" % port, "--site", "lushi", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)
    line = proc.stderr.readline()            # printed once subscribed
    if line.startswith("note: no gateway has published"):     # a broker no gateway used yet
        line = proc.stderr.readline()
    assert "monitoring stations/lushi/+/data" in line, line
    return proc


def test_status_batch_and_alarms_one_line_each(broker):
    pub = publisher(broker.port)
    try:
        publish(pub, "stations/lushi/gw1/status",
                batcher.encode_status("lushi", "gw1", 1, 1767225600, "0.1.0"), retain=True)
        proc = start_monitor(broker.port, "--count", "4", "--duration", "120")
        # the monitor announced itself after its SUBACK: nothing published from now on
        # can pass it by (no sleep needed)
        rows = [(1, 17, 42, 0, WATER, 1767225000, 2950, None, 0),
                (2, 17, 42, 1, WATER, 1767225300, 3050, None, 0)]
        publish(pub, "stations/lushi/gw1/data",
                batcher.encode_batch(7, 1767225700, rows, counters={2: 0}))
        publish(pub, "stations/lushi/gw1/alarm", batcher.encode_alarm("lushi", "gw1", Alarm(
            17, 43, 0, 1, 4, 0, DISP, 5, 4, 1800, 3600, 1767225600, 1767225601000)))
        publish(pub, "stations/other/gw1/alarm", b"not for this site")
        publish(pub, "stations/lushi/gw1/alarm", b"\xa1\x00\x02")
        out, err = proc.communicate(timeout=150)
    finally:
        pub.loop_stop()
        pub.disconnect()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 4, out
    assert "STATUS lushi/gw1 ONLINE" in lines[0]
    assert "DATA lushi/gw1 #7 2 readings: node 17 water_level.0 3.050 m" in lines[1]
    assert "ALARM lushi/gw1 node 17 TRIP RED" in lines[2] and "\x1b[" not in lines[2]
    assert "? stations/lushi/gw1/alarm: not an uplink message" in lines[3]


def test_colour_by_level_and_json(broker):
    pub = publisher(broker.port)
    try:
        proc = start_monitor(broker.port, "--count", "2", "--duration", "120", "--color", "always")
        for level in (4, 2):
            publish(pub, "stations/lushi/gw2/alarm", batcher.encode_alarm("lushi", "gw2", Alarm(
                17, 50 + level, 0, 1, level, 0, DISP, 5, 1, 1800, 1500, 1767225600, 0)))
        out, _ = proc.communicate(timeout=150)
        proc = start_monitor(broker.port, "--count", "1", "--duration", "120", "--json")
        publish(pub, "stations/lushi/gw2/alarm", batcher.encode_alarm("lushi", "gw2", Alarm(
            18, 1, 0, 3, 0, 2, DISP, 5, 1, 10, 1500, 1767225600, 0)))
        jout, _ = proc.communicate(timeout=150)
    finally:
        pub.loop_stop()
        pub.disconnect()
    red, yellow = out.splitlines()
    assert red.startswith("\x1b[1;97;41m") and red.endswith("\x1b[0m")
    assert yellow.startswith("\x1b[1;33m")
    import json
    d = json.loads(jout)
    assert d["topic"] == "stations/lushi/gw2/alarm" and d["event"] == "clear" and d["node"] == 18


def test_duration_stops_with_no_traffic(broker):
    # without --duration it would wait for traffic for ever: exiting by itself (well
    # inside the bound, which is no speed claim) is the behaviour under test
    proc = start_monitor(broker.port, "--duration", "1")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out == ""


def test_broker_unreachable(capsys):
    port = free_port()                       # nothing listens there
    assert cli.main(["monitor", "--broker", "mqtt://127.0.0.1:%d" % port, "--site", "s",
                     "--count", "1"]) == errors.BROKER
    err = capsys.readouterr().err
    assert "cannot reach the broker 127.0.0.1:%d" % port in err and "--broker" in err


def test_bad_broker_url(capsys):
    assert cli.main(["monitor", "--broker", "http://x", "--site", "s"]) == errors.BAD_INPUT
    assert "give mqtt://HOST:PORT" in capsys.readouterr().err


def test_unknown_site_or_gateway_is_an_error_naming_the_known_ones(broker, capsys):
    # `--site lushii` (a typo) once watched nothing, silently, and exited 0
    pub = publisher(broker.port)
    try:
        publish(pub, "stations/lushi/gw1/status",
                batcher.encode_status("lushi", "gw1", 1, 1767225600, "0.1.0"), retain=True)
        url = "mqtt://127.0.0.1:%d" % broker.port
        assert cli.main(["monitor", "--broker", url, "--site", "lushii", "--duration", "1"]) == \
            errors.BAD_INPUT
        err = capsys.readouterr().err
        assert "--site lushii" in err and "sites there: lushi" in err
        assert "127.0.0.1:%d" % broker.port in err
        assert cli.main(["monitor", "--broker", url, "--site", "lushi", "--gateway", "gw9",
                         "--duration", "1"]) == errors.BAD_INPUT
        assert "its gateways: gw1" in capsys.readouterr().err
        assert cli.main(["monitor", "--broker", url, "--site", "lushi", "--duration", "1"]) == 0
    finally:
        pub.loop_stop()
        pub.disconnect()


def test_every_retained_status_is_seen_without_a_timed_wait(broker):
    # the site check once waited 1 s for retained statuses: a stalled thread on a busy
    # box saw none and let a typo through. Now a second SUBACK is the barrier; 150
    # gateways is well past Mosquitto's 20-message QoS 1 inflight window
    pub = publisher(broker.port)
    want = {("site%d" % (i % 7), "gw%d" % i) for i in range(150)}
    try:
        for site, gw in sorted(want):
            publish(pub, "stations/%s/%s/status" % (site, gw),
                    batcher.encode_status(site, gw, 1, 1767225600, "0.1.0"), retain=True)
        for _ in range(3):
            mon = monitor.Monitor("127.0.0.1", broker.port)
            assert monitor.gateways_seen(mon, "stations") == want
    finally:
        pub.loop_stop()
        pub.disconnect()
