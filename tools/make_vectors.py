"""Regenerate protocol/vectors/*.json from protocol/ (run by hand when SPEC.md changes:
`python -m tools.make_vectors`). tests/protocol/test_vectors.py checks that the committed
files equal what this produces, so an accidental change of the wire format fails CI."""
import json
import struct
from pathlib import Path

from protocol import cbor, channels, framing, gwmessages, messages, readings
from protocol import frame as fr
from protocol.mic import Hmac

OUT = Path(__file__).resolve().parent.parent / "protocol" / "vectors"
KEY = bytes(range(1, 33))           # test key only: 0x01..0x20
OTHER_KEY = bytes(range(101, 133))
RAIN = channels.chan_id(1)
DISP = channels.chan_id(2)
WATER = channels.chan_id(3)


def blocks_json(blocks):
    out = []
    for b in blocks:
        if b.values is None:
            out.append({"chan": b.chan, "age": b.age, "step": b.step, "count": b.count, "fault": b.fault})
        else:
            out.append({"chan": b.chan, "age": b.age, "step": b.step, "values": b.values})
    return out


def frames():
    s = Hmac(KEY)
    vs = []

    def add(name, mtype, node, seq, t, payload, expect_payload, flags=0, back=0, note=""):
        f = fr.encode(s, mtype, node, seq, t, payload, flags, back)
        vs.append({"name": name, "note": note, "frame": f.hex(), "wire": framing.wrap(f).hex(),
                   "expect": {"type": fr.TYPE_NAMES[mtype], "node": node, "seq": seq, "time": t,
                              "back": back, "flags": flags, "payload": expect_payload}})
        return f

    three = [readings.Block(RAIN, 5, 0, [4]), readings.Block(DISP, 5, 0, [1234]),
             readings.Block(WATER, 5, 0, [1502])]
    add("readings_three_channels", fr.READINGS, 101, 1, 1_780_000_000, readings.encode(three),
        {"blocks": blocks_json(three)}, fr.F_CLOCK_SYNCED,
        note="typical 3-channel frame, one sample each, clock synced")
    ten = [readings.Block(RAIN, 570, 60, [0, 0, 2, 6, 12, 20, 18, 9, 3, 0]),
           readings.Block(DISP, 570, 60, [1234, 1234, 1235, 1235, 1236, 1238, 1240, 1241, 1241, 1242]),
           readings.Block(WATER, 570, 60, [1502, 1503, 1505, 1510, 1521, 1540, 1566, 1590, 1601, 1603])]
    add("readings_ten_minutes", fr.READINGS, 101, 2, 3600, readings.encode(ten),
        {"blocks": blocks_json(ten)}, back=1,
        note="10 one-minute samples of 3 channels; node clock not synced (seconds since boot); one older frame outstanding")
    mixed = [readings.Block(DISP, 240, 60, [-5, -3, 0]),
             readings.Block(WATER, 240, 60, None, fault=8, count=5),
             readings.Block(DISP, 60, 10, [2, 4, 9, 15, 22, 30, 39])]
    add("readings_fault_and_interval_change", fr.READINGS, 7, 40_000, 1_780_000_600,
        readings.encode(mixed), {"blocks": blocks_json(mixed)}, fr.F_CLOCK_SYNCED | fr.F_ALARM_ACTIVE,
        note="broken 4-20 mA loop as a fault run; displacement switches to a 10 s interval")
    alarm = [{messages.A_EVENT: 1, messages.A_LEVEL: 4, messages.A_PREV: 0, messages.A_CHAN: DISP,
              messages.A_RULE: 3, messages.A_KIND: 4, messages.A_VALUE: 1500, messages.A_THRESHOLD: 1800,
              messages.A_AGE: 0}]
    add("alarm_red_inverse_velocity", fr.ALARM, 101, 3, 1_780_003_600, messages.encode_alarms(alarm),
        {"alarms": [{str(k): v for k, v in a.items()} for a in alarm]},
        fr.F_CLOCK_SYNCED | fr.F_ALARM_ACTIVE | fr.F_EMERGENCY, back=2,
        note="red: predicted failure in 1500 s, below the 1800 s lead threshold")
    status = {messages.S_BATTERY_MV: 3312, messages.S_SUPPLY_MV: 5120, messages.S_TEMP_DECIC: -35,
              messages.S_FREE_HEAP: 51200, messages.S_RESET_CAUSE: 1, messages.S_LOG_DEPTH: 12,
              messages.S_FW: "0.1.0", messages.S_CONFIG_VERSION: 4}
    add("status", fr.STATUS, 101, 4, 1_780_003_700, messages.encode_map(status),
        {"map": {str(k): v for k, v in status.items()}}, fr.F_CLOCK_SYNCED)
    hello = {messages.H_FW: "0.1.0", messages.H_CONFIG_VERSION: 4, messages.H_RESET_CAUSE: 3,
             messages.H_BOOT_COUNT: 17, messages.H_CHANNELS: [RAIN, DISP, WATER],
             messages.H_BOARD: "esp32_devkitc", messages.H_VERSIONS: [1]}
    add("hello_after_watchdog", fr.HELLO, 101, 33, 12, messages.encode_map(hello),
        {"map": {str(k): v for k, v in hello.items()}})
    ack = gwmessages.encode_ack(40, 1_780_003_710, [(35, 40), (20, 30)])
    add("ack_cumulative_and_selective", fr.ACK, 101, 9, 1_780_003_710, ack,
        {"re": 40, "gw_time": 1_780_003_710, "ranges": [[35, 40], [20, 30]]}, fr.F_PENDING,
        note="seqs 20..30 and 35..40 committed; 31..34 missing; a CONFIG follows")
    cfg = {messages.C_VERSION: 5, messages.C_INTERVALS: {1: 60, 2: 10, 3: 600, 4: 3600},
           messages.C_EMERGENCY_S: 7200}
    add("config_emergency", fr.CONFIG, 101, 10, 1_780_003_711, gwmessages.encode_config(40, cfg),
        {"re": 40, "map": {str(k): ({str(a): b for a, b in v.items()} if isinstance(v, dict) else v)
                           for k, v in cfg.items()}})
    cack = {messages.K_VERSION: 5, messages.K_RESULT: 0, messages.K_RE: 10}
    add("config_ack", fr.CONFIG_ACK, 101, 41, 1_780_003_712, messages.encode_map(cack),
        {"map": {str(k): v for k, v in cack.items()}}, fr.F_CLOCK_SYNCED)

    add("zone_red", fr.ZONE, 101, 11, 1_780_003_713, struct.pack(">IBB", 41, 4, 2),
        {"re": 41, "level": 4, "zone": 2},
        note="zone 2 is at red: sound the siren (answers uplink seq 41; SPEC 3.5)")

    good = bytes.fromhex(vs[0]["frame"])
    bad = []

    def flip(i, bit=0):
        b = bytearray(good)
        b[i] ^= 1 << bit
        return bytes(b)

    bad.append({"name": "mic_flipped_payload_bit", "frame": flip(14).hex(), "error": "mic"})
    bad.append({"name": "mic_flipped_seq_bit", "frame": flip(7).hex(), "error": "mic"})
    bad.append({"name": "mic_flipped_mic_bit", "frame": flip(len(good) - 1, 7).hex(), "error": "mic"})
    bad.append({"name": "wrong_key", "frame": fr.encode(Hmac(OTHER_KEY), fr.READINGS, 101, 1, 5,
                                                        readings.encode(three)).hex(), "error": "mic"})
    bad.append({"name": "unknown_node", "frame": fr.encode(s, fr.READINGS, 999, 1, 5,
                                                           readings.encode(three)).hex(),
                "error": "unknown_node", "note": "receivers know only node 101 and 7"})
    bad.append({"name": "truncated", "frame": good[:20].hex(), "error": "short"})
    bad.append({"name": "oversize", "frame": (good + bytes(200)).hex(), "error": "long"})
    v2 = bytearray(good)
    v2[0] = (2 << 4) | 1
    bad.append({"name": "version_2", "frame": bytes(v2).hex(), "error": "version"})
    t15 = bytearray(good)
    t15[0] = (1 << 4) | 15
    bad.append({"name": "type_reserved", "frame": bytes(t15).hex(), "error": "type"})
    bad.append({"name": "back_exceeds_seq", "frame": fr.encode(s, fr.READINGS, 101, 1, 5,
                readings.encode(three)).hex()[:24] + "05" + fr.encode(s, fr.READINGS, 101, 1, 5,
                readings.encode(three)).hex()[26:], "error": "mic",
                "note": "header edited after signing: the MIC catches it before the header check"})
    unsigned = bytearray(fr.encode(s, fr.READINGS, 101, 1, 5, readings.encode(three)))
    unsigned[12] = 0x05
    unsigned[-8:] = s.mic(bytes(unsigned[:-8]))
    bad.append({"name": "back_exceeds_seq_signed", "frame": bytes(unsigned).hex(), "error": "header"})
    return vs, bad


def framing_vectors():
    s = Hmac(KEY)
    f1 = fr.encode(s, fr.READINGS, 101, 1, 5, readings.encode([readings.Block(RAIN, 0, 0, [0])]))
    f2 = fr.encode(s, fr.STATUS, 101, 2, 6, messages.encode_map({1: 3300}))
    w1, w2 = framing.wrap(f1), framing.wrap(f2)
    corrupt = bytearray(w1)
    corrupt[5] ^= 0x40
    return [
        {"name": "two_frames_back_to_back", "stream": (w1 + w2).hex(), "items": [f1.hex(), f2.hex()]},
        {"name": "garbage_before", "stream": (b"\x13\x37hello" + w1).hex(), "items": ["cobs", f1.hex()]},
        {"name": "lost_byte_mid_frame", "stream": (w1[:9] + w1[10:] + w2).hex(), "items": ["crc", f2.hex()]},
        {"name": "line_noise_bit", "stream": (bytes(corrupt) + w2).hex(), "items": ["crc", f2.hex()]},
        {"name": "runaway_garbage", "stream": (b"\x01" * 400 + w2).hex(), "items": ["too_long", f2.hex()]},
        {"name": "only_zeros", "stream": (b"\x00" * 10).hex(), "items": []},
        {"name": "tiny_piece", "stream": "0002010000", "items": ["too_short"]},
    ]


def cbor_vectors():
    vals = [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1, -1, -24, -25, -256, -257,
            -2**63, b"", b"\x00\xff", "", "warning", "红色预警", [], [1, [2, 3]], {}, {1: "a", 2: [0, -1]},
            True, False, None, 1.5, -0.0]
    out = [{"hex": cbor.dumps(v).hex(), "json": _j(v)} for v in vals]
    # encodings we do not produce but must read (from other encoders): half and single floats
    out.append({"hex": "f93e00", "json": 1.5, "decode_only": True})
    out.append({"hex": "fa47c35000", "json": 100000.0, "decode_only": True})
    bad = [{"hex": h, "error": "CborError", "note": n} for h, n in (
        ("", "empty"), ("18", "truncated uint8"), ("5f4101ff", "indefinite byte string"),
        ("c1", "tag"), ("a20101" + "01" + "02", "duplicate map key"), ("62c328", "invalid UTF-8"),
        ("8301", "array shorter than declared"), ("0001", "trailing byte"),
        ("81" * 20 + "00", "nesting too deep"), ("9bffffffffffffffff", "array length 2^64-1"))]
    return out, bad


def _j(v):
    if isinstance(v, bytes):
        return {"bytes": v.hex()}
    if isinstance(v, list):
        return [_j(x) for x in v]
    if isinstance(v, dict):
        return {"map": [[_j(k), _j(x)] for k, x in v.items()]}
    return v


def build():
    good, bad = frames()
    cv, cbad = cbor_vectors()
    return {
        "frames.json": {"key": KEY.hex(), "nodes": [101, 7], "valid": good, "invalid": bad},
        "framing.json": {"key": KEY.hex(), "streams": framing_vectors()},
        "cbor.json": {"valid": cv, "invalid": cbad},
    }


def render(obj):
    return json.dumps(obj, indent=1, ensure_ascii=False) + "\n"


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, obj in build().items():
        (OUT / name).write_text(render(obj), encoding="utf-8")
        print("wrote", OUT / name)


if __name__ == "__main__":
    main()
