"""Seed corpus for the fuzz targets, from the protocol's test vectors
(protocol/vectors/*.json) plus a few operator commands: each target starts from
valid inputs and libFuzzer mutates from there."""
import json
from pathlib import Path

from protocol import cbor
from protocol import frame as fr

ROOT = Path(__file__).resolve().parents[2]
VEC = ROOT / "protocol" / "vectors"
PAYLOAD_KINDS = (fr.READINGS, fr.ALARM, fr.STATUS, fr.ACK, fr.CONFIG)   # targets.t_payloads


def _load(name):
    return json.loads((VEC / name).read_text())


def _frames():
    from protocol.mic import Hmac
    d = _load("frames.json")
    signer = Hmac(bytes.fromhex(d["key"]))
    out = []
    for v in d["valid"]:
        raw = bytes.fromhex(v["frame"])
        f = fr.decode(raw, lambda n: signer)
        out.append((raw, bytes.fromhex(v["wire"]), f))
    invalid = [bytes.fromhex(v["frame"]) for v in d["invalid"] if "frame" in v]
    return out, invalid


def seeds(name):
    frames, invalid = _frames()
    if name == "framing":
        s = [wire for _, wire, _ in frames]
        s += [bytes.fromhex(st["stream"]) for st in _load("framing.json")["streams"]]
        return s
    if name == "frame":
        # first byte: bit 0 set = the target re-signs (vector frames carry the vector
        # key's MIC; the target's key is the same, so both modes start valid)
        return ([b"\x00" + raw for raw, _, _ in frames] + [b"\x01" + raw[:-8] for raw, _, _ in frames]
                + [b"\x00" + raw for raw in invalid])
    if name == "payloads":
        out = []
        for _, _, f in frames:
            kind = f.mtype if f.mtype in PAYLOAD_KINDS else fr.STATUS
            out.append(bytes([PAYLOAD_KINDS.index(kind)]) + f.payload)
        return out
    if name == "cbor":
        d = _load("cbor.json")
        return [bytes.fromhex(v["hex"]) for k in d if isinstance(d[k], list)
                for v in d[k] if isinstance(v, dict) and "hex" in v]
    if name == "rules":
        rules = [r for sc in _load("trip_events.json")["scenarios"] for r in sc["rules"]]
        return [cbor.dumps(r) for r in rules] + [cbor.dumps(rules[:3])] + [cbor.dumps(
            {"id": 1, "chan": 24, "kind": "threshold", "level": "orange", "op": "above",
             "threshold": 3000, "hysteresis": 100, "debounce": 2, "hold_s": 600})]
    if name == "commands":
        docs = [(0, {"id": "a1", "node": 101, "sample_s": 60, "report_s": 600}),
                (1, {"id": "r1", "node": 102, "rules": [
                    {"id": 1, "chan": "water_level.0", "kind": "threshold", "level": "red",
                     "op": "above", "threshold": 3500, "hysteresis": 100}]}),
                (2, {"node": "all", "duration_s": 3600, "ttl_s": 600}),
                (3, {"node": 103})]
        out = [bytes([verb | 0x10]) + json.dumps(doc).encode() for verb, doc in docs]
        import cbor2
        out += [bytes([verb | 0x20]) + cbor2.dumps(doc) for verb, doc in docs]
        return out
    raise KeyError(name)
