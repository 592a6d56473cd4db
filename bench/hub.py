"""`python -m bench hub`: the monitoring centre's ingest rate and its warning latency.

On a Mosquitto and a throw-away PostgreSQL the bench starts (loopback, temp dirs):
  1. ingest: a backlog of N readings (CBOR batches of --batch readings, as the gateway
     sends them) is queued at the broker for the hub's session while the hub is away;
     then the hub's workers (hub/ingest.py: shared subscription, one transaction per
     group of messages, PUBACK after the commit) drain it into SQLite (WAL,
     synchronous=FULL) and into PostgreSQL (COPY + INSERT .. ON CONFLICT DO NOTHING)
     with 1, 2 and 4 workers. Baseline, same run, same broker and databases: a naive
     consumer with one plain autocommitted INSERT per reading (and auto-ack, so it
     would also lose messages on a crash).
  2. flood wave: the same backlog is queued again, the hub starts draining it, and
     river stations' water-level alarms rise through yellow, orange and red while it
     drains; each level change at orange or above becomes a CAP alert written by the
     spool sink. Latency per alert: MQTT arrival at the hub -> CAP out, and the
     sample time (the alarm's key 13) -> CAP out.
Prints a table, then one line of JSON. `--quick` runs small sizes.
"""
import argparse
import json
import os
import shutil
import tempfile
import threading
import time

import cbor2
import paho.mqtt.client as mqtt

from gateway.batcher import encode_batch
from hil.pgcluster import PgCluster
from hil.procs import Broker
from hub import uplink
from hub.ingest import ALARMS, DATA, Context, Worker
from hub.outbox import Dispatcher, SpoolSink
from hub.stations import load as load_stations
from hub.store import open_store

SITE, GW = "bench", "gw1"
NODES = 50
HERE = os.path.dirname(os.path.abspath(__file__))


def batches(n_readings, per_batch, seq0=1):
    """CBOR batches: NODES nodes, 3 channels, 10-reading runs (one radio frame each)."""
    out, nseq, bseq, made = [], {}, seq0, 0
    t0 = int(time.time()) - 7 * 86400
    while made < n_readings:
        rows, i = [], 0
        while i < per_batch and made < n_readings:
            node = 1000 + (made // 30) % NODES
            seq = nseq[node] = nseq.get(node, 0) + 1
            for chan in (0x08, 0x10, 0x18):
                for k in range(10):
                    rows.append((i, node, seq, (chan >> 3) * 10 + k - 10, chan, t0 + seq * 600 + k * 60,
                                 1000 + k, None, 0))
                    i += 1
                    made += 1
        out.append(encode_batch(bseq, t0, rows, (), {k: 0 for k in range(1, 6)}))
        bseq += 1
    return out


def publisher(port, cid="bench-gw"):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(100)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def publish_all(c, topic, payloads):
    infos = [c.publish(topic, p, qos=1) for p in payloads]
    for i in infos:
        i.wait_for_publish(60)


def count(url):
    s = open_store(url)
    try:
        return s.count("readings")
    finally:
        s.close()


def wait_count(url, n, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if count(url) >= n:
            return True
        time.sleep(0.01)
    return False


def hub_drain(port, url, workers, payloads, n, tag):
    """Sessions made, hub away, backlog queued, hub back: readings/s to commit."""
    s = open_store(url)
    s.init_schema()
    s.close()
    ctx = Context()
    group = "bench-%s" % tag

    def make():
        return [Worker("b-%s-%d" % (tag, i), open_store(url), ctx, port=port, group=group,
                       kinds=DATA) for i in range(workers)]
    ws = make()
    for w in ws:
        w.start()
    for w in ws:
        w.subscribed.wait(10)
    for w in ws:
        w.stop()
    pub = publisher(port)
    publish_all(pub, "stations/%s/%s/data" % (SITE, GW), payloads)
    pub.disconnect()
    pub.loop_stop()
    ws = make()
    t0 = time.perf_counter()
    for w in ws:
        w.start()
    ok = wait_count(url, n, 600)
    dt = time.perf_counter() - t0
    for w in ws:
        w.stop()
    if not ok:
        raise RuntimeError("%s: only %d of %d readings arrived" % (tag, count(url), n))
    return n / dt


def naive_drain(port, url, payloads, n, tag):
    """One autocommitted INSERT per reading, auto-ack (the baseline)."""
    s = open_store(url)
    s.init_schema()
    conn = s.conn
    ph = "?" if s.dialect == "sqlite" else "%s"
    sql = "INSERT INTO readings VALUES (%s)" % ",".join([ph] * 11)
    if s.dialect == "sqlite":
        conn.isolation_level = None     # autocommit: each INSERT its own transaction

    def on_message(c, u, m):
        doc = cbor2.loads(m.payload)
        for row in uplink.batch_rows(SITE, GW, doc):
            conn.execute(sql, row)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="naive-" + tag,
                    protocol=mqtt.MQTTv5)
    c.on_message = on_message
    done = threading.Event()
    c.on_subscribe = lambda *a: done.set()
    c.connect("127.0.0.1", port)
    c.subscribe("stations/+/+/data", qos=1)
    c.loop_start()
    done.wait(10)
    pub = publisher(port, "bench-gw-naive")
    t0 = time.perf_counter()
    publish_all(pub, "stations/%s/%s/data" % (SITE, GW), payloads)
    ok = wait_count(url, n, 600)
    dt = time.perf_counter() - t0
    pub.disconnect()
    pub.loop_stop()
    c.disconnect()
    c.loop_stop()
    s.close()
    if not ok:
        raise RuntimeError("baseline %s: readings missing" % tag)
    return n / dt


def flood_wave(port, url, payloads, n, d, tag, alarms=24):
    """Backlog + rising river levels: per CAP alert, arrival->CAP and sample->CAP."""
    s = open_store(url)
    s.init_schema()
    s.close()
    stations = load_stations(os.path.join(os.path.dirname(HERE), "hub", "examples",
                                          "stations.csv"))
    # the bench's river stations: the example file's, renamed to the bench site
    rivers = [st for st in stations.values() if st.type == "river"]
    st_map = {}
    for i, st in enumerate(rivers):
        st.site, st.node = SITE, 500 + i
        st_map[(SITE, st.node)] = st
    ctx = Context(st_map, "bench@hub", "bench", ("spool",))
    sent = {}
    disp = Dispatcher(open_store(url), {"spool": SpoolSink(os.path.join(d, "cap-" + tag))},
                      ctx.outbox_added, on_sent=lambda i, s_, ms: sent.setdefault(i, ms),
                      priority=ctx.priority)
    group = "flood-%s" % tag

    def make():
        ws = [Worker("f-%s-%d" % (tag, i), open_store(url), ctx, port=port, group=group,
                     kinds=DATA) for i in range(2)]
        ws.append(Worker("f-%s-a" % tag, open_store(url), ctx, port=port, group=group + "-a",
                         kinds=ALARMS))
        return ws
    ws = make()
    for w in ws:
        w.start()
    for w in ws:
        w.subscribed.wait(10)
    for w in ws:
        w.stop()
    pub = publisher(port, "flood-gw")
    publish_all(pub, "stations/%s/%s/data" % (SITE, GW), payloads)
    ws = make()
    for w in ws:
        w.start()
    disp.start()
    t_start = time.perf_counter()
    levels = (2, 3, 4, 3, 2)          # yellow, orange (Alert), red (Update), orange, yellow (Cancel)
    seq = {}
    published = []
    for k in range(alarms):
        st = rivers[k % len(rivers)]
        lv = levels[(k // len(rivers)) % len(levels)]
        prev = levels[(k // len(rivers) - 1) % len(levels)] if k >= len(rivers) else 0
        seq[st.node] = seq.get(st.node, 0) + 1
        t = int(time.time())
        doc = {0: 1, 1: SITE, 2: GW, 3: st.node, 4: seq[st.node], 15: 0, 5: 2, 6: lv, 7: prev,
               8: 0x18, 9: 1, 10: 2, 11: 2500 + 300 * lv, 12: 2500, 13: t, 14: t * 1000}
        pub.publish("stations/%s/%s/alarm" % (SITE, GW), cbor2.dumps(doc), qos=1).wait_for_publish(10)
        published.append(time.time())
        time.sleep(0.05)
    drained_at = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if drained_at is None and count(url) >= n:
            drained_at = time.perf_counter() - t_start
        s = open_store(url)
        left = s.rows("SELECT COUNT(*) FROM outbox WHERE sent_ms IS NULL")[0][0]
        total = s.count("outbox")
        s.close()
        if drained_at is not None and left == 0 and total:
            break
        time.sleep(0.02)
    alarms_done = max(sent.values()) / 1000.0 - (time.time() - (time.perf_counter() - t_start)) \
        if sent else None
    s = open_store(url)
    rows = s.rows("SELECT sent_ms - hub_rx_ms, sent_ms - sample_t * 1000 FROM outbox"
                  " WHERE sent_ms IS NOT NULL")
    s.close()
    for w in ws:
        w.stop()
    disp.stop()
    pub.disconnect()
    pub.loop_stop()
    arr = sorted(r[0] for r in rows)
    smp = sorted(r[1] for r in rows)
    return {"cap_alerts": len(rows), "backlog_readings": n,
            "backlog_drained_s": round(drained_at, 2) if drained_at else None,
            "last_cap_s": round(alarms_done, 2) if alarms_done is not None else None,
            "arrival_to_cap_ms_p50": pct(arr, 50), "arrival_to_cap_ms_p99": pct(arr, 99),
            "arrival_to_cap_ms_max": arr[-1] if arr else None,
            "sample_to_cap_ms_p50": pct(smp, 50), "sample_to_cap_ms_p99": pct(smp, 99),
            "sample_to_cap_ms_max": smp[-1] if smp else None}


def pct(xs, p):
    if not xs:
        return None
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench hub", description=__doc__.split("\n")[0])
    ap.add_argument("--readings", type=int, default=60000)
    ap.add_argument("--batch", type=int, default=300, help="readings per batch")
    ap.add_argument("--baseline-readings", type=int, default=3000)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    if a.quick:
        a.readings, a.baseline_readings = 6000, 600
    d = tempfile.mkdtemp(prefix="bench-hub-")
    broker = Broker(os.path.join(d, "mq")).start()
    pg = PgCluster().start()
    res = {"readings": a.readings, "batch": a.batch, "ingest": {}, "flood": {}}
    try:
        payloads = batches(a.readings, a.batch)
        base_payloads = batches(a.baseline_readings, a.batch)
        n_base = sum(len(uplink.batch_rows(SITE, GW, cbor2.loads(p))) for p in base_payloads)
        n = sum(len(uplink.batch_rows(SITE, GW, cbor2.loads(p))) for p in payloads)
        print("hub ingest: %d readings in %d batches of %d; baseline %d readings" % (
            n, len(payloads), a.batch, n_base))
        print("%-10s %-26s %12s %10s" % ("database", "consumer", "readings/s", "x baseline"))
        for db in ("sqlite", "postgres"):
            def url(tag, db=db):
                if db == "sqlite":
                    return "sqlite:///%s" % os.path.join(d, tag + ".db")
                return pg.create_db(tag.replace("-", "_"))
            base = naive_drain(broker.port, url("base-" + db), base_payloads, n_base, db)
            row = res["ingest"][db] = {"baseline_insert_per_reading": round(base)}
            print("%-10s %-26s %12.0f %10s" % (db, "1 INSERT per reading", base, "1.0"))
            for w in (1, 2, 4):
                r = hub_drain(broker.port, url("hub-%s-%d" % (db, w)), w, payloads, n,
                              "%s%d" % (db, w))
                row["hub_%d_workers" % w] = round(r)
                row["hub_%d_workers_x" % w] = round(r / base, 1)
                print("%-10s %-26s %12.0f %10.1f" % (db, "hub, %d worker%s" % (
                    w, "s" if w > 1 else ""), r, r / base))
        print("\nflood wave: CAP alerts while the hub drains a %d-reading backlog" % n)
        for db in ("sqlite", "postgres"):
            u = ("sqlite:///%s" % os.path.join(d, "flood.db")) if db == "sqlite" else \
                pg.create_db("flood")
            f = res["flood"][db] = flood_wave(broker.port, u, batches(a.readings, a.batch,
                                                                      seq0=100000), n, d, db)
            print("%-10s %d CAP alerts; backlog drained in %s s; MQTT arrival->CAP p50 %s ms,"
                  " p99 %s ms, max %s ms; sample->CAP p99 %s ms" % (
                      db, f["cap_alerts"], f["backlog_drained_s"], f["arrival_to_cap_ms_p50"],
                      f["arrival_to_cap_ms_p99"], f["arrival_to_cap_ms_max"],
                      f["sample_to_cap_ms_p99"]))
    finally:
        broker.stop()
        pg.stop()
        shutil.rmtree(d, ignore_errors=True)
    print(json.dumps(res))
    return 0
