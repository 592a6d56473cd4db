"""`python -m bench gateway`: the gateway's store-and-forward pipeline on a local Mosquitto.

Measured in one run, on a Mosquitto the bench starts on a free loopback port:
  1. baseline: one paho QoS 1 JSON publish per reading (what a naive gateway does;
     no store, no fsync), readings/s to PUBACK;
  2. throughput: readings/s from ingest to PUBACK of the CBOR batch that carried them,
     with the CPU seconds this process spent per million readings. Ingest is, by
     default, real radio frames (protocol/ codec, per-node HMAC keys) written to a pty
     and read by the gateway's radio ingest (gateway/radio.py: deframing, MIC and replay
     checks, group commit with fsync, ACKs written back); `--source store` starts at
     Store.commit with 300-reading groups instead;
  3. drain: a week-long backlog (default 1.5 million readings from 50 nodes) drained
     to PUBACK while live frames keep arriving and an alarm is committed every
     --alarm-every-ms (as ALARM frames on the radio line with `--source radio`);
     alarm latency = subscriber receive time - gateway receive time (rx_ms), measured
     by a subscriber in a separate process.
Prints a table, then one line of JSON. `--quick` runs small sizes in a few seconds.
"""
import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tty
from pathlib import Path

import paho.mqtt.client as mqtt

from gateway.records import Alarm, FrameSeen, Reading
from gateway.store import Store
from gateway.uplink import Uplink, UplinkSettings

SITE, GW = "bench", "gw1"
NODES = 50
CHANS = (1 << 3, 2 << 3, 3 << 3)          # rain.0, displacement.0, water_level.0
PER_CHAN = 10                             # readings per channel per frame
FRAMES_PER_GROUP = 10                     # 10 frames x 30 readings = one 300-row commit


class Broker:
    """A throw-away Mosquitto on 127.0.0.1 (no persistence: the gateway is measured)."""

    def __init__(self, workdir):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = Path(workdir)
        conf = ["listener %d 127.0.0.1" % self.port, "allow_anonymous true",
                "log_dest file %s/broker.log" % self.dir]
        if os.geteuid() == 0:
            conf.insert(0, "user root")
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(conf) + "\n")
        self.proc = None

    def start(self):
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(exe):
            raise SystemExit("bench gateway needs Mosquitto: sudo apt-get install -y mosquitto")
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60       # a hang guard: a loaded box starts slowly
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.01)
        raise SystemExit("mosquitto did not start: see %s/broker.log" % self.dir)

    def cpu_s(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(5)


def groups(n_readings, t_end, seq_start=1, step=60):
    """Yield commit groups (lists of records) for n_readings from NODES nodes."""
    per_frame = len(CHANS) * PER_CHAN
    n_frames = max(1, n_readings // per_frame)
    group = []
    for f in range(n_frames):
        node = 1 + f % NODES
        seq = seq_start + f // NODES
        t0 = t_end - (n_frames // NODES - f // NODES) * PER_CHAN * step
        group.append(FrameSeen(node, seq))
        idx = 0
        for chan in CHANS:
            for k in range(PER_CHAN):
                group.append(Reading(node, seq, idx, chan, t0 + k * step, (f + k) % 97))
                idx += 1
        if len(group) >= FRAMES_PER_GROUP * (per_frame + 1):
            yield group
            group = []
    if group:
        yield group


class RadioFeed:
    """The gateway's radio ingest on a pty pair: frames made with protocol/ go in on the
    master side, ACKs come back and are drained; commits go to `store`."""

    def __init__(self, store, seq_start=1):
        import serial

        from gateway.radio import RadioIngest, RadioPort
        from protocol import frame as fr
        from protocol import messages as msg
        from protocol import readings as rd
        from protocol.framing import wrap
        from protocol.mic import Hmac
        self.fr, self.msg, self.rd, self.wrap, self.Hmac = fr, msg, rd, wrap, Hmac
        self.keys = {n: os.urandom(32) for n in range(1, NODES + 1)}
        self.signers = {n: Hmac(k) for n, k in self.keys.items()}
        self.seq = {n: seq_start - 1 for n in self.keys}
        self.m, self.s = os.openpty()
        tty.setraw(self.m)
        tty.setraw(self.s)
        self.ser = serial.Serial(os.ttyname(self.s), 115200, timeout=0)
        self.ingest = RadioIngest(self.keys)
        self.port = RadioPort(self.ser, self.ingest, store, time.time)
        self.port.load_state(self.keys)         # replay state from the store, as the daemon
        self.acks = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._drain = threading.Thread(target=self._drain_acks, daemon=True)
        self._drain.start()
        if not self._ready.wait(60):
            raise RuntimeError("the radio port did not start within 60 s")

    def _run(self):
        asyncio.set_event_loop(self._loop)

        async def main():
            self._task = asyncio.ensure_future(self.port.run())
            self._ready.set()
            await self._task
        self._loop.run_until_complete(main())

    def _drain_acks(self):
        while True:
            try:
                data = os.read(self.m, 65536)
            except OSError:
                return
            if not data:
                return
            self.acks += data.count(0)

    def readings_frames(self, n_readings, t_end_age=0, step=60):
        """Wire bytes of frames carrying n_readings (30 per frame, 3 channels x 10)."""
        out = []
        per_frame = len(CHANS) * PER_CHAN
        for f in range(max(1, n_readings // per_frame)):
            node = 1 + f % NODES
            self.seq[node] += 1
            age = t_end_age + (PER_CHAN - 1) * step
            blocks = [self.rd.Block(c, age, step, [(f + k) % 97 for k in range(PER_CHAN)])
                      for c in CHANS]
            out.append(self.wrap(self.fr.encode(self.signers[node], self.fr.READINGS, node,
                                                self.seq[node], 1000, self.rd.encode(blocks))))
        return out

    def alarm_frame(self, node):
        self.seq[node] += 1
        payload = self.msg.encode_alarms([{
            self.msg.A_EVENT: 1, self.msg.A_LEVEL: 4, self.msg.A_PREV: 0,
            self.msg.A_CHAN: CHANS[2], self.msg.A_RULE: 1, self.msg.A_KIND: 1,
            self.msg.A_VALUE: 5000, self.msg.A_THRESHOLD: 4000, self.msg.A_AGE: 0}])
        return self.wrap(self.fr.encode(self.signers[node], self.fr.ALARM, node, self.seq[node],
                                        1000, payload))

    def send(self, frames):
        data = b"".join(frames)
        view = memoryview(data)
        while view:
            n = os.write(self.m, view[:65536])
            view = view[n:]

    def close(self):
        self._loop.call_soon_threadsafe(self.port.stop)
        self._thread.join(10)
        self.ser.close()
        os.close(self.m)
        os.close(self.s)


def wait_until(pred, timeout, period=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(period)
    return False


def baseline(port, n):
    """One JSON message per reading, QoS 1, paho defaults."""
    acked = [0]
    done = threading.Event()

    def on_publish(c, u, mid, rc, props):
        acked[0] += 1
        if acked[0] >= n:
            done.set()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-baseline",
                    protocol=mqtt.MQTTv5)
    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    t = int(time.time())
    t0 = time.perf_counter()
    for i in range(n):
        c.publish("baseline/%s/%s/reading" % (SITE, GW), json.dumps(
            {"node": 1 + i % NODES, "seq": i // 30, "idx": i % 30, "chan": CHANS[i % 3],
             "t": t, "value": i % 97}), qos=1)
    finished = done.wait(120)
    dt = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    if not finished:
        # n / 120 s would understate the baseline and inflate every ratio against it
        raise RuntimeError("baseline: only %d of %d publishes acked within 120 s; no ratio "
                           "can be computed (broker overloaded or gone)" % (acked[0], n))
    return n / dt


def make_uplink(store, port, **kw):
    return Uplink(store, UplinkSettings(SITE, GW, port=port, backoff_min_s=0.1,
                                        backoff_max_s=1.0, **kw))


def throughput(port, workdir, n, max_age_s, source):
    store = Store(os.path.join(workdir, "thr.db"), live_horizon_s=300)
    up = make_uplink(store, port, max_age_s=max_age_s).start()
    wait_until(lambda: up.connected, 10)
    feed = None
    if source == "radio":
        feed = RadioFeed(store)
        frames = feed.readings_frames(n)
        total = len(frames) * len(CHANS) * PER_CHAN
    else:
        gs = list(groups(n, int(time.time())))
        total = sum(1 for g in gs for r in g if type(r) is Reading)
    cpu0, t0 = time.process_time(), time.perf_counter()
    if feed is not None:
        feed.send(frames)
    else:
        for g in gs:
            store.commit(g)
    ingest_s = time.perf_counter() - t0
    ok = wait_until(lambda: up.readings_acked >= total, 300)
    dt = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    extra = {}
    if feed is not None:
        extra = {"commits": feed.port.commits, "frames_acked": feed.port.frames_acked}
        feed.close()
    up.stop(2)
    store.close()
    if not ok:
        raise SystemExit("throughput: only %d of %d readings acked" % (up.readings_acked, total))
    return dict({"readings": total, "s": dt, "ingest_s": ingest_s, "cpu_s": cpu,
                 "batches": up.batches_acked}, **extra)


SUB = r"""
import sys, time, paho.mqtt.client as mqtt, cbor2
def on_message(c, u, m):
    now = time.time() * 1000.0
    a = cbor2.loads(m.payload)
    sys.stdout.write("%.3f\n" % (now - a[14])); sys.stdout.flush()
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-alarm-sub",
                protocol=mqtt.MQTTv5)
c.on_message = on_message
c.on_connect = lambda c, u, f, rc, p: c.subscribe(sys.argv[2], qos=1)
c.on_subscribe = lambda *a: print("ready", flush=True)     # SUBACK: nothing can pass it by
c.connect("127.0.0.1", int(sys.argv[1]))
c.loop_forever()
"""


def drain(port, workdir, n, alarm_every_ms, live_per_s, source):
    path = os.path.join(workdir, "drain.db")
    store = Store(path, live_horizon_s=300)
    week_ago = int(time.time()) - 300 - 7 * 86400
    fill_t0 = time.perf_counter()
    total = 0
    for g in groups(n, week_ago + 7 * 86400, step=60):
        total += store.commit(g).readings
    fill_s = time.perf_counter() - fill_t0
    sub = subprocess.Popen([sys.executable, "-c", SUB, str(port),
                            "stations/%s/%s/alarm" % (SITE, GW)],
                           stdout=subprocess.PIPE, text=True)
    assert sub.stdout.readline().strip() == "ready"      # after its SUBACK
    got = []                                 # alarm latencies as the subscriber prints them
    reader = threading.Thread(target=lambda: got.extend(iter(sub.stdout.readline, "")),
                              daemon=True)
    reader.start()
    stop = threading.Event()
    live = [0]
    alarms = [0]

    def live_and_alarms():
        seq = 10_000_000
        next_alarm = time.monotonic()
        period = 1.0 / max(1, live_per_s / (len(CHANS) * PER_CHAN))
        while not (stop.is_set() and alarms[0]):      # at least one alarm, however fast
            now = time.time()
            if time.monotonic() >= next_alarm:
                next_alarm += alarm_every_ms / 1000.0
                seq += 1
                node = 1 + seq % NODES
                if feed is not None:
                    feed.send([feed.alarm_frame(node)])
                else:
                    store.commit([FrameSeen(node, seq),
                                  Alarm(node, seq, 0, 1, 4, 0, CHANS[2], 1, 1, 5000, 4000,
                                        int(now), int(now * 1000))])
                alarms[0] += 1
            seq += 1
            if feed is not None:
                feed.send(feed.readings_frames(len(CHANS) * PER_CHAN))
                live[0] += len(CHANS) * PER_CHAN
            else:
                g = list(groups(len(CHANS) * PER_CHAN, int(now), seq_start=seq))[0]
                live[0] += store.commit(g).readings
            time.sleep(period)

    # Radio frames carry seqs above those of the prefilled backlog (a node's counter
    # only grows), so the gateway's replay window takes them as new.
    feed = RadioFeed(store, seq_start=1_000_000) if source == "radio" else None
    cpu0, t0 = time.process_time(), time.perf_counter()
    up = make_uplink(store, port).start()
    th = threading.Thread(target=live_and_alarms, daemon=True)
    th.start()
    ok = wait_until(lambda: up.acked_by_lane.get("backlog", 0) >= total, 600, 0.01)
    dt = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    stop.set()
    th.join(5)
    wait_until(lambda: up.alarms.stats()["acked"] >= alarms[0], 60)
    # every alarm the broker acked reaches the subscriber: wait for its lines (a bound
    # against a hang, not a time allowance that a loaded machine could overrun)
    wait_until(lambda: len(got) >= alarms[0], 60)
    if feed is not None:
        feed.close()
    up.stop(2)
    store.close()
    sub.terminate()
    sub.wait(30)
    reader.join(30)
    lat = sorted(float(x) for x in got if x.strip())
    if not ok:
        raise SystemExit("drain: only %d of %d backlog readings acked"
                         % (up.acked_by_lane.get("backlog", 0), total))
    return {"readings": total, "fill_s": fill_s, "s": dt, "cpu_s": cpu, "live": live[0],
            "alarms_sent": alarms[0], "alarm_lat_ms": lat,
            "alarm_wait_ms": up.alarms.stats()}


def pct(values, q):
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * len(values)))], 2)


def main(argv=()):
    ap = argparse.ArgumentParser(prog="python -m bench gateway", description=__doc__.split("\n")[0])
    ap.add_argument("--readings", type=int, default=300_000,
                    help="readings for the ingest-to-PUBACK throughput run (default 300000)")
    ap.add_argument("--drain", type=int, default=1_500_000,
                    help="backlog readings to drain (default 1500000: 50 nodes, one week)")
    ap.add_argument("--baseline", type=int, default=20_000,
                    help="readings for the one-publish-per-reading baseline (default 20000)")
    ap.add_argument("--alarm-every-ms", type=float, default=50.0)
    ap.add_argument("--live-per-s", type=float, default=1500.0,
                    help="live readings/s committed while the backlog drains")
    ap.add_argument("--max-age-s", type=float, default=0.5,
                    help="batch.max_age_s for the throughput run: the last partial batch "
                         "waits this long, so it is kept short (default 0.5)")
    ap.add_argument("--source", choices=("radio", "store"), default="radio",
                    help="where ingest starts: frames on a pty through gateway/radio.py "
                         "(default) or Store.commit")
    ap.add_argument("--quick", action="store_true", help="small sizes: a run of seconds")
    a = ap.parse_args(list(argv))
    if a.quick:
        a.readings, a.drain, a.baseline = 30_000, 60_000, 3_000
    with tempfile.TemporaryDirectory(prefix="bench-gw-") as d:
        broker = Broker(d).start()
        try:
            base = baseline(broker.port, a.baseline)
            cpu_b0 = broker.cpu_s()
            thr = throughput(broker.port, d, a.readings, a.max_age_s, a.source)
            cpu_b1 = broker.cpu_s()
            dr = drain(broker.port, d, a.drain, a.alarm_every_ms, a.live_per_s, a.source)
        finally:
            broker.stop()
    rps = thr["readings"] / thr["s"]
    lat = dr["alarm_lat_ms"]
    res = {
        "readings_per_s": round(rps),
        "baseline_readings_per_s": round(base),
        "ratio_vs_baseline": round(rps / base, 1),
        "drain_readings": dr["readings"],
        "drain_s": round(dr["s"], 2),
        "drain_readings_per_s": round(dr["readings"] / dr["s"]),
        "alarm_p50_ms": pct(lat, 0.5),
        "alarm_p99_ms": pct(lat, 0.99),
        "alarm_max_ms": round(lat[-1], 2) if lat else None,
        "alarms": len(lat),
        "alarms_sent": dr["alarms_sent"],
        "cpu_s_per_million": round(thr["cpu_s"] / thr["readings"] * 1e6, 2),
        "drain_cpu_s_per_million": round(dr["cpu_s"] / dr["readings"] * 1e6, 2),
        "broker_cpu_s_per_million": round((cpu_b1 - cpu_b0) / thr["readings"] * 1e6, 2),
        "live_readings_during_drain": dr["live"],
        "throughput_readings": thr["readings"],
        "source": a.source,
        "commits": thr.get("commits"),
    }
    rows = [
        ("ingest (%s) -> PUBACK (CBOR batches, fsync)" % a.source,
         "%d readings/s" % res["readings_per_s"]),
        ("baseline: 1 JSON QoS1 publish/reading", "%d readings/s" % res["baseline_readings_per_s"]),
        ("ratio", "%.1fx" % res["ratio_vs_baseline"]),
        ("CPU (gateway process) per million", "%.2f s" % res["cpu_s_per_million"]),
        ("CPU (broker) per million", "%.2f s" % res["broker_cpu_s_per_million"]),
        ("backlog drained", "%d readings in %.2f s (%d/s)" % (
            dr["readings"], dr["s"], res["drain_readings_per_s"])),
        ("  live readings meanwhile", "%d" % dr["live"]),
        ("alarm latency rx -> subscriber p50/p99/max", "%s / %s / %s ms (%d of %d)" % (
            res["alarm_p50_ms"], res["alarm_p99_ms"], res["alarm_max_ms"], len(lat),
            dr["alarms_sent"])),
        ("alarm commit -> PUBACK p50/p99", "%s / %s ms" % (
            dr["alarm_wait_ms"]["wait_ms_p50"], dr["alarm_wait_ms"]["wait_ms_p99"])),
    ]
    w = max(len(r[0]) for r in rows)
    for k, v in rows:
        print("%-*s  %s" % (w, k, v))
    print(json.dumps(res))
    return 0
