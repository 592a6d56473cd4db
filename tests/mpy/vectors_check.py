# Checks protocol/vectors/*.json against protocol/. Runs under CPython (imported by
# tests/protocol/test_vectors.py) and as a script under the MicroPython unix port
# (tests/protocol/test_mpy_tier.py), so both runtimes agree on every byte.
#
# Heap (MicroPython, 64 KB in the tier): the board's boot.py runs first, as on a board, for
# its GC policy (collect early; without it the result at a given heap size was down to how
# the heap happened to fragment).
import json

import firmware.boot  # noqa: F401  (see above)
from protocol import cbor, cbordecode, framing, gwmessages, messages, readings
from protocol import frame as fr
from protocol.mic import Hmac


def _unhex(h):
    return bytes(bytearray(int(h[i:i + 2], 16) for i in range(0, len(h), 2)))


def _hex(b):
    return "".join("%02x" % x for x in b)


def _from_json(v):
    if isinstance(v, dict):
        if "bytes" in v:
            return _unhex(v["bytes"])
        if "map" in v:
            d = {}
            for k, x in v["map"]:
                d[_from_json(k)] = _from_json(x)
            return d
    if isinstance(v, list):
        return [_from_json(x) for x in v]
    return v


def _intkeys(m):
    d = {}
    for k in m:
        v = m[k]
        d[int(k)] = _intkeys(v) if isinstance(v, dict) else v
    return d


def _blocks_json(blocks):
    out = []
    for b in blocks:
        if b.values is None:
            out.append({"chan": b.chan, "age": b.age, "step": b.step, "count": b.count, "fault": b.fault})
        else:
            out.append({"chan": b.chan, "age": b.age, "step": b.step, "values": b.values})
    return out


def _payload(f):
    t = f.mtype
    if t == fr.READINGS:
        return {"blocks": _blocks_json(readings.decode(f.payload))}
    if t == fr.ALARM:
        return {"alarms": gwmessages.decode_alarms(f.payload)}
    if t == fr.ACK:
        re, gw, ranges = messages.decode_ack(f.payload)
        return {"re": re, "gw_time": gw, "ranges": [[lo, hi] for lo, hi in ranges]}
    if t == fr.CONFIG:
        re, m = messages.decode_config(f.payload)
        return {"re": re, "map": m}
    if t == fr.ZONE:
        p = f.payload
        return {"re": int.from_bytes(p[:4], "big"), "level": p[4], "zone": p[5]}
    return {"map": gwmessages.decode_map(f.payload)}


def _expected_payload(exp):
    p = dict(exp)
    if "alarms" in p:
        p["alarms"] = [_intkeys(a) for a in p["alarms"]]
    if "map" in p:
        p["map"] = _intkeys(p["map"])
    return p


def check_frames(doc, fails):
    key = _unhex(doc["key"])
    signer = Hmac(key)
    known = doc["nodes"]

    def lookup(node):
        return signer if node in known else None

    n = 0
    for v in doc["valid"]:
        n += 1
        data = _unhex(v["frame"])
        exp = v["expect"]
        try:
            f = fr.decode(data, lookup)
        except Exception as e:
            fails.append("%s: decode raised %r" % (v["name"], e))
            continue
        got = {"type": fr.TYPE_NAMES[f.mtype], "node": f.node, "seq": f.seq, "time": f.time,
               "back": f.back, "flags": f.flags}
        for k in got:
            if got[k] != exp[k]:
                fails.append("%s: %s = %r, expected %r" % (v["name"], k, got[k], exp[k]))
        if _payload(f) != _expected_payload(exp["payload"]):
            fails.append("%s: payload %r != %r" % (v["name"], _payload(f), exp["payload"]))
        again = fr.encode(signer, f.mtype, f.node, f.seq, f.time, f.payload, f.flags, f.back)
        if again != data:
            fails.append("%s: re-encoding differs" % v["name"])
        wire = _unhex(v["wire"])
        if framing.wrap(data) != wire:
            fails.append("%s: wrap() differs from wire" % v["name"])
        items = framing.Deframer().feed(wire)
        if items != [data]:
            fails.append("%s: deframing wire gave %r" % (v["name"], items))
    for v in doc["invalid"]:
        n += 1
        try:
            fr.decode(_unhex(v["frame"]), lookup)
            fails.append("%s: accepted, expected error %s" % (v["name"], v["error"]))
        except fr.FrameError as e:
            if e.reason != v["error"]:
                fails.append("%s: reason %s, expected %s" % (v["name"], e.reason, v["error"]))
        except Exception as e:
            fails.append("%s: raised %r instead of FrameError" % (v["name"], e))
    return n


def check_framing(doc, fails):
    n = 0
    for v in doc["streams"]:
        n += 1
        items = framing.Deframer().feed(_unhex(v["stream"]))
        got = [(_hex(x) if not isinstance(x, str) else x) for x in items]
        if got != v["items"]:
            fails.append("%s: %r != %r" % (v["name"], got, v["items"]))
    return n


def check_cbor(doc, fails):
    n = 0
    for v in doc["valid"]:
        n += 1
        data = _unhex(v["hex"])
        want = _from_json(v["json"])
        try:
            got = cbordecode.loads(data)
        except Exception as e:
            fails.append("cbor %s: raised %r" % (v["hex"], e))
            continue
        if got != want:
            fails.append("cbor %s: decoded %r, expected %r" % (v["hex"], got, want))
        if not v.get("decode_only") and cbor.dumps(want) != data:
            fails.append("cbor %s: encoded %s" % (v["hex"], _hex(cbor.dumps(want))))
    for v in doc["invalid"]:
        n += 1
        try:
            cbordecode.loads(_unhex(v["hex"]))
            fails.append("cbor %s (%s): accepted" % (v["hex"], v["note"]))
        except cbor.CborError:
            pass
        except Exception as e:
            fails.append("cbor %s (%s): raised %r, not CborError" % (v["hex"], v["note"], e))
    return n


def _decode_payload(t, data):
    if t == "readings":
        return _blocks_json(readings.decode(data))
    if t == "alarm":
        return gwmessages.decode_alarms(data)
    if t == "ack":
        re, gw, ranges = messages.decode_ack(data)
        return [re, gw, [[lo, hi] for lo, hi in ranges]]
    if t == "config":
        re, m = messages.decode_config(data)
        return [re, m]
    return getattr(gwmessages, "decode_" + t)(data)


def _expected(t, exp):
    if t == "alarm":
        return [_intkeys(a) for a in exp]
    if t == "config":
        return [exp[0], _intkeys(exp[1])]
    if isinstance(exp, dict) and t != "readings":
        return _intkeys(exp)
    return exp


def check_payloads(doc, fails):
    """contract_payloads.json: a vector per payload decision of SPEC.md (§3, §4, §6.2).
    One with "error" must raise a ValueError (PayloadError, VarintError, CborError);
    one with "expect" must decode to it."""
    n = 0
    for v in doc["payloads"]:
        n += 1
        try:
            got = _decode_payload(v["type"], _unhex(v["hex"]))
        except ValueError as e:
            if "error" not in v:
                fails.append("%s: raised %r" % (v["name"], e))
            continue
        except Exception as e:
            fails.append("%s: raised %r, not a ValueError" % (v["name"], e))
            continue
        if "error" in v:
            fails.append("%s: accepted, expected a payload reject" % v["name"])
        elif got != _expected(v["type"], v["expect"]):
            fails.append("%s: %r != %r" % (v["name"], got, v["expect"]))
    return n


def check_contract_frames(doc, fails):
    """contract_frames.json: header rules (§2) and the sizes of §1."""
    n = 0
    signer = Hmac(_unhex(doc["key"]))
    known = doc["nodes"]
    for v in doc["frames"]:
        n += 1
        try:
            fr.decode(_unhex(v["frame"]), lambda node: signer if node in known else None)
            if v["error"]:
                fails.append("%s: accepted, expected %s" % (v["name"], v["error"]))
        except fr.FrameError as e:
            if e.reason != v["error"]:
                fails.append("%s: reason %s, expected %s" % (v["name"], e.reason, v["error"]))
    return n + check_framing(doc, fails)


def run(vectors_dir, only=None):
    fails = []
    n = 0
    for name, fn in (("frames.json", check_frames), ("framing.json", check_framing), ("cbor.json", check_cbor),
                     ("contract_payloads.json", check_payloads),
                     ("contract_frames.json", check_contract_frames)):
        if only is not None and name != only:
            continue
        with open(vectors_dir + "/" + name) as fh:
            doc = json.load(fh)
        n += fn(doc, fails)
        del doc             # not held while the next file is parsed
    return n, fails


if __name__ == "__main__":
    import sys
    d = sys.argv[1] if len(sys.argv) > 1 else "protocol/vectors"
    n, fails = run(d, sys.argv[2] if len(sys.argv) > 2 else None)
    for f in fails:
        print("FAIL", f)
    print("VECTORS checked=%d failed=%d" % (n, len(fails)))
