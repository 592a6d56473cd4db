"""Serial framing: COBS + CRC16 resynchronises after garbage and never passes a bad frame."""
import binascii

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import framing
from protocol.crc16 import crc16

frames = st.binary(min_size=1, max_size=framing.MAX_FRAME)


def test_crc16_check_value_and_cpython_agree():
    assert crc16(b"123456789") == 0x29B1


@given(st.binary(max_size=300))
def test_crc16_matches_binascii(data):
    assert crc16(data) == binascii.crc_hqx(data, 0xFFFF)


@given(st.binary(max_size=600))
def test_cobs_roundtrip_and_no_zero(data):
    enc = framing.cobs_encode(data)
    assert 0 not in enc
    assert len(enc) <= len(data) + len(data) // 254 + 1
    assert framing.cobs_decode(enc) == data


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=framing.MAX_FRAME),
                 st.lists(st.sampled_from((0, 1, 255)), max_size=framing.MAX_FRAME).map(bytes)))
def test_wrap_gives_the_bytes_of_its_first_form(f):
    # wrap() encodes COBS in place and hands back that buffer (a bytearray); its first
    # form was bytes: 0x00 | cobs_encode(frame | CRC) | 0x00
    c = crc16(f)
    ref = b"\x00" + bytes(framing.cobs_encode(f + bytes((c >> 8, c & 0xFF)))) + b"\x00"
    for g in (f, bytearray(f)):
        w = framing.wrap(g)
        assert type(w) is bytearray and w == ref


def test_wrap_edges():
    for f in (b"", bytes(framing.MAX_FRAME), b"\x01" * framing.MAX_FRAME, b"\x00\x01"):
        test_wrap_gives_the_bytes_of_its_first_form.hypothesis.inner_test(f)


@given(st.lists(frames, min_size=1, max_size=5), st.integers(1, 17))
def test_stream_in_any_chunking_gives_the_frames(fs, chunk):
    stream = b"".join(framing.wrap(f) for f in fs)
    d = framing.Deframer()
    out = []
    for i in range(0, len(stream), chunk):
        out += d.feed(stream[i:i + chunk])
    assert out == fs


def test_wire_size_limit():
    w = framing.wrap(b"\x01" * framing.MAX_FRAME)
    assert len(w) <= framing.MAX_WIRE <= 200
    try:
        framing.wrap(b"\x01" * (framing.MAX_FRAME + 1))
    except ValueError as e:
        assert "MAX_FRAME" in str(e)
    else:
        raise AssertionError("oversized frame was wrapped")


@given(st.binary(max_size=400), frames)
def test_resync_after_garbage(garbage, f):
    d = framing.Deframer()
    items = d.feed(garbage + framing.wrap(f))
    assert items[-1] == f
    for it in items[:-1]:
        assert isinstance(it, (str, bytes))


@settings(max_examples=300)
@given(frames, st.data())
def test_single_corruption_never_yields_a_different_frame(f, data):
    w = bytearray(framing.wrap(f))
    i = data.draw(st.integers(1, len(w) - 2))
    w[i] ^= data.draw(st.integers(1, 255))
    items = framing.Deframer().feed(bytes(w))
    # the corrupted frame is reported or (if the damage made a zero) split into
    # pieces; no piece ever comes out as a frame other than the original
    for it in items:
        if isinstance(it, bytes):
            assert it == f


@given(frames, st.data())
def test_lost_byte_loses_one_frame_only(f, data):
    w = framing.wrap(f)
    i = data.draw(st.integers(1, len(w) - 2))
    stream = w[:i] + w[i + 1:] + framing.wrap(f)
    items = framing.Deframer().feed(stream)
    assert items[-1] == f
    assert items.count(f) == 1


def test_runaway_garbage_is_bounded_and_reported_once():
    d = framing.Deframer()
    assert d.feed(b"\x07" * 10_000) == []
    assert len(d._buf) < 256
    assert d.feed(b"\x00") == [framing.TOO_LONG]
