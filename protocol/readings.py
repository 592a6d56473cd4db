"""READINGS payload (SPEC.md, "Readings payload").

A payload is a sequence of blocks, each a regular run of samples of one channel:

    block  = chan (1 byte) | head (uvarint: count << 1 | is_fault) | age (uvarint)
             [| step (uvarint), only when count > 1] | body
    body   = fault code (uvarint), once for the whole run     when is_fault
           = v0 (svarint), then count-1 deltas (svarint)       otherwise

`age` is how many seconds before the frame's send time the run's first (oldest)
sample was taken; sample k was taken `age - k*step` seconds before sending. Times are
relative to sending so a node with no clock still stamps correctly at the gateway
(absolute = receive time - age + k*step). Readings are numbered across the payload in
block order, starting at 0: that number is the `idx` of the dedup key (node, seq, idx).
"""
from protocol.varint import (
    VarintError,
    get_svarint,
    get_uvarint,
    put_svarint,
    put_uvarint,
)

MAX_COUNT = 1 << 15


class Block:
    """A run: `count` samples of `chan`, the first `age` s before sending, `step` s apart.
    `values` is a list of scaled ints, or None with `fault` set for a fault run."""
    __slots__ = ("chan", "age", "step", "values", "fault", "count")

    def __init__(self, chan, age, step, values=None, fault=0, count=None):
        self.chan = chan
        self.age = age
        self.step = step
        self.values = values
        self.fault = fault
        self.count = len(values) if values is not None else count

    def times(self, t_send):
        """Sample times, given the send time in the same base."""
        t0 = t_send - self.age
        return [t0 + k * self.step for k in range(self.count)]

    def __eq__(self, other):
        return (self.chan, self.age, self.step if self.count > 1 else 0, self.values, self.fault, self.count) == (
            other.chan, other.age, other.step if other.count > 1 else 0, other.values, other.fault, other.count)

    def __repr__(self):
        if self.values is None:
            return "Block(chan=0x%02x age=%d step=%d fault=%d x%d)" % (self.chan, self.age, self.step, self.fault, self.count)
        return "Block(chan=0x%02x age=%d step=%d values=%r)" % (self.chan, self.age, self.step, self.values)


def encode_block(out, blk):
    return put_block(out, blk.chan, blk.age, blk.step, blk.count, blk.values, blk.fault)


def put_block(out, chan, age, step, n, values, fault=0, first=0):
    """Append one block to bytearray `out`: `n` samples values[first:first + n] (any
    indexable of ints, e.g. a node's sample array), or a fault run when values is None.
    The node's sampler packs its buffers with this, no Block or list built."""
    if not 1 <= n < MAX_COUNT:
        raise ValueError("block must hold 1..%d samples, got %r" % (MAX_COUNT - 1, n))
    if not 0 <= chan <= 0xFF:
        raise ValueError("channel id %r out of range" % (chan,))
    if n > 1 and step * (n - 1) > age:
        raise ValueError("samples would lie after the send time (age %d, step %d, count %d)" % (age, step, n))
    out.append(chan)
    put_uvarint(out, (n << 1) | (1 if values is None else 0))
    put_uvarint(out, age)
    if n > 1:
        put_uvarint(out, step)
    if values is None:
        put_uvarint(out, fault)
        return out
    prev = 0
    for i in range(first, first + n):
        v = values[i]
        d = v - prev
        # deltas wrap modulo 2**32 (SPEC §4), so any run of 32-bit values encodes
        if d > 0x7FFFFFFF:
            d -= 0x100000000
        elif d < -0x80000000:
            d += 0x100000000
        put_svarint(out, d)
        prev = v
    return out


def encode(blocks):
    out = bytearray()
    for b in blocks:
        encode_block(out, b)
    return bytes(out)


def decode(data, pos=0, end=None):
    """Blocks from a payload; ValueError (VarintError) on anything malformed."""
    if end is None:
        end = len(data)
    blocks = []
    if pos >= end:
        raise VarintError("empty readings payload")
    while pos < end:
        chan = data[pos]
        pos += 1
        head, pos = get_uvarint(data, pos, end)
        n = head >> 1
        if n == 0 or n >= MAX_COUNT:
            raise VarintError("block count %d out of range" % n)
        age, pos = get_uvarint(data, pos, end)
        step = 0
        if n > 1:
            step, pos = get_uvarint(data, pos, end)
            if not step or step * (n - 1) > age:
                raise VarintError("step 0, or samples after the send time")
        if head & 1:
            fault, pos = get_uvarint(data, pos, end)
            if fault > 0xFFFF:
                raise VarintError("fault code above 0xFFFF")
            blocks.append(Block(chan, age, step, None, fault, n))
            continue
        if n > end - pos:
            raise VarintError("block claims %d samples, payload too short" % n)
        values = []
        v = 0
        for _ in range(n):
            d, pos = get_svarint(data, pos, end)
            v += d
            if v > 0x7FFFFFFF:          # wraps modulo 2**32 (SPEC §4)
                v -= 0x100000000
            elif v < -0x80000000:
                v += 0x100000000
            values.append(v)
        blocks.append(Block(chan, age, step, values))
    return blocks


def restamp(data, delta):
    """encode(decode(data)) with every block's age + delta (delta >= 0), as a bytearray,
    and a VarintError wherever those raise one. A node restamps a logged report at every
    send: this copies the bytes around the ages instead of building Blocks, value lists
    and a (value, pos) tuple per number (garbage that counts in the node's peak heap).
    Every number is read by the one loop below, with get_uvarint's checks, and its bytes
    copied as they are read (a checked varint is its own encoding); only an age is
    encoded anew. Nothing but `out` is allocated, so it grows in place."""
    end = len(data)
    if not end:
        raise VarintError("empty readings payload")
    out = bytearray()
    pos = k = n = head = age = 0
    last = 1        # k: the block's number being read (0 head, 1 age, 2 step if n > 1,
    body = 2        # then the body from k == body); last: the block's last number
    while k or pos < end:
        if not k:
            out.append(data[pos])       # chan
            pos += 1
        z = s = 0
        b = 0x80
        while b & 0x80:
            if pos >= end or s == 35:
                raise VarintError("bad varint")     # cut short, or over 5 bytes
            b = data[pos]
            pos += 1
            if k != 1:
                out.append(b)
            z |= (b & 0x7F) << s
            s += 7
        if z > 0xFFFFFFFF or (s > 7 and not b):
            raise VarintError("bad varint")         # over 32 bits, or not minimal
        if not k:
            head = z
            n = z >> 1
            if n == 0 or n >= MAX_COUNT:
                raise VarintError("block count %d out of range" % n)
            body = 3 if n > 1 else 2
            last = body if head & 1 else body + n - 1
        elif k == 1:
            age = z
            put_uvarint(out, age + delta)
        elif k < body:
            if not z or z * (n - 1) > age:
                raise VarintError("step 0, or samples after the send time")
        elif head & 1 and z > 0xFFFF:
            raise VarintError("fault code above 0xFFFF")
        k = 0 if k == last else k + 1
    return out


def count(blocks):
    return sum(b.count for b in blocks)
