"""Ingest: MQTT 5 shared-subscription workers that write each message's rows in one
database transaction per group of messages and ack the PUBLISHes only after the commit.

MQTT 5 features used:
  - shared subscriptions `$share/<group>/<prefix>/+/+/data|alarm|status`: the broker
    hands each message to one worker of the group;
  - Session Expiry Interval with Clean Start = 0 and a stable client id per worker: a
    worker killed mid-batch gets its unacked PUBLISHes again when it reconnects;
  - Receive Maximum: bounds the unacked PUBLISHes in flight to one worker (its batch);
  - the Content Type property is read only to reject what is not application/cbor.
Manual acks: paho's `manual_ack=True` and `client.ack(mid, qos)` once the rows are in.

Alarms first (DESIGN I3) holds here too: a broker delivers a session's messages in
order, so an alarm queued behind a backlog of batches would wait for all of them. The
hub therefore runs an alarm lane: its own worker (and shared group `<group>-alarms`)
for the alarm and status topics, beside the data workers.

`[mqtt] subscription = "exclusive"` subscribes without $share (one worker): for a
single Mosquitto that may be restarted while the hub is down. Mosquitto 2.0.11
(Debian 12) restores a persistent session's shared subscription after a restart but
routes nothing to it until the client subscribes again, so what is published between a
broker restart and the hub's reconnect would never reach a shared-subscription hub
(docs/hub.md has the reproduction). Plain persistent subscriptions do not have that gap.
"""
import logging
import queue
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from hub import cap, levels, uplink
from protocol import channels

log = logging.getLogger("stationhub")


class Context:
    """What the commit step needs beyond the store: stations, CAP sender, sinks."""

    def __init__(self, stations=None, sender="stationhub@localhost", sender_id="stationhub",
                 sinks=("spool",), broadcast=False, clock=time.time):
        self.stations = stations or {}
        self.sender, self.sender_id = sender, sender_id
        self.sinks = tuple(sinks)
        self.broadcast = broadcast
        self.clock = clock
        self.outbox_added = threading.Event()   # wakes the dispatcher
        # held while the alarm lane commits or CAP messages are being delivered: data
        # workers in this process let them write first (SQLite has one writer at a time)
        self.priority = PriorityGate()


class PriorityGate:
    """Writers that must not wait behind bulk data hold the gate; data workers wait
    (boundedly) until nobody holds it before they start a transaction."""

    def __init__(self):
        self._n = 0
        self._cv = threading.Condition()

    def __enter__(self):
        with self._cv:
            self._n += 1

    def __exit__(self, *exc):
        with self._cv:
            self._n -= 1
            if self._n == 0:
                self._cv.notify_all()

    def wait_clear(self, timeout=1.0):
        with self._cv:
            return self._cv.wait_for(lambda: self._n == 0, timeout)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.messages = self.readings = self.duplicates = self.alarms = 0
        self.rejected = self.caps = 0
        self.last_reject = None

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def as_dict(self):
        with self.lock:
            return {k: getattr(self, k) for k in ("messages", "readings", "duplicates",
                                                  "alarms", "rejected", "caps")}


def commit(store, items, ctx, stats=None):
    """items: [(kind, site, gw, doc, hub_rx_ms)] already decoded and checked. Writes them
    all in one transaction. Returns (new readings, duplicate readings, CAP messages)."""
    caps = 0
    rows = []
    with store.tx():
        for kind, site, gw, doc, rx_ms in items:
            if kind == "data":
                mine = uplink.batch_rows(site, gw, doc)
                rows += mine
                store.insert_batch((site, gw, doc[3], doc[4], len(mine), rx_ms))
                store.upsert_gateway(site, gw, 1, doc[4], None, doc.get(7), rx_ms)
                for st in doc.get(6, ()):
                    store.upsert_node_status(site, st)
            elif kind == "alarm":
                caps += _alarm(store, site, gw, doc, rx_ms, ctx)
            else:
                store.upsert_gateway(site, gw, doc[3], doc[4], doc.get(5)
                                     if isinstance(doc.get(5), str) else None, None, rx_ms)
        new = store.insert_readings(rows)       # one statement (or COPY) for the group
        dup = len(rows) - new
    if caps:
        ctx.outbox_added.set()
    if stats:
        stats.add(messages=len(items), readings=new, duplicates=dup, caps=caps,
                  alarms=sum(1 for i in items if i[0] == "alarm"))
    return new, dup, caps


def _alarm(store, site, gw, doc, rx_ms, ctx):
    row = uplink.alarm_row(site, gw, doc, rx_ms)
    if not store.insert_alarm(row):
        return 0            # a re-sent alarm: already applied
    node, seq, aidx, chan, level = doc[3], doc[4], doc[15], doc[8], doc[6]
    before = store.levels(site, node)
    after, changed = levels.apply(before, chan, level, seq, aidx)
    if not changed:
        return 0
    store.set_level(site, node, chan, level, seq, aidx, doc[13])
    old_l, new_l = levels.station_level(before), levels.station_level(after)
    if old_l == new_l:
        return 0
    w = store.warning(site, node)
    msgtype = levels.decide(w[0] if w else None, new_l)
    if msgtype is None:
        return 0
    now = ctx.clock()
    ident = cap.identifier(ctx.sender_id, site, node, seq, aidx)
    refs = w[2] if w else ""
    station = ctx.stations.get((site, node))
    body = cap.build(ident, ctx.sender, now, msgtype, new_l, station, {
        "site": site, "node": node, "t": doc[13], "value": _fmt(chan, doc[11]),
        "threshold": _fmt(chan, doc[12]), "chan_label": channels.label(chan)},
        references=refs)
    me = cap.reference(ctx.sender, ident, cap.cap_time(now))
    if msgtype == "Cancel":
        store.clear_warning(site, node)
    else:
        store.set_warning(site, node, new_l, ident, (refs + " " + me).strip(), doc[13])
    now_ms = int(now * 1000)
    out = [(ident, s, msgtype, new_l, body.decode(), site, node, doc[13], rx_ms, now_ms)
           for s in ctx.sinks]
    if ctx.broadcast and new_l >= levels.RED and msgtype != "Cancel":
        zone = station.zone if station else ""
        out.append((ident, "broadcast", msgtype, new_l, zone, site, node, doc[13], rx_ms, now_ms))
    store.add_outbox(out)
    return 1


def _fmt(chan, v):
    try:
        name, unit, exp, _acc = channels.info(chan)
    except Exception:
        return str(v)
    return "%g %s" % (round(v * 10.0 ** exp, 6), unit)


def topics(prefix, group, shared=True, kinds=uplink.KINDS):
    if not shared:
        return ["%s/+/+/%s" % (prefix, k) for k in kinds]
    return ["$share/%s/%s/+/+/%s" % (group, prefix, k) for k in kinds]


DATA = ("data",)
ALARMS = ("alarm", "status")


class Worker:
    """One MQTT 5 client in the shared subscription and its writer thread."""

    def __init__(self, name, store, ctx, host="127.0.0.1", port=1883, prefix="stations",
                 group="stationhub", session_expiry_s=7 * 86400, max_batch=200,
                 max_wait_s=0.02, max_bytes=64 * 1024, username=None, password=None, tls=False, stats=None,
                 shared=True, kinds=uplink.KINDS):
        self.name, self.store, self.ctx = name, store, ctx
        self.shared, self.kinds = shared, tuple(kinds)
        self.prefix, self.group = prefix, group
        self.max_batch, self.max_wait_s, self.max_bytes = max_batch, max_wait_s, max_bytes
        self.stats = stats or Stats()
        self.q = queue.Queue()
        self.stop_ev = threading.Event()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name,
                        protocol=mqtt.MQTTv5, manual_ack=True)
        if username:
            c.username_pw_set(username, password)
        if tls:
            c.tls_set()
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *a: self.connected.clear()
        c.on_message = lambda c_, u, m: self.q.put(m)
        c.on_subscribe = self._on_subscribe
        # back quickly after a broker restart: until a worker has subscribed again, a
        # restarted Mosquitto (2.0.11) routes nothing to its shared subscription
        c.reconnect_delay_set(min_delay=0.05, max_delay=1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry_s
        props.ReceiveMaximum = max_batch
        self.client, self.host, self.port, self._props = c, host, port, props
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _on_connect(self, client, userdata, flags, rc, props=None):
        if rc.is_failure:
            log.warning("event=mqtt_refused worker=%s reason=%s", self.name, rc)
            return
        client.subscribe([(t, SubscribeOptions(qos=1)) for t in topics(self.prefix, self.group,
                                                                        self.shared, self.kinds)])
        self.connected.set()
        log.info("event=connected worker=%s session_present=%s", self.name,
                 flags.session_present)

    def _on_subscribe(self, client, userdata, mid, reason_codes, props=None):
        bad = [str(r) for r in reason_codes if r.is_failure]
        if bad:
            log.error("event=subscribe_refused worker=%s reasons=%s", self.name, ",".join(bad))
        else:
            self.subscribed.set()
            log.info("event=subscribed worker=%s topics=%s", self.name,
                     ",".join(topics(self.prefix, self.group, self.shared, self.kinds)))

    def start(self):
        self.client.connect_async(self.host, self.port, keepalive=15, clean_start=False,
                                  properties=self._props)
        self.client.loop_start()
        self.thread.start()
        return self

    def _take(self):
        try:
            first = self.q.get(timeout=0.2)
        except queue.Empty:
            return []
        msgs = [first]
        size = len(first.payload)
        deadline = time.monotonic() + self.max_wait_s
        # a group is bounded in bytes too, so one transaction stays short (~2 s of a
        # busy county's uplink) and an alarm never waits long for the database
        while len(msgs) < self.max_batch and size < self.max_bytes:
            left = deadline - time.monotonic()
            try:
                msgs.append(self.q.get(timeout=left) if left > 0 else self.q.get_nowait())
            except queue.Empty:
                break
            size += len(msgs[-1].payload)
        return msgs

    def _run(self):
        while not self.stop_ev.is_set():
            msgs = self._take()
            if not msgs:
                continue
            items = []
            for m in msgs:
                item = self._decode(m)
                if item is not None:
                    items.append(item)
            if not self._commit(items):
                return
            for m in msgs:          # in arrival order, as MQTT requires
                self.client.ack(m.mid, m.qos)

    def _commit(self, items):
        """True once committed; False if the worker was stopped before it could."""
        if "alarm" in self.kinds:
            with self.ctx.priority:
                return self._commit_retrying(items)
        self.ctx.priority.wait_clear()
        return self._commit_retrying(items)

    def _commit_retrying(self, items):
        while not self.stop_ev.is_set():
            try:
                commit(self.store, items, self.ctx, self.stats)
                return True
            except Exception as e:   # database down: keep the messages unacked, retry
                log.error("event=commit_failed worker=%s error=%r", self.name, e)
                self.stop_ev.wait(1.0)
        return False

    def _decode(self, m):
        rx_ms = int(time.time() * 1000)
        try:
            topic = m.topic
        except UnicodeDecodeError:
            topic = None
        where = uplink.parse_topic(topic, self.prefix) if topic else None
        try:
            if where is None:
                raise uplink.Rejected("topic %r is not <prefix>/site/gateway/data|alarm|status"
                                      % (topic,))
            ct = getattr(m.properties, "ContentType", None) if m.properties else None
            if ct not in (None, "application/cbor"):
                raise uplink.Rejected("content type %r, want application/cbor" % ct)
            site, gw, kind = where
            doc = uplink.decode(kind, site, gw, m.payload)
        except uplink.Rejected as e:
            # acked and dropped: a bad message would otherwise come back forever
            self.stats.add(rejected=1)
            self.stats.last_reject = "%s: %s" % (topic, e)
            log.warning("event=rejected topic=%s reason=%s", topic, e)
            return None
        return (kind, site, gw, doc, rx_ms)

    def stop(self):
        self.stop_ev.set()
        self.thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()
