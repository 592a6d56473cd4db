"""`stationctl decode`: radio frames, serial captures and uplink messages in plain words.

    stationctl decode 1101006500000007...          one frame as hex
    stationctl decode --capture line.bin           bytes recorded from the serial line
    stationctl decode --batch batch.cbor           an uplink batch, alarm or status (- = stdin),
                                                   checked against protocol/uplink.cddl
    ... --registry keys.toml                       check each frame's MIC with the node's key
    ... --json                                     machine-readable, one JSON document

Frames are checked and parsed by protocol/ exactly as the gateway does. Without a
registry the MIC is not checked (and said so); with one, a frame whose MIC fails is a
key mismatch: the gateway rejects every frame of that node until node and gateway
hold the same key. Reading times: a frame from a node with a synced clock carries Unix
time; otherwise times are shown relative to sending, or absolute when `--rx-time`
gives the receive time (what the gateway does: t = rx - age + k*step).
"""
import datetime
import json
import sys

import cbor2

from firmware import faults
from gateway import uplink_schema
from protocol import channels, framing, gwmessages, levels, messages, readings
from protocol import frame as fr
from protocol.mic import MIC_LEN, Hmac
from protocol.trip import EVENT_NAMES, KIND_NAMES
from tools.errors import BAD_INPUT, KEY_MISMATCH, NODE_NOT_IN_REGISTRY, ToolError

STATUS_NAMES = {messages.S_BATTERY_MV: "battery_mv", messages.S_SUPPLY_MV: "supply_mv",
                messages.S_TEMP_DECIC: "temp_decic", messages.S_FREE_HEAP: "free_heap",
                messages.S_RESET_CAUSE: "reset_cause", messages.S_LOG_DEPTH: "log_depth",
                messages.S_FW: "fw", messages.S_CONFIG_VERSION: "config_version",
                messages.S_UPTIME: "uptime_s", messages.S_THINNED: "thinned",
                messages.S_DROPPED: "dropped", messages.S_LEVEL: "level",
                messages.S_MODE: "mode"}
HELLO_NAMES = {messages.H_FW: "fw", messages.H_CONFIG_VERSION: "config_version",
               messages.H_RESET_CAUSE: "reset_cause", messages.H_BOOT_COUNT: "boot_count",
               messages.H_CHANNELS: "channels", messages.H_BOARD: "board",
               messages.H_VERSIONS: "versions"}
CONFIG_ACK_NAMES = {messages.K_VERSION: "version", messages.K_RESULT: "result",
                    messages.K_REASON: "reason", messages.K_RE: "re"}
RESULT_NAMES = {messages.RESULT_OK: "ok", messages.RESULT_REJECTED: "rejected",
                messages.RESULT_STALE: "stale"}
FLAG_NAMES_UP = ((fr.F_CLOCK_SYNCED, "clock_synced"), (fr.F_TIME_APPROX, "time_approx"),
                 (fr.F_ALARM_ACTIVE, "alarm_active"), (fr.F_EMERGENCY, "emergency"),
                 (fr.F_ZONE, "zone"))
BATCH_COUNTERS = {1: "readings_thinned", 2: "readings_dropped", 3: "frames_rejected",
                  4: "frames_duplicate", 5: "alarms_dropped"}
NODE_STATUS_NAMES = {1: "node", 2: "t", 3: "battery_mv", 4: "supply_mv", 5: "temp_decic",
                     6: "free_heap", 7: "reset_cause", 8: "log_depth", 9: "fw",
                     10: "config_version", 11: "rssi_dbm", 12: "seq_gaps"}


# --- values ------------------------------------------------------------------------

def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def chan_label(chan):
    try:
        return channels.label(chan)
    except ValueError:
        return "chan0x%02x" % chan


def value_text(chan, v):
    """A scaled int in its unit ("3.000 m"), or a fault ("fault open_circuit")."""
    if isinstance(v, list):
        return "fault %s" % faults.name(v[0]) if v and isinstance(v[0], int) else "fault ?"
    try:
        _, unit, exp, _ = channels.info(chan)
    except ValueError:
        return str(v)
    return "%.*f %s" % (max(0, -exp), v * 10.0 ** exp, unit)


def level_name(n):
    try:
        return levels.name(n)
    except (ValueError, TypeError):
        return "level%r" % (n,)


# --- frames ----------------------------------------------------------------------------

class _Unchecked:
    """Signer stand-in when no registry is given: returns the frame's own MIC, so
    decode() runs every other check and the output says the MIC was not checked."""

    def __init__(self, raw):
        self._mic = bytes(raw[-MIC_LEN:])

    def mic(self, data):
        return self._mic


def _flags(mtype, flags):
    if mtype in fr.DOWNLINK_TYPES:
        return [name for bit, name in ((fr.F_PENDING, "pending"), (fr.F_CONGESTED, "congested"))
                if flags & bit]
    return [name for bit, name in FLAG_NAMES_UP if flags & bit]


def _readings(f, rx_time):
    out = []
    idx = 0
    synced = bool(f.flags & fr.F_CLOCK_SYNCED)
    for b in readings.decode(f.payload):
        blk = {"chan": b.chan, "label": chan_label(b.chan), "count": b.count, "age_s": b.age,
               "step_s": b.step, "first_idx": idx}
        if b.values is None:
            blk["fault"] = faults.name(b.fault)
        else:
            blk["values"] = b.values
            blk["text"] = [value_text(b.chan, v) for v in b.values]
        if rx_time is not None:
            blk["t0"] = rx_time - b.age
        elif synced:
            blk["t0"] = f.time - b.age
        idx += b.count
        out.append(blk)
    return out


def _map_named(m, names):
    return {names.get(k, str(k)): v for k, v in m.items()}


def _payload(f, rx_time):
    t = f.mtype
    if t == fr.READINGS:
        return {"blocks": _readings(f, rx_time)}
    if t == fr.ALARM:
        out = []
        for a in gwmessages.decode_alarms(f.payload):
            out.append({"event": EVENT_NAMES.get(a[messages.A_EVENT], a[messages.A_EVENT]),
                        "level": level_name(a[messages.A_LEVEL]),
                        "prev_level": level_name(a.get(messages.A_PREV, 0)),
                        "chan": a[messages.A_CHAN], "label": chan_label(a[messages.A_CHAN]),
                        "rule": a[messages.A_RULE],
                        "kind": KIND_NAMES.get(a.get(messages.A_KIND), a.get(messages.A_KIND)),
                        "value": a.get(messages.A_VALUE), "threshold": a.get(messages.A_THRESHOLD),
                        "age_s": a.get(messages.A_AGE, 0)})
        return {"alarms": out}
    if t == fr.STATUS:
        m = _map_named(gwmessages.decode_status(f.payload), STATUS_NAMES)
        if isinstance(m.get("level"), int):
            m["level"] = level_name(m["level"])
        return {"status": m}
    if t == fr.HELLO:
        m = _map_named(gwmessages.decode_hello(f.payload), HELLO_NAMES)
        if isinstance(m.get("channels"), list):
            m["channels"] = [chan_label(c) for c in m["channels"]]
        return {"hello": m}
    if t == fr.CONFIG_ACK:
        m = _map_named(gwmessages.decode_config_ack(f.payload), CONFIG_ACK_NAMES)
        m["result"] = RESULT_NAMES.get(m.get("result"), m.get("result"))
        return {"config_ack": m}
    if t == fr.ACK:
        re, gw_time, ranges = messages.decode_ack(f.payload)
        return {"ack": {"re": re, "gw_time": gw_time, "ranges": [list(r) for r in ranges]}}
    if t == fr.CONFIG:
        re, m = messages.decode_config(f.payload)
        return {"config": {"re": re, "map": {str(k): v for k, v in m.items()}}}
    if t == fr.ZONE:
        p = f.payload
        if len(p) != 6 or p[4] > 4:
            raise messages.PayloadError("ZONE payload must be re u32, level 0..4, zone (6 bytes)")
        return {"zone": {"re": int.from_bytes(p[:4], "big"), "level": level_name(p[4]),
                         "zone": p[5]}}
    return {}


def describe_frame(raw, keys=None, registry=None, rx_time=None):
    """A dict for one frame. keys: {node: bytes} or None (MIC not checked).
    Problems go in d["error"] with d["reason"]; the caller decides the exit code."""
    d = {"length": len(raw), "hex": raw.hex()}
    if keys is None:
        def signer_for(node):
            return _Unchecked(raw)
        d["mic"] = "not checked (no --registry)"
    else:
        def signer_for(node):
            k = keys.get(node)
            return Hmac(k) if k is not None else None
    try:
        f = fr.decode(raw, signer_for)
    except fr.FrameError as e:
        d["reason"] = e.reason
        if e.reason == fr.REASON_UNKNOWN_NODE:
            node = fr.peek_node(raw)
            d["node"] = node
            d["error"] = ("node %d is not in the registry %s: the gateway drops its frames as "
                          "unknown_node. Run `stationctl keygen %d --registry %s`, provision the "
                          "node, restart the gateway" % (node, registry, node, registry))
        elif e.reason == fr.REASON_MIC:
            node = fr.peek_node(raw)
            d["node"] = node
            d["error"] = ("key mismatch: the MIC does not match node %d's key in %s, so the "
                          "gateway rejects this node's frames (reason 'mic'). The node holds "
                          "another key (provisioned from another keys file, or the key was "
                          "rotated since) or the frame was altered. Fix: `stationctl provision "
                          "--port PORT %d --registry %s --profile PROFILE` writes the "
                          "registry's key onto the node" % (node, registry, node, registry))
        else:
            d["error"] = "not a valid frame: %s" % e
        return d
    d.update({"type": fr.TYPE_NAMES.get(f.mtype, str(f.mtype)), "node": f.node, "seq": f.seq,
              "time": f.time, "back": f.back, "flags": _flags(f.mtype, f.flags)})
    if keys is not None:
        d["mic"] = "ok"
    if f.mtype in fr.UPLINK_TYPES:
        d["clock"] = "unix" if f.flags & fr.F_CLOCK_SYNCED else "since boot"
    try:
        d.update(_payload(f, rx_time))
    except (ValueError, messages.PayloadError) as e:
        d["reason"] = "payload"
        d["error"] = "the %s payload is malformed: %s" % (d["type"], e)
    return d


def frame_text(d):
    if "type" not in d:
        return ["frame (%d bytes): %s" % (d["length"], d.get("error"))]
    head = "%s node %d seq %d back %d time %s%s mic %s" % (
        d["type"].upper(), d["node"], d["seq"], d["back"],
        iso(d["time"]) if d.get("clock") == "unix" else "%d s" % d["time"],
        (" flags " + ",".join(d["flags"])) if d["flags"] else "", d["mic"])
    lines = [head]
    for b in d.get("blocks", ()):
        when = ("first at %s" % iso(b["t0"])) if "t0" in b else ("first %d s before send" % b["age_s"])
        if "fault" in b:
            lines.append("  %-16s %d x fault %s, %s, every %d s (idx %d..)" % (
                b["label"], b["count"], b["fault"], when, b["step_s"], b["first_idx"]))
        else:
            every = ("every %d s" % b["step_s"]) if b["count"] > 1 else "1 sample"
            lines.append("  %-16s %s, %s (idx %d..): %s" % (
                b["label"], when, every, b["first_idx"], ", ".join(b["text"])))
    for a in d.get("alarms", ()):
        lines.append("  %s %s (was %s) on %s: rule %s %s value %s threshold %s, %d s before send"
                     % (a["event"].upper() if isinstance(a["event"], str) else a["event"],
                        a["level"].upper(), a["prev_level"], a["label"], a["rule"], a["kind"],
                        a["value"], a["threshold"], a["age_s"]))
    for key in ("status", "hello", "config_ack", "ack", "config", "zone"):
        if key in d:
            lines.append("  " + ", ".join("%s=%s" % (k, v) for k, v in d[key].items()))
    if d.get("error"):
        lines.append("  error: " + d["error"])
    return lines


# --- uplink messages ---------------------------------------------------------------------

def describe_uplink(payload, topic=None):
    """A dict for a batch, alarm or status message (SPEC §9); ValueError if it is none of
    them. A schema-2 batch does not name its site and gateway: `topic`
    (<prefix>/S/G/data) does, when given."""
    try:
        m = cbor2.loads(payload)
    except Exception as e:  # cbor2 raises several types for bad input
        raise ValueError("not CBOR: %s" % e) from None
    if isinstance(m, dict) and m.get(0) == 2 and isinstance(m.get(5), list):
        parts = (topic or "").split("/")
        return _batch(m, *(parts[-3:-1] if len(parts) >= 3 else (None, None)))
    if not isinstance(m, dict) or m.get(0) != 1:
        raise ValueError("not an uplink message of schema 1 or 2 (a CBOR map with 0: 1, or "
                         "a data batch with 0: 2)")
    kind = m.get(5)
    if isinstance(kind, list):
        return _batch(m)
    if isinstance(kind, str):
        d = {"kind": "status", "site": m.get(1), "gateway": m.get(2),
             "state": "online" if m.get(3) == 1 else "offline", "t": m.get(4), "sw": kind}
        if isinstance(m.get(6), dict):
            d["last_seen"] = {str(k): v for k, v in m[6].items()}
        return d
    if isinstance(kind, int):
        return {"kind": "alarm", "site": m.get(1), "gateway": m.get(2), "node": m.get(3),
                "seq": m.get(4), "index": m.get(15, 0),
                "event": EVENT_NAMES.get(kind, kind), "level": level_name(m.get(6)),
                "level_n": m.get(6), "prev_level": level_name(m.get(7)), "chan": m.get(8),
                "label": chan_label(m.get(8, 0)), "rule": m.get(9),
                "kind_of_rule": KIND_NAMES.get(m.get(10), m.get(10)), "value": m.get(11),
                "threshold": m.get(12), "t": m.get(13), "rx_ms": m.get(14)}
    raise ValueError("CBOR map with schema 1 but key 5 is neither readings, an alarm event "
                     "nor a software version")


def _chan_runs_v2(groups, base):
    """Schema-2 groups (SPEC §9.2) as schema 1's [[chan, [run, ...]], ...]: absolute
    times, decoded samples."""
    by_chan = {}
    for g in groups:
        seq, idx, t, step, flags, stride = g[:6]
        for j, cr in enumerate(g[6:]):
            values, v = [], None
            for d in cr[1:]:
                if isinstance(d, int):
                    v = d if v is None else v + d
                    d = v
                values.append(d)
            by_chan.setdefault(cr[0], []).append(
                [seq, idx + j * stride, base + t, step, values, flags])
    return [[chan, sorted(runs, key=lambda r: (r[0], r[1]))] for chan, runs in sorted(by_chan.items())]


def _batch(m, site=None, gw=None):
    nodes = []
    n_readings = 0
    try:
        blocks = m[5]
        if m[0] == 2:
            blocks = [[node, _chan_runs_v2(groups, m[4])] for node, groups in m[5]]
        for node, chans in blocks:
            out_ch = []
            for chan, runs in chans:
                out_runs = []
                for run in runs:
                    seq, idx, t0, step, values = run[:5]
                    flags = run[5] if len(run) > 5 else 0
                    out_runs.append({"seq": seq, "idx": idx, "t0": t0, "step": step,
                                     "values": values, "flags": flags,
                                     "text": [value_text(chan, v) for v in values]})
                    n_readings += len(values)
                out_ch.append({"chan": chan, "label": chan_label(chan), "runs": out_runs})
            nodes.append({"node": node, "channels": out_ch})
    except (TypeError, ValueError) as e:
        raise ValueError("batch key 5 is not %s: %s" % (
            "[[node, [group...]]]" if m[0] == 2 else "[[node, [[chan, [run...]]]]]", e)) from None
    d = {"kind": "batch", "schema": m[0], "site": m.get(1, site), "gateway": m.get(2, gw),
         "seq": m.get(3), "created": m.get(4), "readings": n_readings, "nodes": nodes,
         "counters": {BATCH_COUNTERS.get(k, str(k)): v for k, v in (m.get(7) or {}).items()}}
    if m.get(6):
        d["node_status"] = [{NODE_STATUS_NAMES.get(k, str(k)): v for k, v in s.items()}
                            for s in m[6]]
    return d


def uplink_text(d):
    if d["kind"] == "batch":
        lines = ["BATCH %s/%s seq %s created %s: %d readings" % (
            d["site"] or "(site from the topic)", d["gateway"] or "(gateway)", d["seq"],
            iso(d["created"]), d["readings"])]
        for n in d["nodes"]:
            for c in n["channels"]:
                for r in c["runs"]:
                    lines.append("  node %d %-16s seq %d idx %d.. from %s every %d s%s: %s" % (
                        n["node"], c["label"], r["seq"], r["idx"], iso(r["t0"]), r["step"],
                        " (approx times)" if r["flags"] & 1 else "", ", ".join(r["text"])))
        for s in d.get("node_status", ()):
            lines.append("  status " + ", ".join("%s=%s" % kv for kv in s.items()))
        lines.append("  counters " + (", ".join("%s=%s" % kv for kv in d["counters"].items())
                                      or "unchanged (not in this batch)"))
        return lines
    if d["kind"] == "alarm":
        return ["ALARM %s/%s node %s %s %s (was %s) on %s: rule %s %s value %s threshold %s at %s "
                "(seq %s #%s)" % (d["site"], d["gateway"], d["node"], d["event"].upper()
                                  if isinstance(d["event"], str) else d["event"],
                                  d["level"].upper(), d["prev_level"], d["label"], d["rule"],
                                  d["kind_of_rule"], d["value"], d["threshold"],
                                  iso(d["t"]) if isinstance(d["t"], int) else d["t"],
                                  d["seq"], d["index"])]
    seen = ""
    if d.get("last_seen"):
        seen = ", nodes last seen: " + ", ".join(
            "%s %s" % (k, iso(v)) for k, v in sorted(d["last_seen"].items()))
    return ["STATUS %s/%s %s at %s, sw %s%s" % (d["site"], d["gateway"], d["state"].upper(),
                                                iso(d["t"]), d["sw"], seen)]


# --- the command ----------------------------------------------------------------------------

def _hex_bytes(text):
    t = "".join(text.split()).replace(":", "").replace("-", "")
    if t.lower().startswith("0x"):
        t = t[2:]
    try:
        return bytes.fromhex(t)
    except ValueError:
        raise ToolError(BAD_INPUT, "%r is not hex: give the frame as hex digits (spaces and "
                        "colons allowed), or use --capture FILE for raw bytes" % text[:40]) from None


def _keys(registry):
    if registry is None:
        return None
    from tools.keygen import load_keys
    return load_keys(registry)


def decode_capture(data, keys, registry, rx_time=None):
    """Items of a serial capture: frames (dicts) and line garbage ({"garbage": reason})."""
    out = []
    for item in framing.Deframer().feed(bytes(data) + b"\x00"):
        if isinstance(item, str):
            out.append({"garbage": item})
        else:
            out.append(describe_frame(item, keys, registry, rx_time))
    return out


def _exit_code(items):
    reasons = [d.get("reason") for d in items if "reason" in d]
    if fr.REASON_MIC in reasons:
        return KEY_MISMATCH
    if fr.REASON_UNKNOWN_NODE in reasons:
        return NODE_NOT_IN_REGISTRY
    if reasons:
        return BAD_INPUT
    return 0


def _read_input(path):
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ToolError(BAD_INPUT, "%s: cannot read: %s" % (path, e.strerror)) from None


def run(args):
    if getattr(args, "beidou", False):
        from tools import bddecode
        return bddecode.run(args)
    given = [x for x in (args.frame, args.capture, args.batch) if x is not None]
    if len(given) != 1:
        raise ToolError(BAD_INPUT, "give exactly one of: a frame as HEX, --capture FILE, "
                        "--batch FILE (- for stdin)")
    if args.batch is not None:
        data = _read_input(args.batch)
        try:
            d = describe_uplink(data, getattr(args, "topic", None))
        except ValueError as e:
            raise ToolError(BAD_INPUT, "%s: %s: give a message from <prefix>/<site>/<gw>/data, "
                            "/alarm or /status" % (args.batch, e)) from None
        try:
            uplink_schema.check(d["kind"], data)
        except uplink_schema.SchemaError as e:
            raise ToolError(BAD_INPUT, "%s: this %s breaks the uplink schema (protocol/uplink.cddl, "
                            "SPEC §9) at %s: %s" % (args.batch, d["kind"], e.path, e)) from None
        print(json.dumps(d, indent=1) if args.json else "\n".join(uplink_text(d)))
        return 0
    keys = _keys(args.registry)
    if args.capture is not None:
        data = _read_input(args.capture)
        items = decode_capture(data, keys, args.registry, args.rx_time)
        if not items:
            raise ToolError(BAD_INPUT, "%s: no frame in %d bytes: was it recorded from the "
                            "radio module's UART (frames start and end with 0x00)?"
                            % (args.capture, len(data)))
    else:
        raw = _hex_bytes(args.frame)
        if raw[:1] == b"\x00" and raw[-1:] == b"\x00":
            items = decode_capture(raw, keys, args.registry, args.rx_time)  # a framed line
        else:
            items = [describe_frame(raw, keys, args.registry, args.rx_time)]
    if args.json:
        print(json.dumps(items if len(items) != 1 else items[0], indent=1))
    else:
        for d in items:
            if "garbage" in d:
                print("line garbage: %s" % d["garbage"])
            else:
                print("\n".join(frame_text(d)))
    code = _exit_code(items)
    if code:
        first = next(d for d in items if "reason" in d)
        raise ToolError(code, first["error"])
    return 0
