"""protocol.shiftages.shift_ages: the send-time age rewrite done in the payload's bytes must give
exactly what decode() + age += delta + encode() gives, and fail exactly where they fail."""
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from protocol import channels, readings
from protocol.shiftages import shift_ages
from protocol.varint import VarintError

S32_MIN, S32_MAX = -(2**31), 2**31 - 1
chans = st.sampled_from([channels.chan_id(k, i) for k in channels.KINDS for i in (0, 3)])


@st.composite
def values(draw, n):
    if draw(st.booleans()):                     # sensor-like: small steps
        vals = [draw(st.integers(-(2**20), 2**20))]
        for _ in range(n - 1):
            vals.append(vals[-1] + draw(st.integers(-3000, 3000)))
        return vals
    vals = [draw(st.integers(S32_MIN, S32_MAX))]  # anywhere in 32 bits: long varints
    for _ in range(n - 1):
        p = vals[-1]
        vals.append(draw(st.integers(max(S32_MIN, p + S32_MIN), min(S32_MAX, p + S32_MAX))))
    return vals


@st.composite
def blocks(draw):
    n = draw(st.one_of(st.integers(1, 12), st.integers(1, 200)))
    step = draw(st.integers(0, 600)) if n > 1 else 0
    age = draw(st.one_of(st.integers(step * (n - 1), step * (n - 1) + 100_000),
                         st.integers(step * (n - 1), 2**32 - 1)))
    chan = draw(chans)
    if draw(st.booleans()):
        return readings.Block(chan, age, step, None, fault=draw(st.integers(0, 2**32 - 1)), count=n)
    return readings.Block(chan, age, step, draw(values(n)))


def reference(data, delta):
    """What _send_record did before shift_ages: bytes, or the exception raised."""
    try:
        bs = readings.decode(data)
        for b in bs:
            b.age += delta
        return readings.encode(bs)
    except ValueError as e:
        return e


def shifted(data, delta):
    try:
        return bytes(shift_ages(data, delta))
    except ValueError as e:
        assert isinstance(e, VarintError), repr(e)
        return e


def agree(data, delta):
    want, got = reference(data, delta), shifted(data, delta)
    if isinstance(want, Exception) or isinstance(got, Exception):
        assert isinstance(want, Exception) and isinstance(got, Exception), (data.hex(), delta, want, got)
    else:
        assert got == want


deltas = st.one_of(st.integers(0, 3600), st.integers(0, 2**32), st.integers(-(2**20), 0))


@given(st.lists(blocks(), min_size=1, max_size=5), deltas)
def test_shift_equals_encode_of_shifted_blocks(bs, delta):
    data = readings.encode(bs)
    moved = [readings.Block(b.chan, b.age + delta, b.step, b.values, b.fault, b.count) for b in bs]
    ok = all(0 <= b.age <= 2**32 - 1 and (b.count < 2 or b.step * (b.count - 1) <= b.age) for b in moved)
    if not ok:
        with pytest.raises(VarintError):
            shift_ages(data, delta)
        assert isinstance(reference(data, delta), ValueError)
        return
    out = shift_ages(data, delta)
    assert isinstance(out, bytearray)
    assert bytes(out) == readings.encode(moved)
    assert readings.decode(out) == moved
    # into a caller's buffer: the same bytes at its start, the rest untouched
    buf = bytearray(b"\xee" * (len(out) + 7))
    assert shift_ages(data, delta, buf) == len(out)
    assert buf[:len(out)] == out and buf[len(out):] == b"\xee" * 7
    with pytest.raises(ValueError):
        shift_ages(data, delta, bytearray(len(out) - 1))


@given(st.binary(max_size=120), deltas)
@example(b"", 0)
def test_arbitrary_bytes_fail_exactly_where_decode_encode_fail(data, delta):
    agree(data, delta)


@given(st.lists(blocks(), min_size=1, max_size=4), deltas, st.data())
def test_damaged_payloads_fail_exactly_where_decode_encode_fail(bs, delta, data):
    raw = bytearray(readings.encode(bs))
    how = data.draw(st.sampled_from(["truncate", "byte", "insert", "delete"]))
    i = data.draw(st.integers(0, len(raw) - 1))
    if how == "truncate":
        raw = raw[:i]
    elif how == "byte":
        raw[i] = data.draw(st.integers(0, 255))
    elif how == "insert":
        raw[i:i] = bytes([data.draw(st.integers(0, 255))])
    else:
        del raw[i]
    agree(bytes(raw), delta)


@pytest.mark.parametrize("data, delta", [
    (b"", 0),                                       # empty payload
    (b"\x08\x00\x05\x01", 0),                       # count 0
    (b"\x08", 0),                                   # no head
    (b"\x08\x02", 0),                               # no age
    (b"\x08\x02\x85", 0),                           # truncated age
    (b"\x08\x02\x05", 0),                           # no value
    (b"\x08\x02\x05\xff\xff", 0),                   # truncated value
    (b"\x08\x02\x85\x00\x01", 0),                   # non-minimal age
    (b"\x08\x02\x05\x81\x00", 0),                   # non-minimal value
    (b"\x08\x02\x05\xff\xff\xff\xff\xff\x01", 0),   # six-byte value
    (b"\x08\x02\x05\xff\xff\xff\xff\x1f", 0),       # value varint above 2**32-1
    (b"\x08\x03\x05", 0),                           # fault run without its code
    (b"\x08\x06\x05\x03\x01\x01\x01", 0),           # 3 samples 3 s apart, first 5 s ago
    (b"\x08\x06\x06\x03\x01\x01\x01", -1),          # valid, but after the shift
    (b"\x08\x02\x05\x01", -6),                      # negative age once shifted
    (b"\x08\x02\xff\xff\xff\xff\x0f\x01", 1),       # age past 2**32-1 once shifted
    (b"\x08\x04\x05\x00\xfe\xff\xff\xff\x0f\x02", 0),  # 2**31-1 then +1: out of 32 bits
    (b"\x08\x04\x05\x00\xff\xff\xff\xff\x0f\x01", 0),  # -2**31 then -1: out of 32 bits
    (b"\x08\xfe\xff\x03\x05\x00\x01", 0),           # count 32767 claimed, 1 byte of body
    (b"\x08\x80\x80\x04\x05\x01", 0),               # count 32768
])
def test_malformed_payloads_raise_like_decode(data, delta):
    assert isinstance(reference(data, delta), ValueError)
    with pytest.raises(VarintError):
        shift_ages(data, delta)


def test_values_at_the_32_bit_limits_pass():
    # long varints make shift_ages decode the run to check its sums: the limits themselves pass
    bs = [readings.Block(8, 10, 1, [S32_MIN, -1, S32_MAX - 1, S32_MAX, 0, S32_MIN, -1]),
          readings.Block(16, 4, 0, [S32_MAX]), readings.Block(24, 70, 0, None, 2**32 - 1, 1)]
    data = readings.encode(bs)
    for b in bs:
        b.age += 3600
    assert bytes(shift_ages(data, 3600)) == readings.encode(bs)


def test_under_micropython_64k(micropython_module):
    r = micropython_module("shift_check", heap="64K", args=["300"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SHIFT iterations=300 failed=0" in r.stdout, r.stdout + r.stderr
