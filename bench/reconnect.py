"""`python -m bench reconnect`: how soon after a broker outage the first alarm is
delivered (issue 12, defect 9), with the uplink's TCP probe (default settings) against
the baseline of the back-off timer alone (probe_s = 0, the same back-off), same run.

Each cycle: a real Mosquitto is stopped for --outage s while a backlog and then an
alarm are committed to the store; it is started again on the same port; latency =
alarm received by a subscriber - the moment the broker accepted TCP again. Prints a
table, then one line of JSON.
"""
import argparse
import json
import os
import tempfile
import threading
import time

import cbor2
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.records import Alarm, FrameSeen, Reading
from gateway.store import Store
from gateway.uplink import Uplink, UplinkSettings
from hil.procs import Broker

SITE, GW = "bench", "gw1"
LEVEL = 3 << 3


class Watch:
    def __init__(self, port):
        self.alarms = {}
        self.cond = threading.Condition()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-reconnect-sub",
                        protocol=mqtt.MQTTv5)
        c.reconnect_delay_set(0.02, 0.05)
        ready = threading.Event()
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("stations/#", qos=1)
        c.on_subscribe = lambda *a: ready.set()
        c.on_message = self._msg
        p = Properties(PacketTypes.CONNECT)
        p.SessionExpiryInterval = 3600
        c.connect("127.0.0.1", port, keepalive=5, clean_start=False, properties=p)
        c.loop_start()
        assert ready.wait(10)
        self.c = c

    def _msg(self, cl, u, m):
        if m.topic.endswith("/alarm"):
            a = cbor2.loads(m.payload)
            with self.cond:
                self.alarms.setdefault((a[3], a[4]), time.monotonic())
                self.cond.notify_all()

    def wait(self, key, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while key not in self.alarms and time.monotonic() < deadline:
                self.cond.wait(0.05)
            return self.alarms.get(key)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def run(d, probe_s, cycles, outage, tag):
    broker = Broker(os.path.join(d, "mq-" + tag)).start()
    store = Store(os.path.join(d, "s-%s.db" % tag))
    up = Uplink(store, UplinkSettings(SITE, GW, port=broker.port, max_age_s=0.05,
                                      probe_s=probe_s)).start()
    watch = Watch(broker.port)
    lat = []
    try:
        t0 = int(time.time())
        seq = 1
        for _cycle in range(cycles):
            deadline = time.monotonic() + 20
            while not up.connected and time.monotonic() < deadline:
                time.sleep(0.01)
            broker.stop()
            while up.connected:
                time.sleep(0.01)
            for _ in range(5):
                store.commit([FrameSeen(101, seq)] + [Reading(101, seq, i, LEVEL, t0 + i, i)
                                                      for i in range(100)])
                seq += 1
            store.commit([FrameSeen(101, seq), Alarm(101, seq, 0, 1, 3, 0, LEVEL, 1, 1, 5000,
                                                     4000, t0, int(time.time() * 1000))])
            key = (101, seq)
            seq += 1
            time.sleep(outage)
            broker.start()
            t_up = time.monotonic()
            got = watch.wait(key, 120)
            lat.append((got - t_up) * 1000 if got else float("inf"))
    finally:
        watch.close()
        up.stop(1.0)
        store.close()
        broker.stop()
    return lat, dict(up.reconnects_by)


def main(argv=()):
    ap = argparse.ArgumentParser(prog="python -m bench reconnect",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--outage", type=float, default=10.0, help="seconds the broker is down")
    ap.add_argument("--cycles", type=int, default=3)
    args = ap.parse_args(argv)
    d = tempfile.mkdtemp(prefix="bench-reconnect-")
    default_probe = UplinkSettings(SITE, GW).probe_s
    probe, how_p = run(d, default_probe, args.cycles, args.outage, "probe")
    timer, how_t = run(d, 0, args.cycles, args.outage, "timer")
    print("first alarm after the broker accepts again, ms (outage %.0f s, %d cycles)"
          % (args.outage, args.cycles))
    print("%-34s %s" % ("probe every %.2f s (default)" % default_probe,
                        " ".join("%.0f" % x for x in probe)))
    print("%-34s %s" % ("back-off timer only (baseline)", " ".join("%.0f" % x for x in timer)))
    ratio = round(max(probe) / max(timer), 3) if max(timer) else None
    print("worst case: probe %.0f ms vs timer %.0f ms (x%s)" % (max(probe), max(timer), ratio))
    print(json.dumps({"outage_s": args.outage, "probe_ms": [round(x, 1) for x in probe],
                      "timer_ms": [round(x, 1) for x in timer], "worst_ratio": ratio,
                      "reconnects_probe_run": how_p, "reconnects_timer_run": how_t}))
    return 0
