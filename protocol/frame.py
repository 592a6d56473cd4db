"""The radio frame (SPEC.md, "Radio frame").

    offset size  field
    0      1     version (high nibble) | message type (low nibble)
    1      1     flags
    2      2     node id, big-endian (uplink: sender; downlink: addressee)
    4      4     seq, big-endian: the sender's sequence number
    8      4     time, big-endian: the sender's clock when it sent this frame
    12     1..5  back (uvarint): seq minus the sender's oldest unacknowledged seq
    ..     n     payload (by message type)
    end-8  8     MIC = HMAC-SHA256(node key, every byte before it)[:8]

Decoding checks, in order (SPEC §7): length, version, type, node known, MIC, then header
fields;
each failure raises FrameError with one of the REASON_* codes, which receivers count.
A frame is never returned unless its MIC verified with the node's key.
"""
import struct

from protocol.mic import MIC_LEN, ct_equal
from protocol.varint import VarintError, get_uvarint, put_uvarint

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

VERSION = const(1)

# message types: uplink (node -> gateway) below 8, downlink (gateway -> node) from 8
READINGS = const(1)
ALARM = const(2)
STATUS = const(3)
HELLO = const(4)
CONFIG_ACK = const(5)
ACK = const(8)
CONFIG = const(9)
ZONE = const(10)

UPLINK_TYPES = (READINGS, ALARM, STATUS, HELLO, CONFIG_ACK)
DOWNLINK_TYPES = (ACK, CONFIG, ZONE)
TYPE_NAMES = {READINGS: "readings", ALARM: "alarm", STATUS: "status", HELLO: "hello",
              CONFIG_ACK: "config_ack", ACK: "ack", CONFIG: "config", ZONE: "zone"}

# flags, uplink
F_CLOCK_SYNCED = const(0x01)  # time field is Unix seconds (else seconds since the node booted)
F_TIME_APPROX = const(0x02)   # some reading times in this frame were rebased after a clock loss
F_ALARM_ACTIVE = const(0x04)  # the node's warning level is above normal
F_EMERGENCY = const(0x08)     # the node is in emergency (intensified) mode
F_ZONE = const(0x10)          # the node sounds its siren for a zone warning (SPEC 3.5)
# flags, downlink
F_PENDING = const(0x01)       # more downlink frames wait for this node: keep listening
F_CONGESTED = const(0x02)     # ACK: the channel is busy: aggregate routine reports (SPEC 6.5)

HEADER_FIXED = const(12)
MIN_FRAME = HEADER_FIXED + 1 + MIC_LEN
MAX_FRAME = const(192)

REASON_SHORT = "short"
REASON_LONG = "long"
REASON_VERSION = "version"
REASON_TYPE = "type"
REASON_UNKNOWN_NODE = "unknown_node"
REASON_MIC = "mic"
REASON_HEADER = "header"
REASON_PAYLOAD = "payload"


class FrameError(ValueError):
    def __init__(self, reason, detail=""):
        super().__init__(reason if not detail else reason + ": " + detail)
        self.reason = reason


class Frame:
    __slots__ = ("version", "mtype", "flags", "node", "seq", "time", "back", "payload", "raw")

    def __init__(self, mtype, node, seq, time, payload=b"", flags=0, back=0, version=VERSION, raw=None):
        self.version = version
        self.mtype = mtype
        self.flags = flags
        self.node = node
        self.seq = seq
        self.time = time
        self.back = back
        self.payload = payload
        self.raw = raw

    def __repr__(self):
        return "Frame(%s node=%d seq=%d time=%d back=%d flags=0x%02x payload=%d B)" % (
            TYPE_NAMES.get(self.mtype, str(self.mtype)), self.node, self.seq, self.time,
            self.back, self.flags, len(self.payload))


def encode(signer, mtype, node, seq, time, payload=b"", flags=0, back=0):
    """Build a frame. `signer` is a protocol.mic.Hmac for the node's key (build it once);
    `payload` is bytes or a bytearray (MicroPython's bytes.join takes no memoryview)."""
    if not 0 <= node <= 0xFFFF:
        raise ValueError("node id %r out of range 0..65535" % (node,))
    if not 0 <= seq <= 0xFFFFFFFF or not 0 <= time <= 0xFFFFFFFF:
        raise ValueError("seq and time must fit in 32 bits")
    if not 0 < mtype < 16 or not 0 <= flags < 256:
        raise ValueError("bad message type or flags")
    if back < 0 or back > seq:
        raise ValueError("back %r must be 0..seq" % (back,))
    hdr = bytearray(HEADER_FIXED)
    struct.pack_into(">BBHII", hdr, 0, (VERSION << 4) | mtype, flags, node, seq, time)
    put_uvarint(hdr, back)
    n = len(hdr) + len(payload) + MIC_LEN
    if n > MAX_FRAME:
        raise ValueError("frame of %d bytes exceeds %d: split the payload" % (n, MAX_FRAME))
    # The MIC is taken over the header and the payload where they lie, and join() makes
    # the frame in one allocation: no growing buffer, no copy of it into bytes (a node
    # builds a frame at every report and resend, its busiest steps).
    return b"".join((hdr, payload, signer.digest(hdr, payload)[:MIC_LEN]))


def peek_node(data):
    """Node id of a frame before its MIC is checked (to look up the key). No trust implied."""
    if len(data) < MIN_FRAME:
        raise FrameError(REASON_SHORT, "%d bytes" % len(data))
    return (data[2] << 8) | data[3]


def decode(data, signer_for_node, allowed_types=None):
    """Check and parse a frame. `signer_for_node(node)` returns an Hmac or None.
    `allowed_types` (e.g. UPLINK_TYPES at the gateway) rejects the other direction."""
    n = len(data)
    if n < MIN_FRAME:
        raise FrameError(REASON_SHORT, "%d bytes, minimum %d" % (n, MIN_FRAME))
    if n > MAX_FRAME:
        raise FrameError(REASON_LONG, "%d bytes, maximum %d" % (n, MAX_FRAME))
    version = data[0] >> 4
    mtype = data[0] & 0x0F
    if version != VERSION:
        raise FrameError(REASON_VERSION, "version %d, this end speaks %d" % (version, VERSION))
    if mtype not in TYPE_NAMES or (allowed_types is not None and mtype not in allowed_types):
        raise FrameError(REASON_TYPE, "message type %d not accepted here" % mtype)
    node = (data[2] << 8) | data[3]
    signer = signer_for_node(node)
    if signer is None:
        raise FrameError(REASON_UNKNOWN_NODE, "node %d has no key here" % node)
    body = n - MIC_LEN
    if not ct_equal(signer.mic(memoryview(data)[:body]), memoryview(data)[body:]):
        raise FrameError(REASON_MIC, "node %d" % node)
    flags, _, seq, time = struct.unpack_from(">BHII", data, 1)
    try:
        back, pos = get_uvarint(data, HEADER_FIXED, body)
    except VarintError as e:
        raise FrameError(REASON_HEADER, str(e))
    # seq 0 is never used; a downlink always carries back 0 (SPEC §2)
    if not seq or back > seq or (back and mtype >= ACK):
        raise FrameError(REASON_HEADER, "seq %d back %d" % (seq, back))
    return Frame(mtype, node, seq, time, bytes(data[pos:body]), flags, back, version, bytes(data))
