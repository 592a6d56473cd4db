"""Payloads other than readings (SPEC.md, "Message types").

ALARM, STATUS, HELLO and CONFIG_ACK payloads are CBOR maps with small integer keys
(unknown keys are ignored, so fields can be added without a new frame version).
ACK and CONFIG start with `re`, the uplink seq they answer, which is how a node knows a
downlink is fresh (SPEC.md, "Downlink freshness")."""
import struct

from protocol import cbor
from protocol.varint import VarintError, get_uvarint, put_uvarint

# ALARM payload: a CBOR array of alarm maps with these keys
A_EVENT = 1      # 1 trip, 2 level change, 3 clear
A_LEVEL = 2      # protocol.levels
A_PREV = 3
A_CHAN = 4
A_RULE = 5
A_KIND = 6       # rule kind (protocol.trip)
A_VALUE = 7      # the rule's metric that tripped, integer in the rule's unit
A_THRESHOLD = 8
A_AGE = 9        # seconds before the frame's send time when it happened

# STATUS payload keys
S_BATTERY_MV = 1
S_SUPPLY_MV = 2
S_TEMP_DECIC = 3
S_FREE_HEAP = 4
S_RESET_CAUSE = 5
S_LOG_DEPTH = 6
S_FW = 7
S_CONFIG_VERSION = 8
S_UPTIME = 9
S_THINNED = 10
S_DROPPED = 11
S_LEVEL = 12
S_MODE = 13

# HELLO payload keys
H_FW = 1
H_CONFIG_VERSION = 2
H_RESET_CAUSE = 3
H_BOOT_COUNT = 4
H_CHANNELS = 5
H_BOARD = 6
H_VERSIONS = 7

# CONFIG map keys
C_VERSION = 1
C_INTERVALS = 2     # {1: sample_s, 2: intensified_s, 3: report_s, 4: status_s}
C_RULES = 3         # list of rule arrays (protocol/TRIP.md)
C_EMERGENCY_S = 4   # emergency mode for this many seconds; 0 ends it
C_STATUS_NOW = 5    # true: send a STATUS frame now

I_SAMPLE_S = 1
I_INTENSIFIED_S = 2
I_REPORT_S = 3
I_STATUS_S = 4

# CONFIG_ACK keys and results
K_VERSION = 1
K_RESULT = 2
K_REASON = 3
K_RE = 4
RESULT_OK = 0
RESULT_REJECTED = 1
RESULT_STALE = 2

RESET_CAUSES = ("unknown", "power_on", "hard", "watchdog", "deep_sleep", "soft", "brownout")


class PayloadError(ValueError):
    pass


def encode_map(m):
    return cbor.dumps(m)


def decode_map(data):
    try:
        m = cbor.loads(data)
    except cbor.CborError as e:
        raise PayloadError("bad CBOR: %s" % e)
    if not isinstance(m, dict):
        raise PayloadError("payload must be a CBOR map")
    return m


def encode_alarms(alarms):
    """alarms: list of dicts keyed by the A_* constants."""
    if not alarms:
        raise PayloadError("an ALARM frame carries at least one alarm")
    return cbor.dumps(alarms)


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
        if not 1 <= a[A_EVENT] <= 3 or a[A_LEVEL] > 4 or a[A_CHAN] > 255:
            raise PayloadError("alarm event, level or channel out of range")
        age = a.get(A_AGE, 0)
        if not isinstance(age, int) or age < 0:
            raise PayloadError("alarm age must be an unsigned integer")
    return arr


_NOT_LOGGED = "not an ALARM payload as a node logs it"


def restamp_alarms(data, delta):
    """encode_alarms() of the alarms in `data` with each A_AGE + delta (>= 0), as a
    bytearray. A node restamps a logged ALARM at every send: this copies the CBOR around
    the ages instead of decoding it into dicts (and needs no CBOR decoder:
    firmware/unload.py). It takes only what Node._log_alarms writes, which is what
    encode_alarms writes: a non-empty array of maps with small unsigned keys in
    ascending order, integer values, every head in its shortest form, and an unsigned
    A_AGE in every map; anything else raises PayloadError. The fields' ranges are not
    checked: the gateway's decode_alarms checks them."""
    mv = memoryview(data)
    out = bytearray()
    done = ages = 0                     # data[:done] is in out
    try:
        n = _arg(data, 0, 0x10)         # an array
        pos = _after(data, 0)
        for _ in range(n):
            k = _arg(data, pos, 0x20)   # of maps
            pos = _after(data, pos)
            key = -1
            for _ in range(k):
                if not key < data[pos] < 24:
                    raise PayloadError(_NOT_LOGGED)
                key = data[pos]
                pos += 1
                v = _arg(data, pos, 1 if key == A_AGE else 3)   # integers, the age unsigned
                q = _after(data, pos)
                if key == A_AGE:
                    out.extend(mv[done:pos])
                    cbor.encode_into(out, v + delta)
                    done = q
                    ages += 1
                pos = q
    except IndexError:                  # cut short
        raise PayloadError(_NOT_LOGGED)
    if pos != len(data) or ages != n or not n:
        raise PayloadError(_NOT_LOGGED)
    out.extend(mv[done:])
    return out


def _arg(data, pos, majors):
    """The argument of the CBOR head at data[pos], which must have a major type in the
    bit set `majors` and be in its shortest form; the head ends at _after(data, pos)."""
    info = data[pos] & 0x1F
    q = _after(data, pos)
    n = 0
    for i in range(pos + 1, q):
        n = (n << 8) | data[i]
    if not (majors >> (data[pos] >> 5)) & 1 or info > 27 or (
            info > 23 and n < (24 if info == 24 else 1 << 4 * (q - pos - 1))):
        raise PayloadError(_NOT_LOGGED)
    return n if info > 23 else info


def _after(data, pos):
    info = data[pos] & 0x1F
    return pos + 1 + (1 << (info - 24) if info > 23 else 0)


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


MAX_ACK_RANGES = 32


def decode_ack(data):
    """-> (re, gw_time, ranges) with ranges as (lo, hi) inclusive, highest first."""
    if len(data) < 8:
        raise PayloadError("ACK payload shorter than 8 bytes")
    re, gw_time = struct.unpack_from(">II", data, 0)
    ranges = []
    pos = 8
    prev_lo = None
    try:
        while pos < len(data):
            gap, pos = get_uvarint(data, pos)
            n, pos = get_uvarint(data, pos)
            hi = re - gap if prev_lo is None else prev_lo - 2 - gap
            lo = hi - n + 1
            if n == 0 or lo < 0:
                raise PayloadError("ACK range out of bounds")
            if len(ranges) == MAX_ACK_RANGES:
                raise PayloadError("more than %d ACK ranges" % MAX_ACK_RANGES)
            ranges.append((lo, hi))
            prev_lo = lo
    except VarintError as e:
        raise PayloadError("bad ACK range: %s" % e)
    return re, gw_time, ranges


def encode_config(re, cfg):
    return struct.pack(">I", re) + cbor.dumps(cfg)


def decode_config(data):
    """-> (re, config map). Structure only; the node validates the contents."""
    if len(data) < 5:
        raise PayloadError("CONFIG payload too short")
    re = struct.unpack_from(">I", data, 0)[0]
    try:
        m = cbor.loads(data, 4)
    except cbor.CborError as e:
        raise PayloadError("bad CBOR: %s" % e)
    if not isinstance(m, dict):
        raise PayloadError("CONFIG body must be a CBOR map")
    v = m.get(C_VERSION)
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise PayloadError("CONFIG needs key 1 (config version), an integer >= 1")
    return re, m
