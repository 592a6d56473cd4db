"""The gateway's half of the payload codecs (SPEC.md, "Message types"): decoders of
the payloads a node sends (ALARM, and the CBOR maps of STATUS, HELLO and CONFIG_ACK)
and encoders of the downlinks the gateway sends (ACK, CONFIG).

Their own module because a node never runs them: on a board without frozen modules
every function a node imports is bytecode in its heap, and these are the half of
protocol/messages.py a node would only carry. The keys and constants, PayloadError and
the node's codecs (encode_map, encode_alarms, restamp_alarms, decode_ack,
decode_config) stay in protocol/messages.py; tests/protocol/test_frame.py checks that
each pair round-trips.

Every key's type and range comes from one table per message type (SPEC.md §3): the
gateway (gateway/radio.py), `stationctl decode` and the vector checks all call the
decoders below, so no receiver accepts what another refuses. A payload that breaks a
table is a `payload` reject (SPEC §7): PayloadError names the key and what is allowed."""
import struct

from protocol import cbor, cbordecode
from protocol import messages as m
from protocol.messages import PayloadError
from protocol.varint import put_uvarint

# Field kinds of the tables. A table is one flat tuple of (key, kind, lo, hi) groups (on
# MicroPython one tuple, not one per key; 32-bit bounds are kinds, not big-int constants).
INT = 0     # integer lo..hi
U32 = 1     # integer 0..2**32-1
I32 = 2     # integer -2**31..2**31-1
TEXT = 3    # UTF-8 text of lo..hi bytes
UINTS = 4   # array of integers lo..hi (any length the frame allows)
REQUIRED = 8    # or'ed into the kind: the key must be present

# ALARM events and the levels each may go between (SPEC §3.1), flat:
# event, prev lo, prev hi, level lo, level hi, 1 if the level must differ from prev.
# New events (e.g. TRIP.md's "channel faulted while alarmed") get a row here.
ALARM_EVENTS = (
    1, 0, 0, 1, 4, 1,       # trip: normal -> a level
    2, 1, 4, 1, 4, 1,       # level change between non-normal levels
    3, 1, 4, 0, 0, 1,       # clear: a level -> normal
    4, 1, 4, 1, 4, 0,       # blind: the sensor faulted above normal (TRIP.md 3.2)
)
RULE_KIND_MAX = 5           # kinds 1..5 (TRIP.md)

ALARM_KEYS = (
    m.A_EVENT, INT | REQUIRED, 1, 15,      # and a row of ALARM_EVENTS
    m.A_LEVEL, INT | REQUIRED, 0, 4,
    m.A_PREV, INT | REQUIRED, 0, 4,
    m.A_CHAN, INT | REQUIRED, 0, 255,
    m.A_RULE, INT | REQUIRED, 0, 255,
    m.A_KIND, INT | REQUIRED, 1, RULE_KIND_MAX,
    m.A_VALUE, I32 | REQUIRED, 0, 0,
    m.A_THRESHOLD, I32 | REQUIRED, 0, 0,
    m.A_AGE, U32, 0, 0,
)
STATUS_KEYS = (
    m.S_BATTERY_MV, INT, 0, 0xFFFF,
    m.S_SUPPLY_MV, INT, 0, 0xFFFF,
    m.S_TEMP_DECIC, INT, -0x8000, 0x7FFF,
    m.S_FREE_HEAP, U32, 0, 0,
    m.S_RESET_CAUSE, INT, 0, 255,
    m.S_LOG_DEPTH, U32, 0, 0,
    m.S_FW, TEXT, 1, 32,
    m.S_CONFIG_VERSION, U32, 0, 0,
    m.S_UPTIME, U32, 0, 0,
    m.S_THINNED, U32, 0, 0,
    m.S_DROPPED, U32, 0, 0,
    m.S_LEVEL, INT, 0, 4,
    m.S_MODE, INT, 0, 2,
)
HELLO_KEYS = (
    m.H_FW, TEXT, 1, 32,
    m.H_CONFIG_VERSION, U32, 0, 0,
    m.H_RESET_CAUSE, INT, 0, 255,
    m.H_BOOT_COUNT, U32, 0, 0,
    m.H_CHANNELS, UINTS, 0, 255,
    m.H_BOARD, TEXT, 1, 32,
    m.H_VERSIONS, UINTS, 1, 15,
)
CONFIG_ACK_KEYS = (
    m.K_VERSION, U32 | REQUIRED, 0, 0,
    m.K_RESULT, INT | REQUIRED, 0, 2,
    m.K_REASON, TEXT, 0, 255,
    m.K_RE, U32, 0, 0,
)


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_map(d, table, what):
    """PayloadError unless `d` is a map with unsigned integer keys whose known keys
    have the table's types and ranges (SPEC §0: unknown unsigned keys are ignored)."""
    if not isinstance(d, dict):
        raise PayloadError("%s must be a CBOR map" % what)
    for k in d:
        if not _int(k) or k < 0:
            raise PayloadError("%s: key %r is not an unsigned integer" % (what, k))
    for i in range(0, len(table), 4):
        key, kind, lo, hi = table[i], table[i + 1], table[i + 2], table[i + 3]
        if key not in d:
            if kind & REQUIRED:
                raise PayloadError("%s: key %d is required" % (what, key))
            continue
        v = d[key]
        kind &= 7
        if kind == U32:
            lo, hi = 0, 0xFFFFFFFF
        elif kind == I32:
            lo, hi = -0x80000000, 0x7FFFFFFF
        if kind == TEXT:
            if not isinstance(v, str) or not lo <= len(v.encode("utf-8")) <= hi:
                raise PayloadError("%s: key %d must be text of %d..%d bytes" % (what, key, lo, hi))
            continue
        if kind == UINTS:
            if not isinstance(v, list):
                raise PayloadError("%s: key %d must be an array" % (what, key))
        else:
            v = (v,)
        for x in v:
            if not _int(x) or not lo <= x <= hi:
                raise PayloadError("%s: key %d: %r is not an integer %d..%d" % (
                    what, key, x, lo, hi))
    return d


def _cbor(data):
    try:
        return cbordecode.loads(data)
    except cbor.CborError as e:
        raise PayloadError("bad CBOR: %s" % e)


def decode_map(data, table=(), what="payload"):
    return check_map(_cbor(data), table, what)


def decode_status(data):
    return decode_map(data, STATUS_KEYS, "STATUS")


def decode_hello(data):
    d = decode_map(data, HELLO_KEYS, "HELLO")
    if m.H_VERSIONS in d and 1 not in d[m.H_VERSIONS]:
        raise PayloadError("HELLO: key 7 must list version 1 (HELLO is a version 1 frame)")
    return d


def decode_config_ack(data):
    return decode_map(data, CONFIG_ACK_KEYS, "CONFIG_ACK")


def decode_alarms(data):
    """The alarm maps of an ALARM payload, each checked (SPEC §3.1); A_AGE defaults to 0."""
    arr = _cbor(data)
    if not isinstance(arr, list) or not arr:
        raise PayloadError("ALARM payload must be a non-empty CBOR array")
    for i, a in enumerate(arr):
        what = "alarm %d" % i
        check_map(a, ALARM_KEYS, what)
        ev, lv, prev = a[m.A_EVENT], a[m.A_LEVEL], a[m.A_PREV]
        t = ALARM_EVENTS
        for j in range(0, len(t), 6):
            if t[j] == ev:
                if not (t[j + 1] <= prev <= t[j + 2] and t[j + 3] <= lv <= t[j + 4]) or (
                        t[j + 5] and lv == prev):
                    raise PayloadError("%s: event %d cannot go from level %d to %d" % (
                        what, ev, prev, lv))
                break
        else:
            raise PayloadError("%s: event %d is not defined (SPEC §3.1)" % (what, ev))
        if m.A_AGE not in a:
            a[m.A_AGE] = 0
    return arr


def encode_ack(re, gw_time, ranges):
    """ranges: (lo, hi) inclusive seq ranges, highest first, all <= re, with at least one
    seq missing between two ranges (adjacent ranges must be merged by the caller).

    Wire: re (u32) | gw_time (u32) | per range: gap (uvarint), len (uvarint), where
    the first range's hi = re - gap and each next range's hi = previous lo - 2 - gap."""
    out = bytearray(struct.pack(">II", re, gw_time))
    prev_lo = None
    for lo, hi in ranges:
        if lo > hi or lo < 1:
            raise PayloadError("ack range (%r, %r) is empty or below seq 1" % (lo, hi))
        gap = re - hi if prev_lo is None else prev_lo - 2 - hi
        if gap < 0:
            raise PayloadError("ack ranges must be descending, <= re, and not adjacent")
        put_uvarint(out, gap)
        put_uvarint(out, hi - lo + 1)
        prev_lo = lo
    return bytes(out)


def encode_config(re, cfg):
    return struct.pack(">I", re) + cbor.dumps(cfg)
