"""The BeiDou alarm message (SPEC.md 12): alarms packed for an RDSS short message.

A BDS-2 civil card carries 78 bytes per message (628 bits), one message per service
interval (often 60 s); BDS-3 cards carry more (docs/beidou.md). So the gateway packs
as many alarms as fit, most severe and newest first, in a compact binary form:

    0     1   0xB1: kind 0xB (BeiDou alarm message) << 4 | version 1
    1     1   flags: bit 0 MORE (alarms still queued at the gateway)
    2     2   gateway number (site config `beidou.gateway_number`, 1..65535)
    4     2   message seq (per gateway, wraps after 65535; informational)
    6     4   time: gateway Unix seconds when the message was built
    10    ..  alarm records (below), until the MIC
    end-4 4   MIC: HMAC-SHA256(gateway BeiDou key, every byte before)[:4]

    alarm = node u16 | seq uvarint | index u8 | event code << 6 | level << 3 | prev u8
            | chan u8 | rule u8 | kind u8 | value svarint | threshold svarint
            | age uvarint (seconds before the message time when it happened)

The event code is the SPEC 3.1 event (1 trip, 2 level change, 3 clear) in two bits,
with 0 standing for event 4 (blind), which two bits cannot hold: a channel that went
blind while alarmed is exactly what a site in a dead zone must still report.

(node, seq, index) is the alarm's dedup key, the same as on the MQTT uplink (SPEC 9.3),
so a consumer that gets an alarm both ways keeps one. Pure functions, no I/O; CPython
and MicroPython alike (the hub decodes with `decode`)."""
import struct

from protocol.mic import Hmac, ct_equal
from protocol.varint import VarintError, get_svarint, get_uvarint, put_svarint, put_uvarint

MAGIC = 0xB1
F_MORE = 0x01
HEADER = 10
MIC_LEN = 4
BDS2_MAX = 78           # bytes per message on a BDS-2 civil card
ALARM_MAX = 27          # the longest alarm record (every varint at its longest)


class BdMsgError(ValueError):
    pass


class BdAlarm:
    """One alarm as the message carries it (names as gateway.records.Alarm)."""
    __slots__ = ("node", "seq", "index", "event", "level", "prev_level", "chan", "rule_id",
                 "rule_kind", "value", "threshold", "t")

    def __init__(self, node, seq, index, event, level, prev_level, chan, rule_id, rule_kind,
                 value, threshold, t):
        self.node, self.seq, self.index = node, seq, index
        self.event, self.level, self.prev_level = event, level, prev_level
        self.chan, self.rule_id, self.rule_kind = chan, rule_id, rule_kind
        self.value, self.threshold, self.t = value, threshold, t

    def key(self):
        return (self.node, self.seq, self.index)

    def as_dict(self):
        return dict((k, getattr(self, k)) for k in self.__slots__)

    def __repr__(self):
        return "BdAlarm(%r)" % (self.as_dict(),)


EV_BLIND = 4            # SPEC 3.1 event 4, carried as event code 0


def encode_alarm(out, a, msg_time):
    if not (0 < a.node <= 0xFFFF and 0 <= a.index <= 255 and 1 <= a.event <= EV_BLIND
            and 0 <= a.level <= 4 and 0 <= a.prev_level <= 4 and 0 <= a.chan <= 255
            and 0 <= a.rule_id <= 255 and 0 <= a.rule_kind <= 255):
        raise BdMsgError("alarm field out of range: %r" % (a,))
    out.extend(struct.pack(">H", a.node))
    put_uvarint(out, a.seq)
    out.append(a.index)
    out.append(((a.event & 3) << 6) | (a.level << 3) | a.prev_level)
    out.append(a.chan)
    out.append(a.rule_id)
    out.append(a.rule_kind)
    put_svarint(out, a.value)
    put_svarint(out, a.threshold)
    put_uvarint(out, max(0, msg_time - a.t))


def encode(key, gateway_number, msg_seq, msg_time, alarms, more=False):
    """The message bytes for `alarms` (all of them: the caller chose what fits, see
    `fit`). key: the gateway's BeiDou key (16..64 bytes)."""
    if not 1 <= gateway_number <= 0xFFFF:
        raise BdMsgError("gateway number %r: allowed 1..65535" % (gateway_number,))
    if not alarms:
        raise BdMsgError("a BeiDou alarm message carries at least one alarm")
    out = bytearray(struct.pack(">BBHHI", MAGIC, F_MORE if more else 0, gateway_number,
                                msg_seq & 0xFFFF, msg_time))
    for a in alarms:
        encode_alarm(out, a, msg_time)
    out.extend(Hmac(key).digest(out)[:MIC_LEN])
    return bytes(out)


def fit(alarms, msg_time, limit):
    """How many of `alarms` (in order) fit one message of at most `limit` bytes."""
    room = limit - HEADER - MIC_LEN
    n = 0
    for a in alarms:
        b = bytearray()
        encode_alarm(b, a, msg_time)
        if len(b) > room:
            break
        room -= len(b)
        n += 1
    return n


def decode(data, key=None):
    """A message -> dict(gateway, seq, time, more, alarms=[BdAlarm], mic_checked).
    With `key` the MIC must verify (BdMsgError otherwise); without, it is not checked
    and `mic_checked` is False. Raises BdMsgError on anything malformed."""
    data = bytes(data)
    if len(data) < HEADER + MIC_LEN + 11:
        raise BdMsgError("%d bytes: too short for a BeiDou alarm message" % len(data))
    if data[0] != MAGIC:
        raise BdMsgError("first byte 0x%02x: not a BeiDou alarm message (0x%02x)" % (data[0], MAGIC))
    body = len(data) - MIC_LEN
    if key is not None and not ct_equal(Hmac(key).digest(data[:body])[:MIC_LEN], data[body:]):
        raise BdMsgError("MIC does not verify with this gateway's BeiDou key")
    flags, gw, seq, t = struct.unpack_from(">BHHI", data, 1)
    pos = HEADER
    alarms = []
    try:
        while pos < body:
            if pos + 2 > body:
                raise BdMsgError("alarm record cut short at byte %d" % pos)
            node = (data[pos] << 8) | data[pos + 1]
            fseq, pos = get_uvarint(data, pos + 2, body)
            if pos + 5 > body:
                raise BdMsgError("alarm record cut short at byte %d" % pos)
            index, el, chan, rule, kind = data[pos], data[pos + 1], data[pos + 2], data[pos + 3], data[pos + 4]
            value, pos = get_svarint(data, pos + 5, body)
            thr, pos = get_svarint(data, pos, body)
            age, pos = get_uvarint(data, pos, body)
            event, level, prev = (el >> 6) or EV_BLIND, (el >> 3) & 7, el & 7
            if level > 4 or prev > 4 or node == 0:
                raise BdMsgError("alarm record at byte %d: event/level/node out of range" % pos)
            alarms.append(BdAlarm(node, fseq, index, event, level, prev, chan, rule, kind,
                                  value, thr, t - age))
    except VarintError as e:
        raise BdMsgError("bad varint in an alarm record: %s" % e)
    if not alarms:
        raise BdMsgError("no alarm in the message")
    return {"gateway": gw, "seq": seq, "time": t, "more": bool(flags & F_MORE),
            "alarms": alarms, "mic_checked": key is not None}
