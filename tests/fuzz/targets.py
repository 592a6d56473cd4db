"""Fuzz targets: every decoder that takes bytes from the air or from the broker.

Each target is `fn(data: bytes)`. A decoder may refuse input only with its own error
type (listed per target); any other exception is a finding. Where a decoder accepts
input, a cheap invariant is checked too (a frame never longer than the limit, a
decoded item re-encodes, ...), so a wrong answer is a finding as well as a crash.

    name       decoder(s)                                         allowed errors
    framing    protocol.framing.Deframer.feed (COBS + CRC)        none (reasons are items)
    frame      protocol.frame.decode, with the MIC made valid     FrameError
               for half the inputs so the header parser is reached
    payloads   readings.decode, messages.decode_ack/decode_config, VarintError, PayloadError
               gwmessages.decode_map/decode_alarms
    cbor       protocol.cbordecode.loads                          CborError
    rules      CBOR bytes -> ruleparse.from_wire / from_dict      ValueError (their contract)
    commands   gateway.downlink.decode_payload + parse_command    CommandError

The seeds (tests/fuzz/seeds.py) come from protocol/vectors."""
import json

from gateway import downlink as dl
from protocol import cbor, cbordecode, framing, gwmessages, messages, readings, ruleparse
from protocol import frame as fr
from protocol.mic import Hmac
from protocol.varint import VarintError

KEY = bytes(range(1, 33))
SIGNER = Hmac(KEY)
NODES = {101, 102, 103}
CHANNELS = {101: {0x10, 0x08}, 102: {0x18}, 103: {0x18}}


class Finding(AssertionError):
    """A decoder accepted input and gave a wrong answer."""


def t_framing(data):
    d = framing.Deframer()
    # fed in two pieces: the state carried between feeds is part of what is tested
    cut = data[0] % (len(data) + 1) if data else 0
    for item in d.feed(data[:cut]) + d.feed(data[cut:]):
        if isinstance(item, bytes):
            if not 0 < len(item) <= d.max_frame:
                raise Finding("frame of %d bytes passed the deframer" % len(item))
            if framing.wrap(item)[1:] not in data + b"\x00" and data:
                pass                    # a frame can also span the two feeds: no claim
        elif not isinstance(item, str):
            raise Finding("deframer item %r" % (item,))


def _signer_for(node):
    return SIGNER if node in NODES else None


def _payload(mtype, payload):
    """The gateway's/node's payload decoder for a frame type."""
    if mtype == fr.READINGS:
        readings.decode(payload)
    elif mtype == fr.ALARM:
        gwmessages.decode_alarms(payload)
    elif mtype in (fr.STATUS, fr.HELLO, fr.CONFIG_ACK):
        gwmessages.decode_map(payload)
    elif mtype == fr.ACK:
        messages.decode_ack(payload)
    elif mtype == fr.CONFIG:
        messages.decode_config(payload)


def t_frame(data):
    if not data:
        return
    body = data[1:]
    if data[0] & 1:
        body = body + SIGNER.mic(body)        # a valid MIC: reach what comes after it
    try:
        f = fr.decode(body, _signer_for)
    except fr.FrameError:
        return
    if not (f.back <= f.seq and len(body) <= fr.MAX_FRAME and f.node in NODES):
        raise Finding("accepted frame with back %d seq %d len %d node %d"
                      % (f.back, f.seq, len(body), f.node))
    try:
        _payload(f.mtype, f.payload)
    except (VarintError, messages.PayloadError):
        pass


def t_payloads(data):
    if not data:
        return
    kinds = (fr.READINGS, fr.ALARM, fr.STATUS, fr.ACK, fr.CONFIG)
    mtype = kinds[data[0] % len(kinds)]
    try:
        _payload(mtype, data[1:])
    except (VarintError, messages.PayloadError):
        return


def t_cbor(data):
    try:
        v = cbordecode.loads(data)
    except cbor.CborError:
        return
    # what the decoder accepted must encode again to something that decodes equal
    # (floats excepted: NaN != NaN, and half floats widen)
    if not _has_float(v):
        try:
            again = cbordecode.loads(cbor.dumps(v))
        except cbor.CborError as e:
            raise Finding("decoded %r does not re-encode: %s" % (v, e)) from None
        if again != v:
            raise Finding("%r re-encoded decodes as %r" % (v, again))


def _has_float(v):
    if isinstance(v, float):
        return True
    if isinstance(v, list):
        return any(_has_float(x) for x in v)
    if isinstance(v, dict):
        return any(_has_float(k) or _has_float(x) for k, x in v.items())
    return False


def t_rules(data):
    try:
        v = cbordecode.loads(data)
    except cbor.CborError:
        return
    items = v if isinstance(v, list) and v and isinstance(v[0], (list, dict)) else [v]
    for item in items:
        try:
            if isinstance(item, dict):
                ruleparse.from_dict(item)
            else:
                ruleparse.from_wire(item)
        except ValueError:
            pass


VERBS = tuple(dl.VERBS)


def t_commands(data):
    if not data:
        return
    verb = VERBS[data[0] % len(VERBS)]
    ct = (None, "application/json", "application/cbor")[(data[0] >> 4) % 3]
    try:
        doc = dl.decode_payload(data[1:], ct)
        dl.parse_command(verb, doc, NODES, CHANNELS)
    except dl.CommandError:
        return


TARGETS = {"framing": t_framing, "frame": t_frame, "payloads": t_payloads, "cbor": t_cbor,
           "rules": t_rules, "commands": t_commands}


def json_seed(obj):
    return json.dumps(obj).encode()
