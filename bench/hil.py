"""Alarm latency through the whole HIL chain, wall clock: the scenarios that raise
alarms (`alarm_latency = true` in hil/scenarios/) run end to end, and their worst
trip-to-subscriber latency is compared with a bare MQTT round trip on the same
machine in the same run (one QoS 1 publish to a subscriber of the same broker).

This figure used to be a 2,000 ms pass/fail limit inside the HIL scenarios; on a
busy CI box it measured the machine, not the stack, so it lives here.

    python -m bench hil                  # every alarm_latency scenario
    python -m bench hil storm --hours 6  # one scenario, shorter"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from hil import scenario as scen
from hil.procs import Broker

ROOT = Path(__file__).resolve().parents[1]


def mqtt_round_trip_ms(port, n=200):
    """Latency of one QoS 1 message from a publisher to a subscriber (ms each)."""
    got = {}
    cond = threading.Condition()
    subscribed = threading.Event()

    def on_message(c, u, m):
        with cond:
            got[int(m.payload)] = time.perf_counter()
            cond.notify_all()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-hil-sub")
    sub.on_message = on_message
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_connect = lambda c, *a: c.subscribe("bench/rtt", qos=1)
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-hil-pub")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    try:
        if not subscribed.wait(60):
            raise RuntimeError("baseline: no SUBACK within 60 s")
        out = []
        for i in range(n):
            t0 = time.perf_counter()
            pub.publish("bench/rtt", str(i), qos=1)
            with cond:
                if not cond.wait_for(lambda i=i: i in got, 60):
                    raise RuntimeError("baseline: message %d not delivered within 60 s" % i)
            out.append((got[i] - t0) * 1000)
        return out
    finally:
        for c in (pub, sub):
            c.disconnect()
            c.loop_stop()


def scenario_latency(name, hours):
    args = [sys.executable, "-m", "hil", "run", name, "--quiet"]
    if hours:
        args += ["--hours", str(hours)]
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=1800,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    lines = r.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError("hil run %s printed nothing: %s" % (name, r.stderr[-1000:]))
    f = json.loads(lines[-1])
    return f


def main(argv=()):
    argv = list(argv)
    hours = None
    if "--hours" in argv:
        i = argv.index("--hours")
        hours = float(argv[i + 1])
        del argv[i:i + 2]
    names = argv or [n for n in scen.names() if scen.load(n).expect.get("alarm_latency")]
    with tempfile.TemporaryDirectory(prefix="bench-hil-") as d:
        broker = Broker(d).start()
        try:
            rtt = mqtt_round_trip_ms(broker.port)
        finally:
            broker.stop()
    base = statistics.median(rtt)
    res = {"baseline_mqtt_rtt_ms_median": round(base, 2),
           "baseline_mqtt_rtt_ms_max": round(max(rtt), 2), "scenarios": {}}
    print("alarm latency, trip at the node to decoded at the subscriber (wall clock)")
    print("  baseline: bare QoS 1 publish -> subscriber  median %.2f ms, max %.2f ms"
          % (base, max(rtt)))
    for name in names:
        f = scenario_latency(name, hours)
        worst = f.get("alarm_latency_wall_ms_max")
        res["scenarios"][name] = {
            "alarms": f.get("alarms"), "alarm_latency_wall_ms_max": worst,
            "ratio_vs_mqtt_rtt": round(worst / base, 1) if worst and base else None,
            "passed": f.get("passed")}
        print("  %-18s %3s alarms  worst %8s ms  (%sx the bare round trip)%s" % (
            name, f.get("alarms"), worst, res["scenarios"][name]["ratio_vs_mqtt_rtt"],
            "" if f.get("passed") else "  (run FAILED: %s)" % f.get("failed_checks")))
    print(json.dumps(res))
    return 0
