"""Regenerate protocol/vectors/*.json from protocol/ (run by hand when SPEC.md changes:
`python -m tools.make_vectors`). tests/protocol/test_vectors.py checks that the committed
files equal what this produces, so an accidental change of the wire format fails CI."""
import json
import struct
from pathlib import Path

from protocol import cbor, channels, framing, gwmessages, messages, readings
from protocol import frame as fr
from protocol.crc16 import crc16
from protocol.mic import Hmac
from protocol.varint import put_uvarint

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
        ("81" * 20 + "00", "nesting too deep"), ("9bffffffffffffffff", "array length 2^64-1"),
        ("81" * 9 + "00", "subset: nesting 9 deep (depth limit 8, SPEC §0)"),
        ("1817", "subset: 23 in a one-byte head"), ("1900ff", "subset: 255 in a two-byte head"),
        ("1a0000ffff", "subset: 65535 in a four-byte head"),
        ("1b00000000ffffffff", "subset: 2^32-1 in an eight-byte head"),
        ("5801ff", "subset: length 1 in a one-byte head"), ("f7", "subset: undefined"),
        ("f820", "subset: simple value 32"), ("a2616101616102", "subset: duplicate text key"),
        ("a201f5f502", "subset: map key true (beside key 1)"), ("a1f93c0001", "subset: float key"))]
    # the deepest nesting a receiver must take: eight arrays around a number
    out.append({"hex": ("81" * 8 + "00"), "json": [[[[[[[[0]]]]]]]]})
    return out, bad


def _alarm(event=1, level=3, prev=0, **kw):
    """An alarm map; a keyword A_<NAME> given _DROP leaves that key out."""
    a = {messages.A_EVENT: event, messages.A_LEVEL: level, messages.A_PREV: 0,
         messages.A_CHAN: DISP, messages.A_RULE: 3, messages.A_KIND: 1, messages.A_VALUE: 1500,
         messages.A_THRESHOLD: 1200, messages.A_AGE: 2}
    a[messages.A_PREV] = prev
    kw = dict(kw)
    if prev is _DROP:
        del a[messages.A_PREV]
    for k, v in kw.items():
        key = getattr(messages, "A_" + k.upper())
        if v is _DROP:
            del a[key]
        else:
            a[key] = v
    return a


_DROP = object()


def _ack_payload(re, pairs):
    """An ACK payload with the given raw (gap, len) pairs, right or wrong."""
    out = bytearray(re.to_bytes(4, "big") + (1_780_000_000).to_bytes(4, "big"))
    for g, n in pairs:
        put_uvarint(out, g)
        put_uvarint(out, n)
    return bytes(out)


def _uv(*ns):
    out = bytearray()
    for n in ns:
        put_uvarint(out, n)
    return bytes(out)


def contract_vectors():
    """One valid and one invalid vector (at least) per decision SPEC.md settles: payload
    tables (§3), readings (§4), ACK ranges (§6.2), header rules (§2), sizes (§1)."""
    s = Hmac(KEY)
    pl = []

    def ok(name, mtype, payload, expect, note=""):
        pl.append({"name": name, "type": mtype, "hex": payload.hex(), "expect": expect, "note": note})

    def bad(name, mtype, payload, note=""):
        pl.append({"name": name, "type": mtype, "hex": payload.hex(), "error": "payload", "note": note})

    def aj(alarms):
        return [{str(k): v for k, v in a.items()} for a in alarms]

    enc = cbor.dumps
    for ev, lv, prev in ((1, 1, 0), (2, 2, 4), (3, 0, 1)):
        a = _alarm(ev, lv, prev)
        ok("alarm_event_%d_%d_to_%d" % (ev, prev, lv), "alarm", enc([a]), aj([a]))
    a = _alarm(kind=5, value=-(2**31), threshold=2**31 - 1, age=_DROP)
    want = dict(a)
    want[messages.A_AGE] = 0
    ok("alarm_kind_5_extremes_no_age", "alarm", enc([a]), aj([want]), "age absent means 0")
    a = _alarm()
    a[40] = "later field"
    ok("alarm_unknown_key_ignored", "alarm", enc([a]), aj([a]))
    for name, kw in (("kind_9", {"kind": 9}), ("kind_0", {"kind": 0}), ("value_float", {"value": 1.5}),
                     ("value_text", {"value": "1500"}), ("value_above_int32", {"value": 2**31}),
                     ("prev_missing", {"prev": _DROP}), ("kind_missing", {"kind": _DROP}),
                     ("value_missing", {"value": _DROP}), ("threshold_missing", {"threshold": _DROP}),
                     ("level_5", {"level": 5}), ("chan_256", {"chan": 256}), ("age_negative", {"age": -1}),
                     ("trip_from_yellow", {"prev": 2}), ("event_4", {"event": 4})):
        bad("alarm_" + name, "alarm", enc([_alarm(**kw)]))
    bad("alarm_change_to_same_level", "alarm", enc([_alarm(2, 3, 3)]))
    bad("alarm_clear_to_blue", "alarm", enc([_alarm(3, 1, 2)]))
    a = _alarm()
    a["x"] = 1
    bad("alarm_text_key", "alarm", enc([a]), "keys are unsigned integers (SPEC §0)")
    a = _alarm()
    a[-1] = 1
    bad("alarm_negative_key", "alarm", enc([a]))
    bad("alarm_empty_array", "alarm", enc([]))
    bad("alarm_non_shortest_head", "alarm", bytes.fromhex("81a9") + enc(_alarm())[1:].replace(
        b"\x01\x01", b"\x01\x18\x01", 1), "event 1 written as 0x1801")

    st = {messages.S_BATTERY_MV: 65535, messages.S_TEMP_DECIC: -32768, messages.S_FW: "x" * 32,
          messages.S_LEVEL: 4, messages.S_MODE: 2, messages.S_FREE_HEAP: 2**32 - 1}
    ok("status_extremes", "status", enc(st), {str(k): v for k, v in st.items()})
    for name, m in (("battery_negative", {messages.S_BATTERY_MV: -1}),
                    ("battery_65536", {messages.S_BATTERY_MV: 65536}),
                    ("temp_float", {messages.S_TEMP_DECIC: 21.5}),
                    ("fw_33_bytes", {messages.S_FW: "x" * 33}), ("fw_empty", {messages.S_FW: ""}),
                    ("mode_3", {messages.S_MODE: 3}), ("level_5", {messages.S_LEVEL: 5}),
                    ("heap_above_u32", {messages.S_FREE_HEAP: 2**32}),
                    ("null_value", {messages.S_LOG_DEPTH: None}), ("bool_value", {messages.S_LOG_DEPTH: True})):
        bad("status_" + name, "status", enc(m))
    bad("status_not_a_map", "status", enc([1, 2]))
    ok("status_empty_map", "status", enc({}), {})
    h = {messages.H_CONFIG_VERSION: 4, messages.H_CHANNELS: [0, 255]}
    ok("hello_minimal_no_versions", "hello", enc(h), {str(k): v for k, v in h.items()},
       "every HELLO key optional; no key 7 means [1]")
    bad("hello_versions_without_1", "hello", enc({messages.H_VERSIONS: [2]}))
    bad("hello_channel_256", "hello", enc({messages.H_CHANNELS: [256]}))
    ok("config_ack_stale_version_0", "config_ack", enc({1: 0, 2: 2}), {"1": 0, "2": 2})
    bad("config_ack_result_missing", "config_ack", enc({1: 5}))
    bad("config_ack_result_3", "config_ack", enc({1: 5, 2: 3}))

    w = readings.Block(DISP, 10, 1, [2**31 - 1, -(2**31), 2**31 - 1])
    ok("readings_wrapping_delta", "readings", readings.encode([w]), blocks_json([w]),
       "deltas wrap modulo 2^32 (SPEC §4)")
    f3 = readings.Block(WATER, 20, 10, None, fault=0x0207, count=3)
    ok("readings_fault_run_three", "readings", readings.encode([f3, readings.Block(DISP, 0, 0, [5])]),
       blocks_json([f3, readings.Block(DISP, 0, 0, [5])]), "the value after the fault run has idx 3")
    bad("readings_step_0_two_samples", "readings", bytes([DISP]) + _uv(2 << 1, 10, 0, 0, 0))
    bad("readings_fault_code_65536", "readings", bytes([DISP]) + _uv(1 << 1 | 1, 0, 0x10000))
    bad("readings_after_send_time", "readings", bytes([DISP]) + _uv(3 << 1, 10, 6, 0, 0, 0))
    bad("readings_empty", "readings", b"")
    bad("readings_count_0", "readings", bytes([DISP]) + _uv(0, 5, 0))

    ok("config_version_unix_time", "config", gwmessages.encode_config(40, {messages.C_VERSION: 1_780_000_000}),
       [40, {"1": 1_780_000_000}], "any larger version, not only +1 (SPEC §9.5)")
    bad("config_version_0", "config", gwmessages.encode_config(40, {messages.C_VERSION: 0}))
    bad("config_text_key", "config", gwmessages.encode_config(40, {messages.C_VERSION: 5, "x": 1}))
    bad("config_version_true", "config", gwmessages.encode_config(40, {messages.C_VERSION: True}))
    bad("config_version_missing", "config", gwmessages.encode_config(40, {messages.C_INTERVALS: {1: 60}}))
    ok("ack_no_range", "ack", _ack_payload(7, []), [7, 1_780_000_000, []],
       "the floor passed re: nothing to delete")
    ok("ack_32_ranges", "ack", _ack_payload(1000, [(0, 1)] * 32),
       [1000, 1_780_000_000, [[1000 - 2 * i, 1000 - 2 * i] for i in range(32)]])
    bad("ack_33_ranges", "ack", _ack_payload(1000, [(0, 1)] * 33))
    bad("ack_len_0", "ack", _ack_payload(7, [(0, 0)]))
    bad("ack_range_below_seq_1", "ack", _ack_payload(7, [(0, 8)]), "7..0 reaches seq 0")
    bad("ack_short", "ack", bytes(7))

    frames = []

    def frame(name, mtype, node, seq, payload, back=0, error=None):
        raw = bytearray(fr.encode(s, mtype, node, max(seq, 1), 5, payload, 0, max(back, 0)))
        raw[4:8] = seq.to_bytes(4, "big")
        raw[-8:] = s.mic(bytes(raw[:-8]))
        frames.append({"name": name, "frame": bytes(raw).hex(), "error": error})

    rp = readings.encode([readings.Block(RAIN, 0, 0, [1])])
    frame("uplink_seq_0", fr.READINGS, 101, 0, rp, error="header")
    frame("uplink_seq_1", fr.READINGS, 101, 1, rp)
    frame("downlink_back_1", fr.ACK, 101, 9, _ack_payload(8, [(0, 1)]), back=1, error="header")
    frame("downlink_back_0", fr.ACK, 101, 9, _ack_payload(8, [(0, 1)]))
    frame("node_0", fr.READINGS, 0, 1, rp, error="unknown_node")
    frame("node_65535", fr.READINGS, 65535, 1, rp, error="unknown_node")
    # §7: the first failing check names the reason
    seq0 = bytearray(bytes.fromhex(frames[0]["frame"]))
    seq0[-1] ^= 1
    frames.append({"name": "seq_0_and_bad_mic", "frame": bytes(seq0).hex(), "error": "mic",
                   "note": "the MIC is checked before the header"})
    v2 = bytearray(bytes.fromhex(frames[0]["frame"]))
    v2[0] = 0x2F
    frames.append({"name": "version_2_and_type_15", "frame": bytes(v2).hex(), "error": "version"})
    frames.append({"name": "short_and_version_2", "frame": "21" + "00" * 19, "error": "short"})

    # §5: the gateway stamps sample k at round(rx) - age + k*step, halves up; an age beyond
    # the receive time is a payload reject
    receive = []
    for name, rx, blk in (("round_down", 1_780_000_000.49, readings.Block(DISP, 120, 60, [1, 2, 3])),
                          ("round_half_up", 1_780_000_000.5, readings.Block(DISP, 0, 0, [7])),
                          ("age_equals_rx", 100.0, readings.Block(DISP, 100, 0, [7])),
                          ("age_beyond_rx", 100.0, readings.Block(DISP, 101, 0, [7]))):
        f = fr.encode(s, fr.READINGS, 101, 5, 5, readings.encode([blk]), fr.F_CLOCK_SYNCED)
        t = int(rx + 0.5)
        v = {"name": name, "frame": f.hex(), "rx": rx}
        if blk.age > t:
            v["error"] = "payload"
        else:
            v["times"] = blk.times(t)
        receive.append(v)

    big = fr.encode(s, fr.READINGS, 101, 1, 5, readings.encode(
        [readings.Block(DISP, 200, 1, list(range(1, 164)))]))
    big = fr.encode(s, fr.READINGS, 101, 1, 5, readings.encode(
        [readings.Block(DISP, 200, 1, list(range(1, 1 + 163 + fr.MAX_FRAME - len(big))))]))
    assert len(big) == fr.MAX_FRAME
    over = bytes(big) + b"\x01"
    c = crc16(over)
    over_wire = b"\x00" + bytes(framing.cobs_encode(over + bytes([c >> 8, c & 0xFF]))) + b"\x00"
    streams = [
        {"name": "largest_frame", "stream": framing.wrap(big).hex(), "items": [big.hex()],
         "note": "192-byte frame: a 195-byte piece, 197 bytes on the line"},
        {"name": "one_byte_more", "stream": (over_wire + framing.wrap(big)).hex(),
         "items": ["too_long", big.hex()],
         "note": "a 193-byte frame: its 196-byte piece is too_long before COBS decoding"},
        {"name": "long_piece_bad_cobs", "stream": ("00" + "05" * 196 + "00"),
         "items": ["too_long"], "note": "too_long is checked before COBS"},
        {"name": "piece_195_bad_cobs", "stream": ("00" + "c8" + "01" * 194 + "00"),
         "items": ["cobs"]},
    ]
    # two files: the MicroPython tier parses one at a time within its heap
    return {"payloads": pl}, {"key": KEY.hex(), "nodes": [101], "frames": frames,
                              "streams": streams, "receive": receive}


def uplink_vectors():
    """Uplink messages (SPEC §9, protocol/uplink.cddl): valid ones, and invalid ones with
    the path of the part that fails (gateway/uplink_schema.py names the same path)."""
    import cbor2

    from gateway import batcher
    from gateway.records import Alarm, NodeStatus
    t = 1_780_000_000
    rows = [(1, 101, 5, 0, WATER, t - 60, 1502, None, 0), (2, 101, 5, 1, WATER, t, 1503, None, 0),
            (3, 101, 5, 2, RAIN, t, None, 0x0207, 1), (4, 9001, 3, 1024, DISP, t, -2**31, None, 2)]
    counters = {1: 0, 2: 0, 3: 2, 4: 1, 5: 0}
    # a Modbus device's two points over four 1 s polls, one a fault: one group, stride 1024
    polls = [(10 + 2 * k + i, 9002, 11, i * 1024 + 40 + k, (WATER, DISP)[i], t - 4 + k,
              None if (i, k) == (0, 2) else (1500 + k * (k - 1), 215)[i],
              0x0101 if (i, k) == (0, 2) else None, 0) for k in range(4) for i in range(2)]
    statuses = [NodeStatus(101, t, 3300, None, -35)]
    good = batcher.encode_batch(7, t + 5, rows + polls, statuses, counters)
    v1 = batcher.encode_batch_v1("lushi", "gw1", 7, t + 5, rows, statuses, counters)
    valid = [("batch", good), ("batch", batcher.encode_batch(8, t + 6, rows[:2])),
             ("batch", batcher.encode_batch(9, t, [], (), counters)), ("batch", v1),
             ("alarm", batcher.encode_alarm("lushi", "gw1", Alarm(101, 6, 0, 1, 4, 0, DISP, 3, 5, 1500,
                                                                   1800, t, t * 1000 + 250))),
             ("status", batcher.encode_status("lushi", "gw1", 1, t, "0.1.0", {101: t})),
             ("cmd_result", cbor2.dumps({0: 1, 1: "lushi", 2: "gw1", 3: "emergency", 4: None,
                                         5: "queued", 9: t, 10: [101]}))]
    out = [{"name": "valid_%s_%d" % (k, i), "kind": k, "hex": p.hex()} for i, (k, p) in enumerate(valid)]
    # what a decoder of the valid schema-2 batch must get (SPEC §9.2): every reading
    out[0]["readings"] = [list(r) for r in sorted(batcher.decode_batch_readings(good)[1])]

    def bad(name, edit, path, kind="batch", base=good):
        m = cbor2.loads(base)
        edit(m)
        out.append({"name": name, "kind": kind, "hex": cbor2.dumps(m).hex(), "path": path})

    # schema 2 (good): node 101 groups [5, 0, -65, 60, 0, 0, [WATER, 1502, 1]],
    # [5, 2, -5, 0, 1, 0, [RAIN, [0x207]]]; node 9001 [3, 1024, -5, 0, 2, 0, [DISP, -2**31]];
    # node 9002 [11, 40, -9, 1, 0, 1024, [WATER, 1500, 0, [0x101], 6], [DISP, 215, 0, 0, 0]]
    def g(m, n, j):
        return m[5][n][1][j]
    bad("node_0", lambda m: m[5][0].__setitem__(0, 0), "/5/0")
    bad("chan_256", lambda m: g(m, 0, 0)[6].__setitem__(0, 256), "/5/0/1/0/6")
    bad("counter_missing", lambda m: m[7].pop(4), "/7")
    bad("counter_text_key", lambda m: m[7].__setitem__("x", 1), "/7")
    bad("sample_above_int32", lambda m: g(m, 0, 0)[6].__setitem__(1, 2**31), "/5/0/1/0/6/1")
    bad("delta_leaves_int32", lambda m: g(m, 2, 0)[6].__setitem__(4, 2**31), "/5/2/1/0/6/4")
    bad("delta_beyond_range", lambda m: g(m, 0, 0)[6].__setitem__(2, 2**32), "/5/0/1/0/6/2")
    bad("fault_negative", lambda m: g(m, 0, 1)[6].__setitem__(1, [-1]), "/5/0/1/1/6/1")
    bad("two_values_step_0", lambda m: g(m, 0, 0).__setitem__(3, 0), "/5/0/1/0")
    bad("one_value_step_60", lambda m: g(m, 0, 1).__setitem__(3, 60), "/5/0/1/1")
    bad("chan_run_counts_differ", lambda m: g(m, 2, 0)[7].pop(), "/5/2/1/0")
    bad("stride_below_count", lambda m: g(m, 2, 0).__setitem__(5, 3), "/5/2/1/0")
    bad("stride_0_two_chan_runs", lambda m: g(m, 2, 0).__setitem__(5, 0), "/5/2/1/0")
    bad("stride_with_one_chan_run", lambda m: g(m, 0, 0).__setitem__(5, 2), "/5/0/1/0")
    bad("groups_out_of_order", lambda m: m[5][0][1].reverse(), "/5/0/1/1")
    bad("key_twice", lambda m: m[5][0][1].insert(1, [5, 1, 0, 0, 0, 0, [WATER, 1]]), "/5/0/1/1")
    bad("time_before_1970", lambda m: g(m, 0, 0).__setitem__(2, -(t + 6)), "/5/0/1/0")
    bad("flags_4", lambda m: g(m, 0, 0).__setitem__(4, 4), "/5/0/1/0")
    bad("site_key_in_schema_2", lambda m: m.__setitem__(1, "lushi"), "/")
    bad("schema_3", lambda m: m.__setitem__(0, 3), "/")
    bad("node_twice", lambda m: m[5].append(m[5][0]), "/5/3/0")
    bad("battery_negative", lambda m: m[6][0].__setitem__(3, -1), "/6/0")
    bad("seq_0", lambda m: m.__setitem__(3, 0), "/")
    # schema 1, still read
    bad("v1_counters_missing", lambda m: m.pop(7), "/", base=v1)
    bad("v1_chan_256", lambda m: m[5][0][1][0].__setitem__(0, 256), "/5/0/1/0", base=v1)
    bad("v1_two_values_step_0", lambda m: m[5][0][1][1][1][0].__setitem__(3, 0), "/5/0/1/1/1/0",
        base=v1)
    bad("alarm_rule_kind_9", lambda m: m.__setitem__(10, 9), "/", "alarm", valid[4][1])
    out.append({"name": "indefinite_length_map", "kind": "batch", "hex": "bf" + good[1:].hex() + "ff",
                "path": "/"})
    return {"messages": out}


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
    payloads, cframes = contract_vectors()
    return {
        "frames.json": {"key": KEY.hex(), "nodes": [101, 7], "valid": good, "invalid": bad},
        "framing.json": {"key": KEY.hex(), "streams": framing_vectors()},
        "cbor.json": {"valid": cv, "invalid": cbad},
        "contract_payloads.json": payloads,
        "contract_frames.json": cframes,
        "uplink.json": uplink_vectors(),
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
