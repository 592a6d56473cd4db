"""Downlink commands: MQTT `<prefix>/<site>/<gw>/cmd/<verb>` -> CONFIG frames to nodes.

Verbs and payload (a JSON object, or a CBOR map with the same text keys; the MQTT v5
content type "application/json" or "application/cbor" decides, else the first byte:
'{' or white space means JSON):

  set-intervals   {"node": 101 | "all", "sample_s": 60, "intensified_s": 10,
                   "report_s": 300, "status_s": 3600}            (at least one interval)
  set-rules       {"node": 101 | "all", "rules": [{"id": 1, "chan": "displacement.0",
                   "kind": "threshold", "level": "orange", "op": "above",
                   "threshold": 500, "hysteresis": 20, "debounce_n": 2, "hold_s": 600}]}
                   (values in the channel's scaled integers, SPEC 8.1; the list replaces
                   all rules of the node; [] removes them)
  emergency       {"node": 101 | "all", "duration_s": 3600}       (0 ends it)
  request-status  {"node": 101 | "all"}

Optional in every command: "id" (text up to 64 characters, echoed in every result) and
"ttl_s" (how long the gateway keeps trying, default 86400).

Results go to `<prefix>/<site>/<gw>/cmd-result` (QoS 1, CBOR map):
  {0: 1, 1: site, 2: gw, 3: verb, 4: id or null, 5: result, 6: node, 7: detail text,
   8: config version, 9: t (unix s), 10: [nodes]}
with result "invalid" (nothing queued; detail says what is wrong and what to send),
"queued" (key 10 lists the nodes), then per node "applied", "rejected" (detail is the
node's reason) or "expired" (no CONFIG_ACK within ttl_s or max_sends attempts).

A node only listens right after it transmits, so commands wait in a per-node queue and
go out right after the ACK of the node's next uplink frame (SPEC 6.3). Pending commands
for one node are merged into one CONFIG (later values win) as far as it fits a frame.
"""
import json
import logging

import cbor2

from gateway import rule_schema
from protocol import cbor as pcbor
from protocol import channels, trip
from protocol import frame as fr
from protocol import messages as msg

log = logging.getLogger("stationgw.downlink")

VERBS = ("set-intervals", "set-rules", "emergency", "request-status")
INTERVAL_KEYS = (("sample_s", msg.I_SAMPLE_S), ("intensified_s", msg.I_INTENSIFIED_S),
                 ("report_s", msg.I_REPORT_S), ("status_s", msg.I_STATUS_S))
MAX_INTERVAL_S = 86400
MAX_EMERGENCY_S = 7 * 86400
DEFAULT_TTL_S = 86400
MAX_VERSION = 0xFFFFFFFF         # config versions are u32 on the wire (SPEC 3.4)
# Bounds on queued work (issue 12, defect 4): a flood of commands is refused, never
# piled up. Pending items per node (in flight not counted) and in all.
MAX_PENDING_PER_NODE = 16
MAX_PENDING_TOTAL = 512
# The CONFIG map must fit a frame: header 13 + re 4 + map + MIC 8 <= 192.
MAX_CONFIG_MAP = fr.MAX_FRAME - 13 - 4 - 8

R_INVALID = "invalid"
R_QUEUED = "queued"
R_APPLIED = "applied"
R_REJECTED = "rejected"
R_EXPIRED = "expired"


class CommandError(ValueError):
    """A command that cannot be queued; the message says what is wrong and what to send."""


class QueueFull(CommandError):
    """The command is fine but a bound of the downlink queue is reached: nothing queued."""


class Command:
    __slots__ = ("verb", "id", "nodes", "partial", "ttl_s", "all_nodes")

    def __init__(self, verb, cid, nodes, partial, ttl_s, all_nodes=False):
        self.verb, self.id, self.nodes, self.partial, self.ttl_s = verb, cid, nodes, partial, ttl_s
        self.all_nodes = all_nodes


def decode_payload(payload, content_type=None):
    """Bytes -> dict with text keys; CommandError if it is neither a JSON object nor a
    CBOR map."""
    ct = (content_type or "").lower()
    is_json = ct == "application/json" or (ct != "application/cbor" and payload[:1] in
                                           (b"{", b" ", b"\n", b"\t", b"\r"))
    try:
        doc = json.loads(payload.decode("utf-8")) if is_json else cbor2.loads(payload)
    except (ValueError, UnicodeDecodeError, cbor2.CBORDecodeError) as e:
        raise CommandError("payload is not valid %s (%s): send a JSON object or a CBOR map"
                           % ("JSON" if is_json else "CBOR", e)) from None
    if not isinstance(doc, dict) or not all(isinstance(k, str) for k in doc):
        raise CommandError("payload must be a JSON object or a CBOR map with text keys")
    return doc


def _int(doc, key, lo, hi, required=True):
    v = doc.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise CommandError("%r must be an integer %d..%d, got %r" % (key, lo, hi, v))
    return v


def parse_command(verb, doc, node_ids, node_channels=None):
    """Validate one command. node_ids: the radio nodes of the site; node_channels:
    {node: set of channel ids} when the registry lists them. Returns a Command."""
    if verb not in VERBS:
        raise CommandError("unknown command %r: allowed %s" % (verb, ", ".join(VERBS)))
    allowed = {"set-intervals": ("id", "node", "ttl_s") + tuple(k for k, _ in INTERVAL_KEYS),
               "set-rules": ("id", "node", "ttl_s", "rules"),
               "emergency": ("id", "node", "ttl_s", "duration_s"),
               "request-status": ("id", "node", "ttl_s")}[verb]
    for k in doc:
        if k not in allowed:
            raise CommandError("unknown key %r for %s: allowed %s" % (k, verb, ", ".join(allowed)))
    cid = doc.get("id")
    if cid is not None and (not isinstance(cid, str) or len(cid) > 64):
        raise CommandError("'id' must be text of at most 64 characters")
    node = doc.get("node")
    if node == "all":
        nodes = sorted(node_ids)
    elif isinstance(node, int) and not isinstance(node, bool) and node in node_ids:
        nodes = [node]
    else:
        raise CommandError("'node' must be a radio node of this site (%s) or \"all\", got %r"
                           % (", ".join(str(n) for n in sorted(node_ids)) or "none", node))
    if not nodes:
        raise CommandError("this site has no radio nodes to send %s to" % verb)
    ttl = _int(doc, "ttl_s", 1, 30 * 86400, required=False) or DEFAULT_TTL_S
    if verb == "set-intervals":
        iv = {}
        for name, key in INTERVAL_KEYS:
            v = _int(doc, name, 1, MAX_INTERVAL_S, required=False)
            if v is not None:
                iv[key] = v
        if not iv:
            raise CommandError("set-intervals needs at least one of %s"
                               % ", ".join(k for k, _ in INTERVAL_KEYS))
        partial = {msg.C_INTERVALS: iv}
    elif verb == "set-rules":
        partial = {msg.C_RULES: _rules(doc.get("rules"), nodes, node_channels)}
    elif verb == "emergency":
        partial = {msg.C_EMERGENCY_S: _int(doc, "duration_s", 0, MAX_EMERGENCY_S)}
    else:
        partial = {msg.C_STATUS_NOW: True}
    trial = dict(partial)
    trial[msg.C_VERSION] = 0xFFFFFFFF
    if len(pcbor.dumps(trial)) > MAX_CONFIG_MAP:
        raise CommandError("%s does not fit one radio frame (%d bytes of config at most): "
                           "send fewer rules" % (verb, MAX_CONFIG_MAP))
    return Command(verb, cid, nodes, partial, ttl, node == "all")


def _rules(raw, nodes, node_channels):
    if not isinstance(raw, list):
        raise CommandError("'rules' must be a list of rule objects (empty to remove all)")
    if len(raw) > trip.MAX_RULES:
        raise CommandError("at most %d rules per node, got %d" % (trip.MAX_RULES, len(raw)))
    out = []
    for i, r in enumerate(raw):
        if not isinstance(r, dict):
            raise CommandError("rules[%d] must be an object" % i)
        d = dict(r)
        ch = d.get("chan")
        if isinstance(ch, str):
            kind, _, inst = ch.partition(".")
            try:
                d["chan"] = channels.chan_id(channels.kind_by_name(kind), int(inst or "x"))
            except ValueError as e:
                raise CommandError("rules[%d].chan %r: %s (write it as kind.instance, e.g. "
                                   "\"displacement.0\")" % (i, ch, e)) from None
        try:
            rule = rule_schema.from_command(d)
        except (ValueError, TypeError) as e:
            raise CommandError("rules[%d]: %s" % (i, e)) from None
        if node_channels:
            for n in nodes:
                have = node_channels.get(n)
                if have and rule.chan not in have:
                    raise CommandError("rules[%d]: node %d has no channel %s; it has %s"
                                       % (i, n, channels.label(rule.chan),
                                          ", ".join(channels.label(c) for c in sorted(have))))
        out.append(rule.to_wire())
    ids = [w[0] for w in out]
    if len(set(ids)) != len(ids):
        raise CommandError("rule ids must be unique within the list")
    return out


class _Pending:
    __slots__ = ("cmd", "node", "partial", "expires", "queued_at")

    def __init__(self, cmd, node, partial, expires, queued_at):
        self.cmd, self.node, self.partial = cmd, node, partial
        self.expires, self.queued_at = expires, queued_at


class _InFlight:
    __slots__ = ("version", "cfg", "items", "sends")

    def __init__(self, version, cfg, items):
        self.version, self.cfg, self.items, self.sends = version, cfg, items, 0


class DownlinkQueue:
    """Per-node CONFIG queue, pure logic; time is passed in.

    `put(cmd, now)` queues a validated command for its nodes. The radio ingest calls
    `config_for(node, re, now)` after it acked a frame of `node` and sends what it gets;
    `on_config_ack(node, ack_map, now)` when a CONFIG_ACK arrives. Results go to
    `on_result(cmd, node, result, detail, version)`."""

    def __init__(self, on_result, max_sends=8, clock_versions=True,
                 max_per_node=MAX_PENDING_PER_NODE, max_total=MAX_PENDING_TOTAL):
        self.on_result = on_result
        self.max_sends = max_sends
        self.clock_versions = clock_versions
        self.max_per_node = max_per_node
        self.max_total = max_total
        self.refused_full = 0
        self.pending = {}       # node -> [_Pending]
        self.in_flight = {}     # node -> _InFlight
        self.last_version = {}  # node -> last version issued or seen
        self.dirty = False      # changed since the last dump()
        self.extra = {}         # saved with the queue (the command replay cache)

    def room_for(self, cmd):
        """None if `cmd` fits the bounds, else the reason it does not (CommandError text)."""
        total = sum(len(v) for v in self.pending.values())
        if total + len(cmd.nodes) > self.max_total:
            return ("the gateway's downlink queue is full (%d commands waiting, at most %d): "
                    "wait for results, or let the nodes report first" % (total, self.max_total))
        full = [n for n in cmd.nodes if len(self.pending.get(n, ())) >= self.max_per_node]
        if full:
            return ("node %s already has %d commands waiting (at most %d): wait for their "
                    "results before sending more" % (",".join(map(str, full)),
                                                     self.max_per_node, self.max_per_node))
        return None

    def put(self, cmd, now):
        """Queue `cmd` for its nodes; CommandError (nothing queued) if a bound is hit."""
        why = self.room_for(cmd)
        if why:
            self.refused_full += 1
            raise QueueFull(why)
        for n in cmd.nodes:
            self.pending.setdefault(n, []).append(_Pending(cmd, n, cmd.partial, now + cmd.ttl_s,
                                                           now))
        self.dirty = True

    # ------------------------------------------------------------------ persistence
    def dump(self):
        """The queue as bytes (CBOR), so queued commands survive a gateway restart."""
        def item(p):
            return {"node": p.node, "verb": p.cmd.verb, "id": p.cmd.id, "partial": p.partial,
                    "expires": p.expires, "queued_at": p.queued_at, "ttl_s": p.cmd.ttl_s}
        doc = {"pending": [item(p) for lst in self.pending.values() for p in lst],
               "in_flight": [{"node": n, "version": f.version, "cfg": f.cfg, "sends": f.sends,
                              "items": [item(p) for p in f.items]}
                             for n, f in self.in_flight.items()],
               "last_version": self.last_version, "extra": self.extra}
        self.dirty = False
        return cbor2.dumps(doc)

    def load(self, data):
        doc = cbor2.loads(data)
        if not isinstance(doc, dict):
            raise ValueError("downlink queue file is not a CBOR map")
        cmds = {}

        def item(d):
            key = (d["verb"], d["id"], d["queued_at"])
            cmd = cmds.get(key)
            if cmd is None:
                cmd = cmds[key] = Command(d["verb"], d["id"], [], d["partial"], d["ttl_s"])
            cmd.nodes.append(d["node"])
            return _Pending(cmd, d["node"], d["partial"], d["expires"], d["queued_at"])
        for d in doc["pending"]:
            self.pending.setdefault(d["node"], []).append(item(d))
        for f in doc["in_flight"]:
            inf = _InFlight(f["version"], f["cfg"], [item(d) for d in f["items"]])
            inf.sends = f["sends"]
            v = inf.version
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_VERSION:
                inf.version = None          # a file from before defect 1 was fixed
                inf.cfg.pop(msg.C_VERSION, None)
            self.in_flight[f["node"]] = inf
        for n, v in doc["last_version"].items():
            self.note_version(n, v)
        extra = doc.get("extra")
        self.extra = extra if isinstance(extra, dict) else {}
        self.dirty = False

    def depth(self, node=None):
        nodes = [node] if node is not None else set(self.pending) | set(self.in_flight)
        return sum(len(self.pending.get(n, ())) + (1 if n in self.in_flight else 0)
                   for n in nodes)

    def note_version(self, node, version):
        if isinstance(version, bool) or not isinstance(version, int) or \
                not 1 <= version <= MAX_VERSION:
            return              # never keep what the wire cannot carry (defect 1)
        if version > self.last_version.get(node, 0):
            self.last_version[node] = version
            self.dirty = True

    def _next_version(self, node, now):
        v = self.last_version.get(node, 0) + 1
        if self.clock_versions:
            # Unix time as the floor keeps versions rising across gateway restarts
            # without persisting them.
            v = max(v, int(now))
        if v > MAX_VERSION:
            return None
        self.last_version[node] = v
        self.dirty = True
        return v

    def expire(self, now):
        for node in list(self.pending):
            keep = []
            for p in self.pending[node]:
                if p.expires <= now:
                    self.on_result(p.cmd, node, R_EXPIRED, "not delivered within ttl_s", None)
                else:
                    keep.append(p)
            if len(keep) != len(self.pending[node]):
                self.dirty = True
            self.pending[node] = keep
            if not keep:
                del self.pending[node]
        for node, inf in list(self.in_flight.items()):
            if all(p.expires <= now for p in inf.items):
                self._finish(node, R_EXPIRED, "no CONFIG_ACK within ttl_s", inf.version)

    def config_for(self, node, re, now):
        """CONFIG maps to send to `node` now (at most one: the node answers each)."""
        self.expire(now)
        inf = self.in_flight.get(node)
        if inf is None:
            items = self.pending.get(node)
            if not items:
                return []
            cfg = {}
            take = 0
            for p in items:
                trial = _merge(dict(cfg), p.partial)
                trial[msg.C_VERSION] = 0xFFFFFFFF
                if take and len(pcbor.dumps(trial)) > MAX_CONFIG_MAP:
                    break
                _merge(cfg, p.partial)
                take += 1
            taken = items[:take]
            del items[:take]
            if not items:
                del self.pending[node]
            inf = _InFlight(None, cfg, taken)
        if inf.version is None:
            inf.version = self._next_version(node, now)
            self.in_flight[node] = inf
            if inf.version is None:
                self._finish(node, R_REJECTED, "the node's config version is at the u32 "
                             "maximum: re-provision it (`stationctl provision`)", None)
                return []
            inf.cfg[msg.C_VERSION] = inf.version
        if inf.sends >= self.max_sends:
            self._finish(node, R_EXPIRED, "no CONFIG_ACK after %d sends" % inf.sends, inf.version)
            return self.config_for(node, re, now)
        inf.sends += 1
        self.dirty = True
        return [inf.cfg]

    def on_config_ack(self, node, m, now):
        inf = self.in_flight.get(node)
        v = m.get(msg.K_VERSION)
        result = m.get(msg.K_RESULT)
        self.note_version(node, v)
        if inf is None or not isinstance(v, int):
            return
        reason = m.get(msg.K_REASON)
        reason = reason if isinstance(reason, str) else ""
        if result == msg.RESULT_OK and v == inf.version:
            self._finish(node, R_APPLIED, "", v)
        elif result == msg.RESULT_REJECTED and v == inf.version:
            self._finish(node, R_REJECTED, reason or "the node refused it", v)
        elif result == msg.RESULT_STALE:
            if v == inf.version:
                # Our earlier send was applied; this answer is to a repeat.
                self._finish(node, R_APPLIED, "", v)
            elif v > inf.version and v <= MAX_VERSION:
                # The node holds a newer version than we issued: issue above it.
                inf.version = None
                self.last_version[node] = v

    def _finish(self, node, result, detail, version):
        inf = self.in_flight.pop(node, None)
        if inf is None:
            return
        self.dirty = True
        for p in inf.items:
            self.on_result(p.cmd, node, result, detail, version)


def _merge(cfg, partial):
    for k, v in partial.items():
        if k == msg.C_INTERVALS and k in cfg:
            m = dict(cfg[k])
            m.update(v)
            cfg[k] = m
        else:
            cfg[k] = v
    return cfg
