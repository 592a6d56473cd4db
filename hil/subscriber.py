"""The rig's MQTT subscriber: decodes everything the gateway publishes with cbor2 and
the uplink contract (protocol/SPEC.md), independently of gateway/ code, and keeps
what the checks need.

Each reading is kept under its dedup key (node, seq, idx); a second copy with the same
key is counted as a duplicate (allowed by I1), a second copy with different content
is a *conflict* (never allowed). Of the duplicates, those that came in a batch with
another batch seq than the first copy are counted apart (`duplicates_across_batches`):
a re-sent batch keeps its seq and bytes (SPEC §9.2), so only the gateway putting one
reading in two batches makes those. Every message is also checked against
protocol/uplink.cddl (gateway/uplink_schema.py); every schema violation is kept as a
text in `errors`."""
import threading
import time

import cbor2
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway import uplink_schema  # the CDDL check only: the decoding below is our own

_KINDS = {"data": "batch", "alarm": "alarm", "status": "status", "cmd-result": "cmd_result"}


def _uint(x):
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _int(x):
    return isinstance(x, int) and not isinstance(x, bool)


class Reading:
    __slots__ = ("node", "seq", "idx", "chan", "t", "value", "fault", "flags", "batch")

    def __init__(self, node, seq, idx, chan, t, value, fault, flags, batch):
        self.node, self.seq, self.idx, self.chan, self.t = node, seq, idx, chan, t
        self.value, self.fault, self.flags, self.batch = value, fault, flags, batch

    def content(self):
        return (self.chan, self.t, self.value, self.fault)


class Subscriber:
    def __init__(self, port, prefix, site, gw, client_id="hil-subscriber"):
        self.base = "%s/%s/%s" % (prefix, site, gw)
        self.site, self.gw = site, gw
        self.operator = None        # (name, key) for signed commands, set by the rig
        self.lock = threading.Lock()
        self.readings = {}          # (node, seq, idx) -> Reading
        self.duplicates = 0
        self.duplicates_across_batches = 0
        self.conflicts = []
        self.alarms = {}            # (node, seq, i) -> dict (+ "wall" receipt time)
        self.alarm_duplicates = 0
        self.batches = {}           # batch seq -> number of copies
        self.counters = {}          # latest cumulative counters
        self.statuses = []
        self.node_status = []
        self.cmd_results = []       # (wall, {3: verb, 4: id, 5: result, 6: node, ...})
        self.errors = []
        self._unchecked = []        # (topic, kind, payload) for check_schema()
        self._checked = set()
        self.log = []               # (wall, kind, key) in arrival order
        self.connected = threading.Event()      # CONNACK seen
        self.subscribed = threading.Event()     # SUBACK seen: deliveries will reach us
        p = Properties(PacketTypes.CONNECT)
        p.SessionExpiryInterval = 86400
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv5)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = self._on_disconnect
        c.reconnect_delay_set(min_delay=0.05, max_delay=0.2)
        self.client = c
        self.port = port
        self._props = p

    def start(self, timeout=60):
        self.client.connect("127.0.0.1", self.port, keepalive=5, clean_start=False,
                            properties=self._props)
        self.client.loop_start()
        if not self.wait_subscribed(timeout):
            raise RuntimeError("subscriber: no CONNACK/SUBACK from the broker on port %d"
                               % self.port)
        return self

    def wait_subscribed(self, timeout):
        """True once the broker has acknowledged the subscription (SUBACK) on the
        current connection: from then on nothing the gateway publishes can pass us by."""
        return self.subscribed.wait(timeout)

    def stop(self):
        self.client.loop_stop()
        try:
            self.client.disconnect()
        except Exception:
            pass

    def _on_connect(self, client, userdata, flags, rc, props=None):
        client.subscribe(self.base + "/#", qos=1)
        self.connected.set()

    def check_schema(self):
        """Check every message received so far against protocol/uplink.cddl (each
        distinct payload once); violations go to `errors`. Run at the end: a check takes
        ~0.5 ms per reading, too slow for paho's network thread during a backlog drain."""
        with self.lock:
            todo, self._unchecked = self._unchecked, []
        for topic, kind, payload in todo:
            if payload in self._checked:
                continue
            self._checked.add(payload)
            try:
                uplink_schema.check(kind, payload)
            except uplink_schema.SchemaError as e:
                with self.lock:
                    self._err("%s: breaks protocol/uplink.cddl: %s" % (topic, e))

    def _on_subscribe(self, client, userdata, mid, reason_codes, props=None):
        if all(not rc.is_failure for rc in reason_codes):
            self.subscribed.set()
        else:
            self._err("subscribe refused: %r" % (reason_codes,))

    def _on_disconnect(self, *a):
        self.connected.clear()
        self.subscribed.clear()

    def _err(self, text):
        if len(self.errors) < 50:
            self.errors.append(text)

    def _on_message(self, client, userdata, m):
        wall = time.time()
        sub = m.topic[len(self.base) + 1:] if m.topic.startswith(self.base + "/") else None
        if (sub or "").startswith("cmd/"):
            return                  # the operator's own commands (JSON), not uplink
        try:
            doc = cbor2.loads(m.payload)
        except Exception as e:
            self._err("%s: not CBOR: %s" % (m.topic, e))
            return
        kind = _KINDS.get(sub)
        if kind is not None:        # checked by check_schema(), off the network thread
            with self.lock:
                self._unchecked.append((m.topic, kind, bytes(m.payload)))
        with self.lock:
            if sub == "data":
                self._batch(doc, wall)
            elif sub == "alarm":
                self._alarm(doc, wall)
            elif sub == "status":
                self.statuses.append((wall, doc))
            elif sub == "cmd-result":
                if isinstance(doc, dict):
                    self.cmd_results.append((wall, doc))
                else:
                    self._err("cmd-result: not a CBOR map")
            else:
                self._err("unexpected topic %s" % m.topic)

    def _head(self, doc, what):
        if not isinstance(doc, dict):
            self._err("%s: not a CBOR map" % what)
            return False
        if what == "batch" and doc.get(0) == 2:     # SPEC §9.2: site/gateway from the topic
            if 1 in doc or 2 in doc:
                self._err("batch: schema 2 with key 1 or 2")
                return False
            return True
        if doc.get(0) != 1 or doc.get(1) != self.site or doc.get(2) != self.gw:
            self._err("%s: schema/site/gateway %r/%r/%r" % (what, doc.get(0), doc.get(1),
                                                            doc.get(2)))
            return False
        return True

    def _batch(self, doc, wall):
        if not self._head(doc, "batch"):
            return
        bseq = doc.get(3)
        if not _uint(bseq) or bseq < 1 or not _uint(doc.get(4)):
            self._err("batch: key 3 (seq) %r / key 4 (created) %r" % (bseq, doc.get(4)))
            return
        self.batches[bseq] = self.batches.get(bseq, 0) + 1
        c = doc.get(7)
        if c is None and doc[0] == 2:
            pass                        # schema 2: counters unchanged since the last ones
        elif not isinstance(c, dict):
            self._err("batch %d: key 7 (counters) missing" % bseq)
        else:
            for k, v in c.items():
                if not _uint(v):
                    self._err("batch %d: counter %r = %r" % (bseq, k, v))
                elif v >= self.counters.get(k, 0):
                    self.counters[k] = v
        blocks = doc.get(5)
        if not isinstance(blocks, list):
            self._err("batch %d: key 5 not an array" % bseq)
            return
        n = 0
        if doc[0] == 2:
            n = self._groups(bseq, doc[4], blocks)
            blocks = ()
        for nb in blocks:
            if not (isinstance(nb, list) and len(nb) == 2 and _uint(nb[0])
                    and isinstance(nb[1], list)):
                self._err("batch %d: bad node_block %r" % (bseq, nb))
                continue
            node = nb[0]
            for cb in nb[1]:
                if not (isinstance(cb, list) and len(cb) == 2 and _uint(cb[0])
                        and isinstance(cb[1], list) and cb[1]):
                    self._err("batch %d: bad chan_block %r" % (bseq, cb))
                    continue
                for run in cb[1]:
                    n += self._run(bseq, node, cb[0], run)
        for st in doc.get(6) or ():
            if isinstance(st, dict):
                self.node_status.append(st)
        self.log.append((wall, "data", bseq, n))

    def _groups(self, bseq, base, blocks):
        """Schema 2 (SPEC §9.2): each chan_run of a group becomes the run it stands for
        (absolute times and samples), checked and stored as schema 1's runs are."""
        n = 0
        for nb in blocks:
            if not (isinstance(nb, list) and len(nb) == 2 and _uint(nb[0])
                    and isinstance(nb[1], list) and nb[1]):
                self._err("batch %d: bad node block %r" % (bseq, nb))
                continue
            for g in nb[1]:
                if not (isinstance(g, list) and len(g) >= 7 and _uint(g[0]) and _uint(g[1])
                        and _int(g[2]) and all(_uint(x) for x in g[3:6])
                        and all(isinstance(r, list) and len(r) >= 2 for r in g[6:])):
                    self._err("batch %d: bad group %r" % (bseq, g))
                    continue
                seq, idx, t, step, flags, stride = g[:6]
                for j, cr in enumerate(g[6:]):
                    values, v = [], None
                    for d in cr[1:]:
                        if isinstance(d, list) or not _int(d):
                            values.append(d)
                        else:
                            v = d if v is None else v + d
                            values.append(v)
                    run = [seq, idx + j * stride, base + t, step, values]
                    if flags:
                        run.append(flags)
                    n += self._run(bseq, nb[0], cr[0], run)
        return n

    def _run(self, bseq, node, chan, run):
        if not (isinstance(run, list) and len(run) in (5, 6) and all(_uint(x) for x in run[:4])
                and isinstance(run[4], list) and run[4]):
            self._err("batch %d: bad run %r" % (bseq, run))
            return 0
        seq, idx, t0, step, values = run[:5]
        flags = run[5] if len(run) == 6 else 0
        if not _uint(flags):
            self._err("batch %d: bad run flags %r" % (bseq, flags))
            return 0
        for k, v in enumerate(values):
            fault = None
            if isinstance(v, list):
                if len(v) != 1 or not _uint(v[0]):
                    self._err("batch %d: bad fault value %r" % (bseq, v))
                    continue
                fault, v = v[0], None
            elif not _int(v):
                self._err("batch %d: bad value %r" % (bseq, v))
                continue
            r = Reading(node, seq, idx + k, chan, t0 + k * step, v, fault, flags, bseq)
            key = (node, seq, idx + k)
            old = self.readings.get(key)
            if old is None:
                self.readings[key] = r
            elif old.content() == r.content():
                self.duplicates += 1
                if old.batch != r.batch:
                    self.duplicates_across_batches += 1
            else:
                self.conflicts.append((key, old.content(), r.content()))
        return len(values)

    def _alarm(self, doc, wall):
        if not self._head(doc, "alarm"):
            return
        need = (3, 4, 5, 6, 7, 8, 9, 10, 13, 14)
        for k in need:
            if not _uint(doc.get(k)):
                self._err("alarm: key %d = %r" % (k, doc.get(k)))
                return
        for k in (11, 12):
            if not _int(doc.get(k)):
                self._err("alarm: key %d = %r" % (k, doc.get(k)))
                return
        key = (doc[3], doc[4], doc.get(15, 0))
        if key in self.alarms:
            self.alarm_duplicates += 1
            return
        a = dict(doc)
        a["wall"] = wall
        self.alarms[key] = a
        self.log.append((wall, "alarm", key, 1))

    def command(self, verb, payload, dangerous=True):
        """Publish an operator command on <base>/cmd/<verb>, QoS 1, signed with
        `self.operator` ((name, key), set by the rig) as `stationgw sign-command` does.
        The rig's operator confirms dangerous commands: scenarios test the nodes."""
        from gateway import opcli
        name, key = self.operator
        env = opcli.sign_json(key, name, self.site, self.gw, verb, payload,
                              dangerous=dangerous)
        info = self.client.publish(self.base + "/cmd/" + verb, env, qos=1)
        info.wait_for_publish(60)

    def results_for(self, cid):
        with self.lock:
            return [d for _, d in self.cmd_results if d.get(4) == cid]

    def snapshot(self, exclude=()):
        """(readings, alarms) received so far, not counting nodes in `exclude`."""
        with self.lock:
            if exclude:
                return sum(1 for k in self.readings if k[0] not in exclude), len(self.alarms)
            return len(self.readings), len(self.alarms)
