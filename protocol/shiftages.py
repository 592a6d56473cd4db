"""Send-time age shift of a READINGS payload (SPEC.md, "Readings payload"), in its bytes.

A node logs each report with ages counted from when it was logged and, at every send,
moves them to the send time (firmware/app.py, Node._send_record). readings.decode() +
encode() did that by building Blocks, value lists and (value, pos) tuples: ~3.3 KB of
garbage per call on the 64-bit unix port for a 3-channel, 10-sample report. shift_ages
parses only chan, head, age and step and copies the rest byte for byte. It lives apart
from protocol/readings.py so that the gateway, the tools and the decoders' MicroPython
checks do not load code only a node uses (~1.6 KB of heap as .mpy on the 64-bit port).
"""
from protocol.readings import MAX_COUNT
from protocol.varint import VarintError, get_svarint


def _ulen(n):
    """Bytes of the uvarint of n (0 <= n < 2**32)."""
    return 1 + (n > 0x7F) + (n > 0x3FFF) + (n > 0x1FFFFF) + (n > 0xFFFFFFF)


def _skip(data, pos, end, k, values=False):
    """Position after the `k` varints at `pos`, each checked as get_uvarint checks it
    (truncation, length, range, minimal encoding) by scanning its bytes, without building
    its value. For values (v0, then deltas) decode() also checks that every running sum
    fits 32 bits: a varint of L bytes moves the sum by at most 2**(7L-1), so the values
    are decoded to check only when those bounds add up to 2**31 or more (huge values)."""
    start = pos
    bound = 0                   # in units of 64: < 2**25 means every |v| < 2**31
    while k:
        n = 0
        b = 0x80
        while b & 0x80:
            if n == 5:
                raise VarintError("varint longer than 5 bytes")
            if pos >= end:
                raise VarintError("truncated varint")
            b = data[pos]
            pos += 1
            n += 1
        if n > 1 and b == 0:
            raise VarintError("non-minimal varint")
        if n == 5 and b > 0x0F:
            raise VarintError("varint above 2**32-1")
        if bound < 0x2000000:
            bound += 1 << (7 * n - 7)
        k -= 1
    if values and bound >= 0x2000000:
        v = 0
        while start < pos:
            d, start = get_svarint(data, start, end)
            v += d
            if v < -0x80000000 or v > 0x7FFFFFFF:
                raise VarintError("value out of 32-bit range")
    return pos


def _uv(data, pos, end):
    """The uvarint at `pos`, checked by _skip. The value only, no (value, pos) tuple to
    allocate: encodings are minimal, so it takes _ulen(value) bytes."""
    q = _skip(data, pos, end, 1)
    n = 0
    while q > pos:
        q -= 1
        n = (n << 7) | (data[q] & 0x7F)
    return n


def _shift(data, delta, out):
    """One pass of shift_ages: checks the payload and returns the shifted length; with
    `out`, also writes the shifted payload there from index 0."""
    end = len(data)
    if end == 0:
        raise VarintError("empty readings payload")
    pos = 0
    o = 0
    while pos < end:
        head = _uv(data, pos + 1, end)
        a = pos + 1 + _ulen(head)           # the age's bytes: data[a:p]
        n = head >> 1
        if n == 0 or n >= MAX_COUNT:
            raise VarintError("block count %d out of range" % n)
        age = _uv(data, a, end)
        p = a + _ulen(age)
        new = age + delta
        if new < 0 or new > 0xFFFFFFFF:
            raise VarintError("uvarint out of range: %r" % (new,))
        q = p
        if n > 1:
            step = _uv(data, q, end)
            q += _ulen(step)
            if step * (n - 1) > age or step * (n - 1) > new:
                raise VarintError("samples after the send time")
        if head & 1:
            q = _skip(data, q, end, 1)
        elif n > end - q:
            raise VarintError("block claims %d samples, payload too short" % n)
        else:
            q = _skip(data, q, end, n, True)
        if out is None:
            o += a - pos + _ulen(new) + q - p
            pos = q
            continue
        while pos < a:                      # chan, head
            out[o] = data[pos]
            pos += 1
            o += 1
        while new > 0x7F:
            out[o] = (new & 0x7F) | 0x80
            new >>= 7
            o += 1
        out[o] = new
        o += 1
        while p < q:                        # step, body
            out[o] = data[p]
            p += 1
            o += 1
        pos = q
    return o


def shift_ages(data, delta, out=None):
    """The READINGS payload `data` with every block's age increased by `delta` seconds.

    Why: a logged record's ages count from when it was logged, so each send moves them
    to the send time (firmware/app.py). decode() + encode() did it by building Blocks,
    value lists and (value, pos) tuples, KBs of garbage per report on a small node; this
    parses only chan, head, age and step and copies step and body byte for byte.

    Malformed input raises VarintError (a ValueError) wherever decode() would, and so
    does a shifted age outside 0..2**32-1 or samples that would then lie after the send
    time, as encode() would. A first pass checks everything and sizes the result, so
    nothing is written for a bad payload. Returns a new bytearray of the exact size; or,
    given a bytearray `out`, writes to its start and returns the length written."""
    n = _shift(data, delta, None)
    if out is not None:
        if len(out) < n:
            raise ValueError("payload of %d bytes, buffer of %d" % (n, len(out)))
        _shift(data, delta, out)
        return n
    out = bytearray(n)
    _shift(data, delta, out)
    return out
