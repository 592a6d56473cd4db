"""LEB128-style varints (SPEC.md, "Varints"): 7 bits a byte, low group first, high
bit set on every byte but the last. Signed values are zigzag-mapped first so small
negatives stay short. Decoders take a buffer and a position and return (value, pos)."""


class VarintError(ValueError):
    pass


MAX_BYTES = 5  # 35 bits: every varint in v1 fits in 32 bits (zigzag of a 32-bit signed value)


def put_uvarint(buf, n):
    """Append unsigned n (0 <= n < 2**32) to bytearray buf."""
    if n < 0 or n > 0xFFFFFFFF:
        raise VarintError("uvarint out of range: %r" % (n,))
    while n > 0x7F:
        buf.append((n & 0x7F) | 0x80)
        n >>= 7
    buf.append(n)


def zigzag(v):
    return (v << 1) if v >= 0 else ((-v) << 1) - 1


def unzigzag(n):
    return (n >> 1) if not n & 1 else -((n + 1) >> 1)


def put_svarint(buf, v):
    if v < -0x80000000 or v > 0x7FFFFFFF:
        raise VarintError("svarint out of range: %r" % (v,))
    put_uvarint(buf, zigzag(v))


def get_uvarint(data, pos, end=None):
    if end is None:
        end = len(data)
    n = 0
    shift = 0
    i = 0
    while True:
        if pos >= end:
            raise VarintError("truncated varint")
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            break
        shift += 7
        if i >= MAX_BYTES:
            raise VarintError("varint longer than 5 bytes")
    if n > 0xFFFFFFFF:
        raise VarintError("varint above 2**32-1")
    if i > 1 and b == 0:
        # A trailing 0x00 group means a non-minimal encoding: one value, one encoding.
        raise VarintError("non-minimal varint")
    return n, pos


def get_svarint(data, pos, end=None):
    n, pos = get_uvarint(data, pos, end)
    return unzigzag(n), pos
