"""Register decoding against struct.pack, scaling to channel integers, read planning."""
import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import modbus_decode as mdec
from gateway.config import Point
from protocol import channels

WATER = channels.chan_id(3, 0)       # water_level.0, mm
TEMP = channels.chan_id(7, 1)        # temperature.1, 0.1 degC

FORMATS = {"u16": ">H", "i16": ">h", "u32": ">I", "i32": ">i", "f32": ">f"}
RANGES = {"u16": (0, 0xFFFF), "i16": (-0x8000, 0x7FFF), "u32": (0, 0xFFFFFFFF),
          "i32": (-0x80000000, 0x7FFFFFFF)}


def wire_registers(ptype, value, byte_order, word_order):
    """What a device with that layout puts in its registers, built straight from the
    big-endian bytes struct.pack gives (independent of mdec.encode_raw)."""
    b = struct.pack(FORMATS[ptype], value)                   # A B [C D], most significant first
    pairs = [b[i:i + 2] for i in range(0, len(b), 2)]         # [AB, CD]
    if word_order == "little":
        pairs.reverse()                                       # CD AB
    if byte_order == "little":
        pairs = [p[::-1] for p in pairs]                      # BA / DC inside each register
    return [int.from_bytes(p, "big") for p in pairs]


def typed_values():
    ints = [st.tuples(st.just(t), st.integers(*RANGES[t])) for t in RANGES]
    floats = st.tuples(st.just("f32"), st.floats(width=32, allow_nan=False))
    return st.one_of(*ints, floats)


orders = st.sampled_from(["big", "little"])


@given(typed_values(), orders, orders)
def test_decode_matches_struct_pack_for_every_type_and_order(tv, bo, wo):
    ptype, value = tv
    regs = wire_registers(ptype, value, bo, wo)
    assert all(0 <= r <= 0xFFFF for r in regs)
    got = mdec.decode_raw(ptype, regs, bo, wo)
    assert got == value or (math.isnan(got) and math.isnan(value))
    assert mdec.encode_raw(ptype, value, bo, wo) == regs


def test_known_layouts_of_one_float():
    # 3.5 = 0x40600000: ABCD, CDAB, BADC, DCBA as device manuals print them
    assert mdec.decode_raw("f32", [0x4060, 0x0000], "big", "big") == 3.5
    assert mdec.decode_raw("f32", [0x0000, 0x4060], "big", "little") == 3.5
    assert mdec.decode_raw("f32", [0x6040, 0x0000], "little", "big") == 3.5
    assert mdec.decode_raw("f32", [0x0000, 0x6040], "little", "little") == 3.5
    assert mdec.decode_raw("i16", [0xFFFE]) == -2
    assert mdec.decode_raw("u16", [0xFFFE]) == 0xFFFE


def test_wrong_register_count_is_an_error():
    with pytest.raises(ValueError, match="f32 needs 2 register"):
        mdec.decode_raw("f32", [1])


def point(**kw):
    base = dict(chan=WATER, chan_name="water_level.0", table="holding", address=0, type="i16")
    base.update(kw)
    return Point(**base)


def test_scale_and_offset_give_the_channel_scaled_integer():
    p = point(scale=0.001, offset=0.25)                  # raw mm -> m, plus a datum offset
    assert mdec.decode_point(p, [1234], channels.from_units) == (1484, None)   # 1.484 m
    t = point(chan=TEMP, chan_name="temperature.1", type="f32")
    regs = mdec.encode_raw("f32", -12.25)
    # -122.5 tenths rounds half away from zero, as protocol/channels.py does
    assert mdec.decode_point(t, regs, channels.from_units) == (-123, None)


def test_non_finite_and_out_of_range_values_are_faults_not_readings():
    t = point(type="f32")
    nan = mdec.encode_raw("f32", float("nan"))
    inf = mdec.encode_raw("f32", float("inf"))
    assert mdec.decode_point(t, nan, channels.from_units) == (None, mdec.FAULT_NOT_FINITE)
    assert mdec.decode_point(t, inf, channels.from_units) == (None, mdec.FAULT_NOT_FINITE)
    big = point(type="u32", scale=1000.0)
    assert mdec.decode_point(big, [0xFFFF, 0xFFFF], channels.from_units) == \
        (None, mdec.FAULT_OUT_OF_RANGE)


def test_bits_decode_to_zero_or_one():
    c = point(table="coil", type="bool", chan=channels.chan_id(6, 0), chan_name="supply.0")
    assert mdec.decode_point(c, [True], channels.from_units) == (1000, None)   # 1 V in mV
    assert mdec.decode_point(c, [False], channels.from_units) == (0, None)


def test_plan_merges_only_adjacent_points_of_one_table():
    pts = [point(address=4, type="i16"), point(address=5, type="f32"),
           point(address=10, type="u16"), point(table="input", address=5, type="u16"),
           point(table="coil", address=0, type="bool"), point(table="coil", address=1,
                                                              type="bool")]
    reads = mdec.plan_reads(pts)
    got = sorted((r.table, r.address, r.count, sorted(r.slices)) for r in reads)
    assert got == [("coil", 0, 2, [(4, 0), (5, 1)]),
                   ("holding", 4, 3, [(0, 0), (1, 1)]),
                   ("holding", 10, 1, [(2, 0)]),
                   ("input", 5, 1, [(3, 0)])]
    hold = next(r for r in reads if r.table == "holding" and r.address == 4)
    parts = dict(mdec.split_reply(hold, [7, 0x4060, 0], pts))
    assert parts == {0: [7], 1: [0x4060, 0]}


def test_plan_respects_the_125_register_limit():
    pts = [point(address=a, type="u16") for a in range(200)]
    reads = mdec.plan_reads(pts)
    assert [r.count for r in reads] == [125, 75]
    assert sum(len(r.slices) for r in reads) == 200
