"""Radio frames: round trips for every message type, MIC, and hostile input."""
import hashlib
import hmac
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import channels, gwmessages, messages, readings
from protocol import frame as fr
from protocol.mic import MIC_LEN, BadKey, Hmac, ct_equal, hmac_sha256
from protocol.varint import put_uvarint

KEY = bytes(range(1, 33))
SIGNER = Hmac(KEY)


def lookup(node):
    return SIGNER if node == 101 else None


u32 = st.integers(0, 2**32 - 1)
s32 = st.integers(-(2**31), 2**31 - 1)
chans = st.sampled_from([channels.chan_id(k, i) for k in channels.KINDS for i in (0, 3)])


@st.composite
def blocks(draw):
    n = draw(st.integers(1, 12))
    step = draw(st.integers(1, 600)) if n > 1 else 0
    age = draw(st.integers(step * (n - 1), step * (n - 1) + 100_000))
    chan = draw(chans)
    if draw(st.booleans()):
        return readings.Block(chan, age, step, None, fault=draw(st.integers(0, 300)), count=n)
    v0 = draw(st.integers(-(2**20), 2**20))
    vals = [v0]
    for _ in range(n - 1):
        vals.append(vals[-1] + draw(st.integers(-3000, 3000)))
    return readings.Block(chan, age, step, vals)


def test_hmac_matches_cpython_hmac():
    for data in (b"", b"x", bytes(range(256)) * 3):
        assert hmac_sha256(KEY, data) == hmac.new(KEY, data, hashlib.sha256).digest()
    long_key = bytes(range(64))
    assert Hmac(long_key).digest(b"abc") == hmac.new(long_key, b"abc", hashlib.sha256).digest()


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_hmac_of_two_pieces_is_the_hmac_of_their_concatenation(a, b):
    assert SIGNER.digest(a, b) == hmac.new(KEY, a + b, hashlib.sha256).digest()
    assert SIGNER.digest(a, bytearray(b)) == SIGNER.digest(a + b)


def old_encode(signer, mtype, node, seq, time, payload, flags, back):
    """frame.encode as it was before it joined the pieces (a growing bytearray, the MIC
    over all of it, then a copy into bytes): the reference its output must equal."""
    out = bytearray(struct.pack(">BBHII", (fr.VERSION << 4) | mtype, flags, node, seq, time))
    put_uvarint(out, back)
    out.extend(payload)
    out.extend(signer.mic(bytes(out)))
    return bytes(out)


@given(st.sampled_from(fr.UPLINK_TYPES + fr.DOWNLINK_TYPES), st.integers(0, 0xFFFF),
       st.integers(1, 2**32 - 1), u32, st.integers(0, 255), st.data())
def test_encode_gives_the_bytes_of_its_first_form(mtype, node, seq, t, flags, data):
    back = min(seq, data.draw(st.sampled_from((0, 1, 127, 128, 16383, 16384, 2**28)) | u32))
    if mtype in fr.DOWNLINK_TYPES:
        back = 0        # SPEC §2: a downlink carries back 0
    v = bytearray()
    put_uvarint(v, back)
    room = fr.MAX_FRAME - fr.HEADER_FIXED - len(v) - MIC_LEN     # the largest payload
    payload = data.draw(st.binary(max_size=room))
    ref = old_encode(SIGNER, mtype, node, seq, t, payload, flags, back)
    for p in (payload, bytearray(payload)):
        got = fr.encode(SIGNER, mtype, node, seq, t, p, flags, back)
        assert type(got) is bytes and got == ref
    assert fr.decode(ref, lambda n: SIGNER).payload == payload
    with pytest.raises(ValueError, match="split the payload"):
        fr.encode(SIGNER, mtype, node, seq, t, bytes(room + 1), flags, back)


def test_no_default_or_weak_keys():
    for bad in (b"", b"short", bytes(32), b"\x00" * 16, b"k" * 65):
        with pytest.raises(BadKey):
            Hmac(bad)


def test_ct_equal():
    assert ct_equal(b"abc", b"abc")
    assert not ct_equal(b"abc", b"abd")
    assert not ct_equal(b"abc", b"ab")


@given(st.lists(blocks(), min_size=1, max_size=4), st.integers(1, 2**32 - 1), u32,
       st.integers(0, 255))
def test_readings_roundtrip(bs, seq, t, flags):
    payload = readings.encode(bs)
    if len(payload) + 21 + 5 > fr.MAX_FRAME:
        return
    back = seq // 3
    f = fr.encode(SIGNER, fr.READINGS, 101, seq, t, payload, flags, back)
    g = fr.decode(f, lookup)
    assert (g.mtype, g.node, g.seq, g.time, g.flags, g.back) == (fr.READINGS, 101, seq, t, flags, back)
    assert readings.decode(g.payload) == bs


# (event, prev, level) as SPEC §3.1 allows them: trip from 0, change between 1..4, clear to 0
EVENT_LEVELS = ([(1, 0, lv) for lv in range(1, 5)] + [(3, p, 0) for p in range(1, 5)]
                + [(2, p, lv) for p in range(1, 5) for lv in range(1, 5) if p != lv])


@st.composite
def alarm_map(draw):
    ev, prev, lv = draw(st.sampled_from(EVENT_LEVELS))
    return {messages.A_EVENT: ev, messages.A_LEVEL: lv, messages.A_PREV: prev,
            messages.A_CHAN: draw(chans), messages.A_RULE: draw(st.integers(0, 255)),
            messages.A_KIND: draw(st.integers(1, 5)), messages.A_VALUE: draw(s32),
            messages.A_THRESHOLD: draw(s32), messages.A_AGE: draw(st.integers(0, 10**6))}


@given(st.lists(alarm_map(), min_size=1, max_size=4))
def test_alarm_roundtrip(alarms):
    f = fr.encode(SIGNER, fr.ALARM, 101, 9, 0, messages.encode_alarms(alarms))
    assert gwmessages.decode_alarms(fr.decode(f, lookup).payload) == alarms


status_maps = st.fixed_dictionaries({}, optional={
    messages.S_BATTERY_MV: st.integers(0, 20000), messages.S_TEMP_DECIC: st.integers(-400, 850),
    messages.S_FREE_HEAP: u32, messages.S_RESET_CAUSE: st.integers(0, 6), messages.S_LOG_DEPTH: u32,
    messages.S_FW: st.text(min_size=1, max_size=8), messages.S_CONFIG_VERSION: u32})


@given(status_maps)
def test_status_roundtrip(m):
    f = fr.encode(SIGNER, fr.STATUS, 101, 1, 2, messages.encode_map(m))
    assert gwmessages.decode_status(fr.decode(f, lookup).payload) == m


@st.composite
def ack_ranges(draw):
    re = draw(st.integers(1, 2**32 - 1))
    out = []
    hi = re - draw(st.integers(0, min(5, re - 1)))
    for _ in range(draw(st.integers(1, 16))):
        if hi < 1:
            break
        lo = max(1, hi - draw(st.integers(0, 2000)))
        out.append((lo, hi))
        hi = lo - 2 - draw(st.integers(0, 100))
    return re, out


@given(ack_ranges(), u32)
def test_ack_roundtrip(rr, t):
    re, ranges = rr
    f = fr.encode(SIGNER, fr.ACK, 101, 5, t, gwmessages.encode_ack(re, t, ranges))
    assert messages.decode_ack(fr.decode(f, lookup).payload) == (re, t, ranges)


def test_ack_rejects_adjacent_or_unordered_ranges():
    with pytest.raises(messages.PayloadError):
        gwmessages.encode_ack(10, 0, [(5, 10), (3, 4)])   # adjacent: must be merged
    with pytest.raises(messages.PayloadError):
        gwmessages.encode_ack(10, 0, [(5, 11)])           # above re


def test_config_roundtrip_and_validation():
    cfg = {messages.C_VERSION: 3, messages.C_INTERVALS: {1: 60, 3: 600}, messages.C_RULES: [[1, 16, 1, 4, 1, 500, 20, 2, 600]]}
    f = fr.encode(SIGNER, fr.CONFIG, 101, 5, 0, gwmessages.encode_config(77, cfg))
    assert messages.decode_config(fr.decode(f, lookup).payload) == (77, cfg)
    with pytest.raises(messages.PayloadError, match="config version"):
        messages.decode_config(gwmessages.encode_config(77, {2: {}}))


def test_typical_three_channel_frame_is_small():
    bs = [readings.Block(channels.chan_id(1), 5, 0, [4]), readings.Block(channels.chan_id(2), 5, 0, [1234]),
          readings.Block(channels.chan_id(3), 5, 0, [1502])]
    f = fr.encode(SIGNER, fr.READINGS, 101, 123456, 1_780_000_000, readings.encode(bs))
    assert len(f) <= 40


def test_direction_is_enforced():
    ack = fr.encode(SIGNER, fr.ACK, 101, 1, 0, gwmessages.encode_ack(1, 0, [(1, 1)]))
    with pytest.raises(fr.FrameError) as e:
        fr.decode(ack, lookup, fr.UPLINK_TYPES)
    assert e.value.reason == fr.REASON_TYPE


GOOD = fr.encode(SIGNER, fr.READINGS, 101, 77, 1000,
                 readings.encode([readings.Block(channels.chan_id(2), 600, 60, list(range(11)))]), 0, 4)


@settings(max_examples=500)
@given(st.integers(0, len(GOOD) * 8 - 1))
def test_any_single_bit_flip_is_rejected(bit):
    b = bytearray(GOOD)
    b[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(fr.FrameError):
        fr.decode(bytes(b), lookup)


@settings(max_examples=1000)
@given(st.binary(max_size=220))
def test_arbitrary_bytes_never_yield_a_frame(data):
    try:
        fr.decode(data, lookup)
    except fr.FrameError:
        return
    raise AssertionError("random bytes passed the MIC")


@given(st.binary(min_size=fr.MIN_FRAME - MIC_LEN, max_size=150))
def test_forged_mic_without_key_is_rejected(body):
    b = bytearray(body)
    b[0] = 0x11
    b[2], b[3] = 0, 101
    forged = bytes(b) + Hmac(b"\x55" * 32).mic(bytes(b))
    with pytest.raises(fr.FrameError) as e:
        fr.decode(forged, lookup)
    assert e.value.reason == fr.REASON_MIC


@given(st.binary(max_size=120))
def test_payload_decoders_raise_only_documented_errors(data):
    for fn in (readings.decode, gwmessages.decode_alarms, gwmessages.decode_map, messages.decode_ack,
               messages.decode_config):
        try:
            fn(data)
        except ValueError:   # VarintError and PayloadError are ValueErrors
            pass
