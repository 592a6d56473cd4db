"""Payloads other than readings (SPEC.md, "Message types").

ALARM, STATUS, HELLO and CONFIG_ACK payloads are CBOR maps with small integer keys
(unknown keys are ignored, so fields can be added without a new frame version).
ACK and CONFIG start with `re`, the uplink seq they answer, which is how a node knows a
downlink is fresh (SPEC.md, "Downlink freshness").

This module holds the keys and the codecs a node runs: the encoders of its uplinks and
the decoders of its downlinks. Their counterparts, which only the gateway runs
(decode_alarms, decode_map, encode_ack, encode_config), are in protocol/gwmessages.py so
that a node without frozen modules does not carry their bytecode in its heap."""
import struct

from protocol import cbor
from protocol.varint import VarintError, get_uvarint

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


def encode_alarms(alarms):
    """alarms: list of dicts keyed by the A_* constants."""
    if not alarms:
        raise PayloadError("an ALARM frame carries at least one alarm")
    return cbor.dumps(alarms)


_NOT_LOGGED = "not an ALARM payload as a node logs it"


def restamp_alarms(data, delta):
    """encode_alarms() of the alarms in `data` with each A_AGE + delta (>= 0), as a
    bytearray. A node restamps a logged ALARM at every send: this copies the CBOR around
    the ages instead of decoding it into dicts (and needs no CBOR decoder:
    firmware/unload.py). It takes only what Node._log_alarms writes, which is what
    encode_alarms writes: a non-empty array of maps with small unsigned keys in
    ascending order, integer values, every head in its shortest form, and an unsigned
    A_AGE in every map; anything else raises PayloadError. The fields' ranges are not
    checked: the gateway's gwmessages.decode_alarms checks them."""
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


MAX_ACK_RANGES = 32


def decode_ack(data):
    """-> (re, gw_time, ranges) with ranges as (lo, hi) inclusive, highest first (the
    wire format: protocol/gwmessages.encode_ack). SPEC §6.2: 0..MAX_ACK_RANGES ranges,
    none empty, none below seq 1."""
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
            if n == 0 or lo < 1:
                raise PayloadError("ACK range empty or below seq 1")
            if len(ranges) == MAX_ACK_RANGES:
                raise PayloadError("more than %d ACK ranges" % MAX_ACK_RANGES)
            ranges.append((lo, hi))
            prev_lo = lo
    except VarintError as e:
        raise PayloadError("bad ACK range: %s" % e)
    return re, gw_time, ranges


def decode_config(data):
    """-> (re, config map). Structure only; the node validates the contents."""
    if len(data) < 5:
        raise PayloadError("CONFIG payload too short")
    re = struct.unpack_from(">I", data, 0)[0]
    # the decoder loads here (a node decodes CBOR only for a CONFIG, and drops it again:
    # firmware/unload.py); `import a.b` allocates nothing once the module is loaded
    import protocol.cbordecode
    try:
        m = protocol.cbordecode.loads(data, 4)
    except cbor.CborError as e:
        raise PayloadError("bad CBOR: %s" % e)
    if not isinstance(m, dict):
        raise PayloadError("CONFIG body must be a CBOR map")
    for k in m:
        if type(k) is not int or k < 0:
            raise PayloadError("CONFIG keys must be unsigned integers")
    v = m.get(C_VERSION)
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise PayloadError("CONFIG needs key 1 (config version), an integer >= 1")
    return re, m
