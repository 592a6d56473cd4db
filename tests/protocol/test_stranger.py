"""A stranger's decoder, written from SPEC.md §0, §3, §4 and §6.2 alone (sharing no code
with protocol/), run against ours on generated payloads, valid and broken: both must
accept the same payloads and decode them to the same values. Where they differ, the
SPEC left something to guess, or our code does not do what it says."""
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import cbor, cbordecode, gwmessages, messages, readings

# ---------------------------------------------------------------- the stranger's code


class Bad(Exception):
    pass


def s_cbor(data):
    """§0: definite lengths, no tags, simple values false/true/null only, shortest heads,
    depth <= 8, no duplicate keys, UTF-8 text; floats of any width are well-formed."""
    def head(p):
        if p >= len(data):
            raise Bad("truncated")
        ib = data[p]
        major, info = ib >> 5, ib & 31
        p += 1
        if info < 24:
            return major, info, info, p
        if info > 27:
            raise Bad("indefinite or reserved")
        n = 1 << (info - 24)
        if p + n > len(data):
            raise Bad("truncated")
        v = int.from_bytes(data[p:p + n], "big")
        if major != 7 and v < (24 if n == 1 else 1 << (4 * n)):
            raise Bad("not shortest")
        return major, info, v, p + n

    def item(p, depth):
        if depth > 8:
            raise Bad("too deep")
        major, info, v, p = head(p)
        if major == 0:
            return v, p
        if major == 1:
            return -1 - v, p
        if major in (2, 3):
            if p + v > len(data):
                raise Bad("truncated")
            raw = bytes(data[p:p + v])
            if major == 3:
                try:
                    return raw.decode("utf-8"), p + v
                except UnicodeDecodeError:
                    raise Bad("utf-8") from None
            return raw, p + v
        if major == 4:
            out = []
            for _ in range(v):
                x, p = item(p, depth + 1)
                out.append(x)
            return out, p
        if major == 5:
            out = {}
            for _ in range(v):
                k, p = item(p, depth + 1)
                if type(k) not in (int, str) or k in out:
                    raise Bad("key")
                x, p = item(p, depth + 1)
                out[k] = x
            return out, p
        if major == 6:
            raise Bad("tag")
        if info == 20:
            return False, p
        if info == 21:
            return True, p
        if info == 22:
            return None, p
        if info == 25:
            return ("float",), p
        if info in (26, 27):
            return ("float",), p
        raise Bad("simple value")

    v, p = item(0, 0)
    if p != len(data):
        raise Bad("trailing")
    return v


def is_int(x):
    return type(x) is int


U32 = (0, 2**32 - 1)
I32 = (-2**31, 2**31 - 1)
TEXT32 = ("text", 1, 32)
# the tables as SPEC §3.1-§3.4 state them: key -> (range or text, required)
S_ALARM = {1: ((1, 3), True), 2: ((0, 4), True), 3: ((0, 4), True), 4: ((0, 255), True),
           5: ((0, 255), True), 6: ((1, 5), True), 7: (I32, True), 8: (I32, True), 9: (U32, False)}
S_STATUS = {1: ((0, 65535), False), 2: ((0, 65535), False), 3: ((-32768, 32767), False),
            4: (U32, False), 5: ((0, 255), False), 6: (U32, False), 7: (TEXT32, False),
            8: (U32, False), 9: (U32, False), 10: (U32, False), 11: (U32, False),
            12: ((0, 4), False), 13: ((0, 2), False)}
S_CONFIG_ACK = {1: (U32, True), 2: ((0, 2), True), 3: (("text", 0, 255), False),
                4: (U32, False)}


def s_map(data, table):
    return s_check(s_cbor(data), table)


def s_check(m, table):
    if type(m) is not dict or any(not is_int(k) or k < 0 for k in m):
        raise Bad("not a map of unsigned keys")
    for k, (rng, req) in table.items():
        if k not in m:
            if req:
                raise Bad("required")
            continue
        v = m[k]
        if rng[0] == "text":
            if type(v) is not str or not rng[1] <= len(v.encode()) <= rng[2]:
                raise Bad("text")
        elif not is_int(v) or not rng[0] <= v <= rng[1]:
            raise Bad("range")
    return m


def s_alarms(data):
    arr = s_cbor(data)
    if type(arr) is not list or not arr:
        raise Bad("array")
    for a in arr:
        s_check(a, S_ALARM)
        ev, lv, prev = a[1], a[2], a[3]
        ok = {1: prev == 0 and lv >= 1, 2: prev >= 1 and lv >= 1 and lv != prev,
              3: prev >= 1 and lv == 0}[ev]
        if not ok:
            raise Bad("event/levels")
        a.setdefault(9, 0)
    return arr


def s_uvarint(data, p):
    n = shift = 0
    for i in range(5):
        if p >= len(data):
            raise Bad("truncated")
        b = data[p]
        p += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            if i and not b:
                raise Bad("not minimal")
            if n > 2**32 - 1:
                raise Bad("above 32 bits")
            return n, p
    raise Bad("more than 5 bytes")


def s_readings(data):
    """§4, as [(chan, age, step, values or None, fault, count)]."""
    if not data:
        raise Bad("empty")
    p, out = 0, []
    while p < len(data):
        chan = data[p]
        h, p = s_uvarint(data, p + 1)
        count, fault = h >> 1, h & 1
        if not 1 <= count < 32768:
            raise Bad("count")
        age, p = s_uvarint(data, p)
        step = 0
        if count > 1:
            step, p = s_uvarint(data, p)
            if step == 0 or step * (count - 1) > age:
                raise Bad("step")
        if fault:
            code, p = s_uvarint(data, p)
            if code > 0xFFFF:
                raise Bad("fault code")
            out.append((chan, age, step, None, code, count))
            continue
        vals, v = [], 0
        for _ in range(count):
            z, p = s_uvarint(data, p)
            d = (z >> 1) ^ -(z & 1)
            v = (v + d + 2**31) % 2**32 - 2**31
            vals.append(v)
        out.append((chan, age, step, vals, 0, count))
    return out


def s_ack(data):
    if len(data) < 8:
        raise Bad("short")
    re, gw = struct.unpack(">II", data[:8])
    p, ranges, prev_lo = 8, [], None
    while p < len(data):
        gap, p = s_uvarint(data, p)
        n, p = s_uvarint(data, p)
        hi = re - gap if prev_lo is None else prev_lo - 2 - gap
        lo = hi - n + 1
        if n == 0 or lo < 1 or len(ranges) == 32:
            raise Bad("range")
        ranges.append((lo, hi))
        prev_lo = lo
    return re, gw, ranges


# ---------------------------------------------------------------- ours, same shape

def ours(fn, data):
    try:
        return True, fn(data)
    except ValueError:          # PayloadError, VarintError, CborError
        return False, None


def stranger(fn, data):
    try:
        return True, fn(data)
    except Bad:
        return False, None


def floats(x):
    """Ours decodes a float's value; the stranger only notes that one was there (no key
    of the SPEC takes a float: its value never matters)."""
    if isinstance(x, float):
        return ("float",)
    if isinstance(x, list):
        return [floats(y) for y in x]
    if isinstance(x, dict):
        return {k: floats(v) for k, v in x.items()}
    return x


def agree(our_fn, their_fn, data, norm=floats):
    a, b = ours(our_fn, data), stranger(their_fn, data)
    assert a[0] == b[0], "accept: ours %s, stranger %s, on %s" % (a[0], b[0], data.hex())
    if a[0]:
        assert norm(a[1]) == b[1], data.hex()


# ---------------------------------------------------------------- generated payloads

small = st.one_of(st.integers(-3, 6), st.integers(-2**33, 2**33),
                  st.sampled_from([2**31 - 1, 2**31, -2**31, -2**31 - 1, 2**32 - 1, 2**32, 65535,
                                   65536, -32768, -32769]))
values = st.one_of(small, st.text(max_size=34), st.booleans(), st.none(),
                   st.floats(allow_nan=False, width=32), st.lists(st.integers(0, 300), max_size=3))
keys = st.one_of(st.integers(0, 16), st.integers(-2, 40), st.sampled_from(["x", "1"]))


def mutate(draw, data):
    """The encoding, possibly with one byte changed, dropped or added."""
    b = bytearray(data)
    how = draw(st.integers(0, 5))
    if how == 1 and b:
        b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
    elif how == 2 and b:
        del b[draw(st.integers(0, len(b) - 1))]
    elif how == 3:
        b.insert(draw(st.integers(0, len(b))), draw(st.integers(0, 255)))
    return bytes(b)


def alarm_like(draw):
    base = {1: draw(st.integers(0, 4)), 2: draw(st.integers(0, 5)), 3: draw(st.integers(0, 5)),
            4: draw(st.integers(0, 256)), 5: 3, 6: draw(st.integers(0, 6)),
            7: draw(small), 8: draw(small), 9: draw(st.integers(-1, 5))}
    for k in draw(st.lists(st.integers(1, 9), max_size=2)):
        base.pop(k, None)
    extra = draw(st.dictionaries(keys, values, max_size=2))
    for k, v in extra.items():
        base[k] = v
    return base


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_alarm_payloads(data):
    arr = [alarm_like(data.draw) for _ in range(data.draw(st.integers(0, 3)))]
    agree(gwmessages.decode_alarms, s_alarms, mutate(data.draw, cbor.dumps(arr)))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_status_and_config_ack_maps(data):
    m = data.draw(st.dictionaries(st.one_of(st.integers(0, 14), keys), values, max_size=5))
    raw = mutate(data.draw, cbor.dumps(m))
    agree(gwmessages.decode_status, lambda d: s_map(d, S_STATUS), raw)
    agree(gwmessages.decode_config_ack, lambda d: s_map(d, S_CONFIG_ACK), raw)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_cbor_items(data):
    raw = data.draw(st.one_of(
        st.binary(max_size=12),
        st.builds(lambda h, tail: bytes([h]) + tail, st.integers(0, 255), st.binary(max_size=9)),
        st.just(bytes.fromhex("81" * 8 + "00")), st.just(bytes.fromhex("81" * 9 + "00"))))
    agree(cbordecode.loads, s_cbor, raw, floats)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_readings_payloads(data):
    blocks = []
    for _ in range(data.draw(st.integers(1, 3))):
        n = data.draw(st.integers(1, 4))
        step = data.draw(st.integers(0, 3))
        age = data.draw(st.integers(0, 12))
        chan = data.draw(st.integers(0, 255))
        raw = bytearray([chan])
        fault = data.draw(st.booleans())
        from protocol.varint import put_uvarint
        put_uvarint(raw, n << 1 | fault)
        put_uvarint(raw, age)
        if n > 1:
            put_uvarint(raw, step)
        if fault:
            put_uvarint(raw, data.draw(st.sampled_from([0, 8, 0x0207, 0xFFFF, 0x10000])))
        else:
            for _ in range(n):
                put_uvarint(raw, data.draw(st.sampled_from([0, 1, 2, 2**32 - 1, 2**32 - 2, 77])))
        blocks.append(bytes(raw))
    raw = mutate(data.draw, b"".join(blocks))

    def norm(bs):
        return [(b.chan, b.age, b.step if b.count > 1 else 0, b.values, b.fault, b.count)
                for b in bs]
    agree(readings.decode, s_readings, raw, norm)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_ack_payloads(data):
    out = bytearray(struct.pack(">II", data.draw(st.integers(0, 40)), 5))
    from protocol.varint import put_uvarint
    for _ in range(data.draw(st.integers(0, 34))):
        put_uvarint(out, data.draw(st.integers(0, 3)))
        put_uvarint(out, data.draw(st.integers(0, 3)))
    agree(messages.decode_ack, s_ack, mutate(data.draw, bytes(out)))
