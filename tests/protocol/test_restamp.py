"""Restamping a logged frame's ages in its bytes (readings.restamp,
messages.restamp_alarms) against what the node did before: decode, shift the ages,
encode again."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import cbor, cbordecode, gwmessages, messages, readings
from protocol.varint import put_uvarint

A_AGE = messages.A_AGE
u32 = st.integers(0, 2**32 - 1)
s32 = st.integers(-(2**31), 2**31 - 1)
deltas = st.one_of(st.integers(0, 100_000), u32)      # large ones push ages past 32 bits


def shifted_readings(payload, delta):
    blocks = readings.decode(payload)
    for b in blocks:
        b.age += delta
    return readings.encode(blocks)


def shifted_alarms(payload, delta):
    alarms = cbordecode.loads(payload)      # restamp is structural: the gateway checks the ranges
    for a in alarms:
        a[A_AGE] = a.get(A_AGE, 0) + delta
    return messages.encode_alarms(alarms)


def outcome(fn, payload, delta):
    try:
        return bytes(fn(payload, delta))
    except ValueError:
        return ValueError


@st.composite
def blocks(draw):
    n = draw(st.one_of(st.integers(1, 12), st.integers(13, 300)))
    step = draw(st.integers(1, 2**20)) if n > 1 else 0
    age = draw(st.integers(step * (n - 1), 2**32 - 1))
    chan = draw(st.integers(0, 255))
    if draw(st.booleans()):
        return readings.Block(chan, age, step, None, fault=draw(st.integers(0, 0xFFFF)), count=n)
    vals = [draw(s32)]
    for _ in range(n - 1):
        d = draw(st.one_of(st.integers(-3000, 3000), s32))
        vals.append(max(-(2**31), min(2**31 - 1, vals[-1] + d)))
    return readings.Block(chan, age, step, vals)


readings_payloads = st.lists(blocks(), min_size=1, max_size=5).map(readings.encode)


def damaged(payloads):
    """A good payload cut short, or with a byte changed, dropped or added."""
    @st.composite
    def one(draw):
        p = bytearray(draw(payloads))
        i = draw(st.integers(0, len(p)))
        how = draw(st.sampled_from(["cut", "set", "drop", "add"]))
        b = draw(st.integers(0, 255))
        if how == "cut":
            del p[i:]
        elif i < len(p) and how == "set":
            p[i] = b
        elif i < len(p) and how == "drop":
            del p[i]
        else:
            p.insert(i, b)
        return bytes(p)
    return one()


@given(readings_payloads, deltas)
def test_readings_restamp_is_decode_shift_encode(payload, delta):
    want = outcome(shifted_readings, payload, delta)
    assert outcome(readings.restamp, payload, delta) == want
    if want is not ValueError:
        assert readings.restamp(payload, 0) == payload


@given(st.one_of(st.binary(max_size=60), damaged(readings_payloads)), deltas)
def test_readings_restamp_fails_exactly_where_decode_shift_encode_fails(payload, delta):
    assert outcome(readings.restamp, payload, delta) == outcome(shifted_readings, payload, delta)


def _uv(*ns):
    out = bytearray()
    for n in ns:
        put_uvarint(out, n)
    return bytes(out)


@pytest.mark.parametrize("payload", [
    b"",                                            # empty
    b"\x08",                                        # no head
    b"\x08" + _uv(0, 5, 0),                          # a block of no samples
    b"\x08" + _uv(3 << 1, 10, 6, 0),                 # samples after the send time (step 6, age 10)
    b"\x08" + _uv(2 << 1, 10, 1) + _uv(0),           # one value of two
    b"\x08" + _uv(1 << 1, 10) + b"\x80\x00",         # non-minimal value
    b"\x08" + _uv(1 << 1, 10) + b"\xff\xff\xff\xff\xff\x01",    # over-long value
    b"\x08" + _uv(1 << 1, 10) + b"\xff\xff\xff\xff\x1f",        # value above 2**32-1
    b"\x08" + _uv(1 << 1 | 1, 10) + b"\x81",         # fault code cut short
    b"\x08" + _uv(2 << 1, 10, 0, 0, 0),               # two samples, step 0
    b"\x08" + _uv(1 << 1 | 1, 10, 0x10000),          # fault code above 16 bits
])
def test_readings_restamp_refuses_what_decode_refuses(payload):
    with pytest.raises(ValueError):
        readings.decode(payload)
    with pytest.raises(ValueError):
        readings.restamp(payload, 5)


def test_readings_restamp_refuses_an_age_beyond_32_bits_as_encode_does():
    p = readings.encode([readings.Block(8, 2**32 - 10, 1, [1, 2])])
    assert bytes(readings.restamp(p, 9)) == shifted_readings(p, 9)
    with pytest.raises(ValueError):
        readings.restamp(p, 10)


alarm_maps = st.fixed_dictionaries({
    messages.A_EVENT: st.integers(1, 3), messages.A_LEVEL: st.integers(0, 4),
    messages.A_CHAN: st.integers(0, 255), messages.A_RULE: st.integers(0, 2**32),
    A_AGE: st.integers(0, 2**40)}, optional={
    messages.A_PREV: st.integers(0, 4), messages.A_KIND: st.integers(0, 300),
    messages.A_VALUE: st.integers(-(2**64), 2**64 - 1), messages.A_THRESHOLD: s32,
    0: st.integers(-5, 5), 23: st.integers(-30, 30)})
alarm_payloads = st.lists(alarm_maps, min_size=1, max_size=6).map(messages.encode_alarms)


@given(alarm_payloads, deltas)
def test_alarm_restamp_is_decode_shift_encode(payload, delta):
    assert bytes(messages.restamp_alarms(payload, delta)) == shifted_alarms(payload, delta)


def test_alarm_restamp_of_what_the_node_logs():
    # Node._log_alarms: every key, A_AGE always
    a = {messages.A_EVENT: 1, messages.A_LEVEL: 3, messages.A_PREV: 2, messages.A_CHAN: 0x10,
         messages.A_RULE: 7, messages.A_KIND: 2, messages.A_VALUE: -1500, messages.A_THRESHOLD: 1800,
         A_AGE: 0}
    b = dict(a)
    b[A_AGE] = 23
    p = messages.encode_alarms([a, b])
    for delta in (0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 24, 2**32):
        assert bytes(messages.restamp_alarms(p, delta)) == shifted_alarms(p, delta)


@given(st.one_of(st.binary(max_size=60), damaged(alarm_payloads)), deltas)
def test_alarm_restamp_refuses_or_gives_the_canonical_shifted_cbor(payload, delta):
    # Stricter than decode_alarms (it takes only what the node writes: canonical CBOR,
    # integer values, an age in every alarm), and it leaves the fields' ranges to the
    # gateway: what it takes, it shifts exactly; what both take, they shift alike.
    try:
        got = bytes(messages.restamp_alarms(payload, delta))
    except ValueError:
        return
    arr = cbordecode.loads(payload)
    assert cbor.dumps(arr) == payload
    for a in arr:
        a[A_AGE] += delta
    assert got == cbor.dumps(arr)
    try:
        gwmessages.decode_alarms(payload)
    except ValueError:
        return
    assert got == shifted_alarms(payload, delta)


GOOD = messages.encode_alarms([{messages.A_EVENT: 1, messages.A_LEVEL: 2, messages.A_CHAN: 8,
                                messages.A_RULE: 1, A_AGE: 5}])


@pytest.mark.parametrize("payload", [
    b"",
    GOOD[:-1],                                      # cut short
    GOOD + b"\x00",                                 # trailing byte
    b"\x80",                                        # no alarm
    b"\xa1\x09\x05",                                # a map, not an array
    b"\x81\x81\x05",                                # an array, not a map
    messages.encode_alarms([{messages.A_EVENT: 1, messages.A_CHAN: 8}]),   # no age
    GOOD.replace(b"\x09\x05", b"\x09\x24"),         # age -5
    GOOD.replace(b"\x09\x05", b"\x09\x18\x05"),     # age not in its shortest form
    GOOD.replace(b"\x01\x01", b"\x01\xf5"),         # event true
    GOOD.replace(b"\x01\x01", b"\x01\x61\x61"),     # a text value
    GOOD.replace(b"\x01\x01\x02\x02", b"\x02\x02\x01\x01"),    # keys out of order
    GOOD.replace(b"\x01\x01\x02\x02", b"\x01\x01\x01\x02"),    # a key twice
    GOOD.replace(b"\x01\x01", b"\x18\x18\x01"),     # a key above 23
    GOOD.replace(b"\x81", b"\x98\x01", 1),          # array head not in its shortest form
    GOOD.replace(b"\x81", b"\x9f", 1),              # indefinite-length array
])
def test_alarm_restamp_refuses_anything_the_node_does_not_write(payload):
    with pytest.raises(ValueError):
        messages.restamp_alarms(payload, 3)


def test_a_running_value_that_leaves_32_bits_wraps():
    # 2**31-1, then +1: SPEC §4, values wrap modulo 2**32 (so any run of 32-bit values,
    # e.g. -2**31 then 2**31-1, encodes with deltas that fit an svarint)
    assert readings.decode(b"\x08" + _uv(2 << 1, 10, 1, 0xFFFFFFFE, 2))[0].values == [
        2**31 - 1, -(2**31)]
    blk = readings.Block(8, 10, 1, [-(2**31), 2**31 - 1, -(2**31)])
    assert readings.decode(readings.encode([blk])) == [blk]
