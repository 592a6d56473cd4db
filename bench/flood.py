"""`python -m bench flood`: radio ACK and alarm latency at the real daemon while a flood of
MQTT commands arrives (issue 12, defect 4), against the same measurement without the
flood (the baseline, same run).

The daemon runs as a subprocess (`stationgw run`) on a local Mosquitto with a pty as
its radio line. Two nodes send READINGS frames one after another (each waits for its
ACK, as a node does) and an ALARM every tenth frame; meanwhile a publisher sends
--commands commands (half signed by an operator with a high rate limit, half unsigned
junk). Figures: ACK latency (frame written -> ACK read on the line) and alarm latency
(frame written -> alarm received by a subscriber; the commit is inside it), p50/p99/max,
with and without the flood. Prints a table, then one line of JSON.
"""
import argparse
import json
import os
import select
import tempfile
import threading
import time

import cbor2
import paho.mqtt.client as mqtt

from hil.demo import Air, GatewayProcess, make_keys, signed, wait_until, write_site
from hil.procs import Broker
from protocol import frame as fr
from protocol import messages as msg
from protocol import readings as rd
from protocol.framing import Deframer, wrap
from protocol.mic import Hmac

LEVEL = 3 << 3
NODES = ((101, "n101", ("water_level.0",)), (102, "n102", ("water_level.0",)))
BASE = "stations/demo/gw1"


def pct(v, q):
    v = sorted(v)
    return round(v[min(len(v) - 1, int(q * len(v)))], 2) if v else None


class AlarmWatch:
    def __init__(self, port):
        self.got = {}
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-alarms",
                        protocol=mqtt.MQTTv5)
        ready = threading.Event()
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(BASE + "/alarm", qos=1)
        c.on_subscribe = lambda *a: ready.set()
        c.on_message = self._msg
        c.connect("127.0.0.1", port)
        c.loop_start()
        assert ready.wait(10)
        self.c = c

    def _msg(self, cl, u, m):
        a = cbor2.loads(m.payload)
        self.got[(a[3], a[4])] = time.monotonic()

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def frames_run(air, keys, n, watch, seq0):
    ack_ms, alarm_sent = [], {}
    buf = b""
    for i in range(n):
        seq = seq0 + i
        node = 101 + i % 2
        if i % 10 == 5:
            payload = msg.encode_alarms([{msg.A_EVENT: 1, msg.A_LEVEL: 3, msg.A_PREV: 0,
                                          msg.A_CHAN: LEVEL, msg.A_RULE: 1, msg.A_KIND: 1,
                                          msg.A_VALUE: 5000, msg.A_THRESHOLD: 4000}])
            data = wrap(fr.encode(Hmac(keys[node]), fr.ALARM, node, seq, 0, payload, 0, 0))
        else:
            data = wrap(fr.encode(Hmac(keys[node]), fr.READINGS, node, seq, 0,
                                  rd.encode([rd.Block(LEVEL, 1, 0, [seq])]), 0, 0))
        t0 = time.monotonic()
        if i % 10 == 5:
            alarm_sent[(node, seq)] = t0
        os.write(air.master, data)
        got = False
        deadline = t0 + 30
        while not got and time.monotonic() < deadline:
            r, _, _ = select.select([air.master], [], [], 0.5)
            if r:
                buf += os.read(air.master, 65536)
                items = Deframer().feed(buf)
                for it in items:
                    if isinstance(it, bytes):
                        f = fr.decode(it, lambda nn: Hmac(keys[nn]), fr.DOWNLINK_TYPES)
                        if f.mtype == fr.ACK and f.node == node and \
                                msg.decode_ack(f.payload)[0] == seq:
                            got = True
                if got:
                    buf = b""
        ack_ms.append((time.monotonic() - t0) * 1000 if got else float("inf"))
    wait_until(lambda: all(k in watch.got for k in alarm_sent), 30)
    alarm_ms = [(watch.got[k] - t) * 1000 if k in watch.got else float("inf")
                for k, t in alarm_sent.items()]
    return ack_ms, alarm_ms


def main(argv=()):
    ap = argparse.ArgumentParser(prog="python -m bench flood", description=__doc__.split("\n")[0])
    ap.add_argument("--commands", type=int, default=3000)
    ap.add_argument("--frames", type=int, default=200)
    args = ap.parse_args(argv)
    d = tempfile.mkdtemp(prefix="bench-flood-")
    broker = Broker(os.path.join(d, "mq")).start()
    keys = make_keys([101, 102])
    air = Air([])
    cfg = write_site(os.path.join(d, "site"), broker.port, air.path, keys, nodes=NODES)
    gw = GatewayProcess(cfg, d).start()
    watch = AlarmWatch(broker.port)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-flooder",
                      protocol=mqtt.MQTTv5)
    pub.max_inflight_messages_set(500)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    try:
        wait_until(lambda: os.path.exists(os.path.join(os.path.dirname(cfg), "status.json")), 20)
        base_ack, base_alarm = frames_run(air, keys, args.frames, watch, 1)
        envs = [signed(os.path.dirname(cfg), "set-intervals",
                       {"node": 101 + i % 2, "sample_s": 30 + i % 200})
                for i in range(args.commands // 2)]
        done = threading.Event()
        t_flood = [0.0, 0.0]

        def flood():
            t_flood[0] = time.monotonic()
            for e in envs:
                pub.publish(BASE + "/cmd/set-intervals", e, qos=1)
                pub.publish(BASE + "/cmd/emergency", b'{"node":"all","duration_s":604800}',
                            qos=1)
            t_flood[1] = time.monotonic()
            done.set()
        th = threading.Thread(target=flood)
        th.start()
        flood_ack, flood_alarm = frames_run(air, keys, args.frames, watch, 10_000)
        th.join(120)
        spath = os.path.join(os.path.dirname(cfg), "status.json")

        def snap_now():
            try:
                return json.load(open(spath))
            except (OSError, ValueError):
                return {}

        def counted():
            c = snap_now().get("commands") or {}
            return c.get("accepted", 0) + sum(c.get("refused", {}).values())
        wait_until(lambda: counted() >= args.commands, 60)
        snap = snap_now()
    finally:
        pub.disconnect()
        pub.loop_stop()
        watch.close()
        gw.term()
        gw.close()
        air.close()
        broker.stop()
    rows = [("ACK latency ms", base_ack, flood_ack), ("alarm latency ms", base_alarm,
                                                     flood_alarm)]
    print("%-18s %28s %28s %8s" % ("", "no flood p50/p99/max", "flood p50/p99/max", "p99 x"))
    out = {"commands": args.commands, "frames": args.frames,
           "flood_publish_s": round(t_flood[1] - t_flood[0], 3),
           "daemon_commands": snap.get("commands")}
    for name, a, b in rows:
        ra = (pct(a, 0.5), pct(a, 0.99), round(max(a), 2))
        rb = (pct(b, 0.5), pct(b, 0.99), round(max(b), 2))
        ratio = round(rb[1] / ra[1], 2) if ra[1] else None
        print("%-18s %28s %28s %8s" % (name, "%s / %s / %s" % ra, "%s / %s / %s" % rb, ratio))
        out[name.split()[0].lower() + "_ms"] = {"baseline": ra, "flood": rb, "p99_ratio": ratio}
    print("flood of %d commands published in %.2f s; daemon: %s" % (
        args.commands, out["flood_publish_s"], snap.get("commands")))
    print(json.dumps(out))
    return 0
