"""The committed test vectors: checked by protocol/, regenerated identically, and
cross-checked by an independent decoder (stdlib hmac + binascii + cbor2, from SPEC.md)."""
import binascii
import hashlib
import hmac
import json
import struct

import cbor2
import vectors_check

from tools import make_vectors

VEC = make_vectors.OUT


def test_vectors_pass_on_cpython():
    n, fails = vectors_check.run(str(VEC))
    assert fails == []
    assert n >= 60


def test_vectors_are_what_the_generator_makes():
    for name, obj in make_vectors.build().items():
        assert (VEC / name).read_text(encoding="utf-8") == make_vectors.render(obj), (
            f"{name} differs from protocol/: the wire format changed. If that is intended, "
            "update SPEC.md and run `python -m tools.make_vectors`.")


def independent_deframe(wire):
    """COBS + CRC16 written from SPEC.md section 1, sharing no code with protocol/."""
    assert wire[0] == 0 and wire[-1] == 0
    body, i, enc = bytearray(), 0, wire[1:-1]
    while i < len(enc):
        code = enc[i]
        body += enc[i + 1:i + code]
        i += code
        if code < 0xFF and i < len(enc):
            body.append(0)
    frame, crc = bytes(body[:-2]), struct.unpack(">H", body[-2:])[0]
    assert binascii.crc_hqx(frame, 0xFFFF) == crc
    return frame


def test_independent_decoder_agrees_on_valid_frames():
    doc = json.loads((VEC / "frames.json").read_text())
    key = bytes.fromhex(doc["key"])
    for v in doc["valid"]:
        frame = independent_deframe(bytes.fromhex(v["wire"]))
        assert frame.hex() == v["frame"]
        body, mic = frame[:-8], frame[-8:]
        assert hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest()[:8], mic)
        vt, flags, node, seq, t = struct.unpack(">BBHII", body[:12])
        exp = v["expect"]
        assert (vt >> 4, node, seq, t, flags) == (1, exp["node"], exp["seq"], exp["time"], exp["flags"])
        # back is a uvarint; in these vectors it fits one byte
        assert body[12] == exp["back"]
        payload = body[13:]
        if exp["type"] == "alarm":
            assert cbor2.loads(payload) == [{int(k): x for k, x in a.items()} for a in exp["payload"]["alarms"]]
        if exp["type"] in ("status", "hello", "config_ack"):
            assert cbor2.loads(payload) == {int(k): x for k, x in exp["payload"]["map"].items()}
        if exp["type"] == "zone":
            assert struct.unpack(">IBB", payload) == (exp["payload"]["re"], exp["payload"]["level"],
                                                      exp["payload"]["zone"])
        if exp["type"] == "config":
            assert struct.unpack(">I", payload[:4])[0] == exp["payload"]["re"]
            m = cbor2.loads(payload[4:])
            assert m[1] == exp["payload"]["map"]["1"]


def test_cbor_vectors_agree_with_cbor2():
    doc = json.loads((VEC / "cbor.json").read_text())
    for v in doc["valid"]:
        want = vectors_check._from_json(v["json"])
        assert cbor2.loads(bytes.fromhex(v["hex"])) == want
    for v in doc["invalid"]:
        if v["note"] in ("nesting too deep", "duplicate map key", "tag", "indefinite byte string",
                         "trailing byte") or v["note"].startswith("subset:"):
            continue   # limits and subset rules of ours; cbor2 accepts these
        try:
            cbor2.loads(bytes.fromhex(v["hex"]))
        except Exception:
            continue
        raise AssertionError(f"cbor2 accepted {v['note']}")


def test_typical_frame_figures_in_spec():
    doc = json.loads((VEC / "frames.json").read_text())
    typical = next(v for v in doc["valid"] if v["name"] == "readings_three_channels")
    assert len(typical["frame"]) // 2 == 35
    assert len(typical["wire"]) // 2 == 40
    spec = (VEC.parent / "SPEC.md").read_text()
    assert "| typical 3-channel, one-sample READINGS frame | 35 bytes (40 on the UART) |" in spec


def test_receive_vectors_stamp_as_the_gateway_does():
    """contract_frames.json "receive": SPEC §5 rounding and the age-beyond-rx reject, run
    through the gateway's ingest (gateway/radio.py)."""
    from gateway.radio import RadioIngest
    from gateway.records import Count, Reading
    from protocol.framing import wrap
    doc = json.loads((VEC / "contract_frames.json").read_text())
    assert len(doc["receive"]) >= 4
    for v in doc["receive"]:
        ing = RadioIngest({101: bytes.fromhex(doc["key"])})
        ing.feed(wrap(bytes.fromhex(v["frame"])), v["rx"])
        recs = ing.take_group().records
        if "error" in v:
            assert not [r for r in recs if type(r) is Reading], v["name"]
            assert Count("rejected_payload") in recs, v["name"]
        else:
            assert [r.t for r in recs if type(r) is Reading] == v["times"], v["name"]


def test_uplink_vectors_agree_with_the_cddl_check():
    """uplink.json: the valid messages pass gateway/uplink_schema.check and each invalid
    one fails at the path the vector names."""
    from gateway import uplink_schema
    doc = json.loads((VEC / "uplink.json").read_text())
    for v in doc["messages"]:
        try:
            uplink_schema.check(v["kind"], bytes.fromhex(v["hex"]))
            got = None
        except uplink_schema.SchemaError as e:
            got = e.path
        assert got == v.get("path"), v["name"]
    assert sum("path" in v for v in doc["messages"]) >= 12
