"""The gateway's half of the payload codecs (SPEC.md, "Message types"): decoders of
the payloads a node sends (ALARM, and the CBOR maps of STATUS, HELLO and CONFIG_ACK)
and encoders of the downlinks the gateway sends (ACK, CONFIG).

Their own module because a node never runs them: on a board without frozen modules
every function a node imports is bytecode in its heap, and these are the half of
protocol/messages.py a node would only carry. The keys and constants, PayloadError and
the node's codecs (encode_map, encode_alarms, restamp_alarms, decode_ack,
decode_config) stay in protocol/messages.py; tests/protocol/test_frame.py checks that
each pair round-trips."""
import struct

from protocol import cbor
from protocol.messages import A_AGE, A_CHAN, A_EVENT, A_LEVEL, A_RULE, PayloadError
from protocol.varint import put_uvarint


def decode_map(data):
    try:
        m = cbor.loads(data)
    except cbor.CborError as e:
        raise PayloadError("bad CBOR: %s" % e)
    if not isinstance(m, dict):
        raise PayloadError("payload must be a CBOR map")
    return m


def decode_alarms(data):
    try:
        arr = cbor.loads(data)
    except cbor.CborError as e:
        raise PayloadError("bad CBOR: %s" % e)
    if not isinstance(arr, list) or not arr:
        raise PayloadError("ALARM payload must be a non-empty CBOR array")
    for a in arr:
        if not isinstance(a, dict):
            raise PayloadError("alarm must be a map")
        for k in (A_EVENT, A_LEVEL, A_CHAN, A_RULE):
            v = a.get(k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise PayloadError("alarm key %d missing or not an unsigned integer" % k)
        if not 1 <= a[A_EVENT] <= 4 or a[A_LEVEL] > 4 or a[A_CHAN] > 255:
            raise PayloadError("alarm event, level or channel out of range")
        age = a.get(A_AGE, 0)
        if not isinstance(age, int) or age < 0:
            raise PayloadError("alarm age must be an unsigned integer")
    return arr


def encode_ack(re, gw_time, ranges):
    """ranges: (lo, hi) inclusive seq ranges, highest first, all <= re, with at least one
    seq missing between two ranges (adjacent ranges must be merged by the caller).

    Wire: re (u32) | gw_time (u32) | per range: gap (uvarint), len (uvarint), where
    the first range's hi = re - gap and each next range's hi = previous lo - 2 - gap."""
    out = bytearray(struct.pack(">II", re, gw_time))
    prev_lo = None
    for lo, hi in ranges:
        if lo > hi or lo < 0:
            raise PayloadError("ack range (%r, %r) is empty" % (lo, hi))
        gap = re - hi if prev_lo is None else prev_lo - 2 - hi
        if gap < 0:
            raise PayloadError("ack ranges must be descending, <= re, and not adjacent")
        put_uvarint(out, gap)
        put_uvarint(out, hi - lo + 1)
        prev_lo = lo
    return bytes(out)


def encode_config(re, cfg):
    return struct.pack(">I", re) + cbor.dumps(cfg)
