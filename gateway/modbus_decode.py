"""Modbus register decoding and read planning: pure functions, no I/O.

Register types (`type` of a point): u16, i16 (one register), u32, i32, f32 (two
registers, IEEE 754 single for f32). `byte_order` is the order of the two bytes inside
each register ("big": high byte first, as Modbus sends them); `word_order` is the
order of the two registers of a 32-bit value ("big": high word at the lower address).
So the common layouts are ABCD = big/big, CDAB = big/little (word swap),
BADC = little/big (byte swap), DCBA = little/little.

The engineering value is `raw * scale + offset` in the unit of the point's channel
kind; `to_scaled` turns it into the channel's scaled integer (protocol/channels.py).

Fault codes carried in a Reading's `fault` field when a point has no valid value
(the device answered, but not with a number we may store):
    fault_exception(code)         the device answered this read with Modbus exception `code`
    FAULT_NOT_FINITE              an f32 register pair held NaN or infinity
    FAULT_OUT_OF_RANGE            the scaled value does not fit a signed 32-bit integer
"""
import math
import struct

# Fault codes are SPEC.md section 4's, shared with the node (firmware/faults.py):
# kind in the low byte, detail (the Modbus exception code) in the next byte.
FAULT_MODBUS_EXCEPTION = 7
FAULT_NOT_FINITE = 11        # sensor error: the device put NaN or infinity in a float register
FAULT_OUT_OF_RANGE = 2       # over range: the scaled value does not fit a signed 32-bit integer


def fault_exception(code):
    return FAULT_MODBUS_EXCEPTION | ((code & 0xFF) << 8)

MAX_REGISTERS_PER_READ = 125  # Modbus application protocol limit for FC 3/4
MAX_BITS_PER_READ = 2000      # ... for FC 1/2

_WIDE = ("u32", "i32", "f32")
_STRUCT = {"u16": ">H", "i16": ">h", "u32": ">I", "i32": ">i", "f32": ">f"}
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def register_count(ptype):
    return 2 if ptype in _WIDE else 1


def registers_to_bytes(regs, byte_order="big", word_order="big"):
    """Registers as read (lowest address first) -> the value's bytes, most significant first."""
    words = list(regs)
    if word_order == "little":
        words.reverse()
    out = bytearray()
    for w in words:
        hi, lo = (w >> 8) & 0xFF, w & 0xFF
        out += bytes((hi, lo)) if byte_order == "big" else bytes((lo, hi))
    return bytes(out)


def decode_raw(ptype, regs, byte_order="big", word_order="big"):
    """The number a register (pair) holds, before scale and offset."""
    n = register_count(ptype)
    if len(regs) != n:
        raise ValueError("%s needs %d register(s), got %d" % (ptype, n, len(regs)))
    return struct.unpack(_STRUCT[ptype], registers_to_bytes(regs, byte_order, word_order))[0]


def encode_raw(ptype, value, byte_order="big", word_order="big"):
    """The registers a device would hold for `value` (the inverse of decode_raw)."""
    b = struct.pack(_STRUCT[ptype], value)
    words = []
    for i in range(0, len(b), 2):
        hi, lo = (b[i], b[i + 1]) if byte_order == "big" else (b[i + 1], b[i])
        words.append(hi << 8 | lo)
    if word_order == "little":
        words.reverse()
    return words


def to_scaled(point, raw, from_units):
    """(value, fault): the channel's scaled integer for a raw register value, or
    (None, fault code) when it is not a finite number or does not fit an int32.
    `from_units` is protocol.channels.from_units (injected to keep this module pure)."""
    if isinstance(raw, bool):
        raw = int(raw)
    if isinstance(raw, float) and not math.isfinite(raw):
        return None, FAULT_NOT_FINITE
    eng = raw * point.scale + point.offset
    if not math.isfinite(eng):
        return None, FAULT_NOT_FINITE
    v = from_units(point.chan, eng)
    if not INT32_MIN <= v <= INT32_MAX:
        return None, FAULT_OUT_OF_RANGE
    return v, None


class Read:
    """One Modbus read request covering one or more points.
    `slices`: (point index, offset of the point's first register/bit in the reply)."""
    __slots__ = ("table", "address", "count", "slices")

    def __init__(self, table, address, count, slices):
        self.table, self.address, self.count, self.slices = table, address, count, slices

    def __repr__(self):
        return "Read(%s %d+%d %r)" % (self.table, self.address, self.count, self.slices)


def plan_reads(points):
    """Group points into as few reads as possible. Only adjacent or overlapping points
    share a read: many devices answer exception 2 (illegal address) for a read that
    spans a register they do not define, so gaps are never bridged."""
    by_table = {}
    for i, p in enumerate(points):
        by_table.setdefault(p.table, []).append((p.address, i, register_count(p.type)
                                                 if p.table in ("holding", "input") else 1))
    reads = []
    for table in sorted(by_table):
        limit = MAX_BITS_PER_READ if table in ("coil", "discrete") else MAX_REGISTERS_PER_READ
        cur = None
        for address, i, n in sorted(by_table[table]):
            end = address + n
            if cur is not None and address <= cur.address + cur.count and \
                    max(end, cur.address + cur.count) - cur.address <= limit:
                cur.count = max(end, cur.address + cur.count) - cur.address
                cur.slices.append((i, address - cur.address))
                continue
            cur = Read(table, address, n, [(i, 0)])
            reads.append(cur)
    return reads


def split_reply(read, values, points):
    """(point index, registers or bits of that point) for each point a reply covers."""
    out = []
    for i, off in read.slices:
        p = points[i]
        n = register_count(p.type) if read.table in ("holding", "input") else 1
        out.append((i, list(values[off:off + n])))
    return out


def decode_point(point, values, from_units):
    """(value, fault) for one point from the registers (or bits) that belong to it."""
    if point.table in ("coil", "discrete"):
        raw = 1 if values[0] else 0
    else:
        raw = decode_raw(point.type, values, point.byte_order, point.word_order)
    return to_scaled(point, raw, from_units)
