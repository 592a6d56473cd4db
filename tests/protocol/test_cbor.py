"""Our small CBOR against cbor2, the independent decoder the gateway and consumers use."""
import math

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import cbor, cbordecode

scalars = (st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=40) | st.text(max_size=20)
           | st.booleans() | st.none() | st.floats(allow_nan=False))
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=5)
                      | st.dictionaries(st.integers(0, 2**32) | st.text(max_size=5), kids, max_size=5),
                      max_leaves=25)


def same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b and type(a) is type(b)


def depth(v):
    if isinstance(v, list):
        return 1 + max([depth(x) for x in v], default=0)
    if isinstance(v, dict):
        return 1 + max([depth(x) for x in v.values()], default=0)
    return 0


@given(values)
def test_cbor2_decodes_what_we_encode(v):
    if depth(v) > cbor.MAX_DEPTH:
        return
    assert same(cbor2.loads(cbor.dumps(v)), v)


@given(values)
def test_we_decode_what_cbor2_encodes(v):
    if depth(v) > cbor.MAX_DEPTH:
        return
    assert same(cbordecode.loads(cbor2.dumps(v)), v)


@given(st.dictionaries(st.integers(0, 2**40), st.integers(-(2**63), 2**64 - 1), max_size=20))
def test_maps_are_canonical_like_cbor2(m):
    assert cbor.dumps(m) == cbor2.dumps(m, canonical=True)


def sorted_by_encoded_key(m):
    """A map as the encoder wrote every map before its non-negative-int-key path: each
    key encoded on its own, pairs sorted by those bytes (RFC 8949 4.2.1)."""
    pairs = sorted(((cbor.dumps(k), v) for k, v in m.items()), key=lambda p: p[0])
    out = bytearray()
    cbor._head(out, 5, len(pairs))
    for kb, v in pairs:
        out += kb + cbor.dumps(v)
    return bytes(out)


map_keys = st.integers(0, 2**64 - 1) | st.integers(-(2**63), -1) | st.text(max_size=5) | st.booleans()


@given(st.one_of(st.dictionaries(st.integers(0, 2**64 - 1), values, max_size=12),
                 st.dictionaries(map_keys, values, max_size=12)))
def test_maps_are_encoded_as_sorting_the_encoded_keys_gives(m):
    if depth(m) > cbor.MAX_DEPTH:
        return
    assert cbor.dumps(m) == sorted_by_encoded_key(m)


def head_with_struct(major, n):
    """An item head as _head wrote it with struct.pack before it appended byte by byte."""
    import struct
    m = major << 5
    if n < 24:
        return bytes([m | n])
    for info, fmt, top in ((24, ">B", 0x100), (25, ">H", 0x10000), (26, ">I", 2**32), (27, ">Q", 2**64)):
        if n < top:
            return bytes([m | info]) + struct.pack(fmt, n)
    raise AssertionError


@given(st.integers(0, 7), st.one_of(st.integers(0, 2**64 - 1), st.sampled_from(
    [23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1])))
def test_head_bytes_are_what_struct_pack_gave(major, n):
    out = bytearray()
    cbor._head(out, major, n)
    assert bytes(out) == head_with_struct(major, n)


def test_head_refuses_an_int_beyond_64_bits():
    with pytest.raises(cbor.CborError):
        cbor._head(bytearray(), 0, 2**64)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_cbor_error(data):
    try:
        cbordecode.loads(data)
    except cbor.CborError:
        pass


def test_limits():
    nested = b"\x81" * (cbor.MAX_DEPTH + 2) + b"\x00"
    with pytest.raises(cbor.CborError, match="nesting"):
        cbordecode.loads(nested)
    with pytest.raises(cbor.CborError, match="longer than the input"):
        cbordecode.loads(b"\x9b" + b"\xff" * 8)
    with pytest.raises(cbor.CborError, match="cannot encode"):
        cbor.dumps({1: object()})
