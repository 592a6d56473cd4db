"""A small CBOR (RFC 8949) encoder and decoder for the node.

Covers what the wire contract uses: unsigned and negative integers up to 64 bits,
byte and text strings, arrays, maps, false/true/null and floats (decoded from half,
single or double; encoded as double). Definite lengths only. Map keys are sorted
as RFC 8949 core deterministic encoding asks, so output is the same on every runtime. The gateway uses cbor2; tests check that
cbor2 decodes what this encodes and that this decodes what cbor2 encodes.

Decoding errors raise CborError and never anything else; nesting depth and item
counts are bounded so hostile input cannot exhaust a node's heap.

The decoder is protocol/cbordecode.py (`cbordecode.loads`), which imports this module
and never the reverse: a node decodes CBOR only for a CONFIG downlink, so on a board
without frozen modules its bytecode need not stay in the heap; the node loads it for a
CONFIG and drops it with the config checks (firmware/unload.py).
"""
import struct


class CborError(ValueError):
    pass


MAX_DEPTH = 8
MAX_ITEMS = 512


def _head(out, major, n):
    m = major << 5
    if n < 24:
        out.append(m | n)
        return
    if n < 0x100:
        info = 24
    elif n < 0x10000:
        info = 25
    elif n < 0x100000000:
        info = 26
    elif n < 0x10000000000000000:
        info = 27
    else:
        raise CborError("integer too large for CBOR: %r" % (n,))
    out.append(m | info)
    # 1, 2, 4 or 8 bytes, big-endian, appended one by one: a struct.pack bytes object
    # for each was garbage in every STATUS map (uptime, free heap) on a node
    for s in range(8 << (info - 24), 0, -8):
        out.append((n >> (s - 8)) & 0xFF)


def encode_into(out, obj, depth=0):
    if depth > MAX_DEPTH:
        raise CborError("nesting deeper than %d" % MAX_DEPTH)
    if obj is True:
        out.append(0xF5)
    elif obj is False:
        out.append(0xF4)
    elif obj is None:
        out.append(0xF6)
    elif isinstance(obj, int):
        if obj >= 0:
            _head(out, 0, obj)
        else:
            _head(out, 1, -1 - obj)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        _head(out, 2, len(obj))
        out.extend(obj)
    elif isinstance(obj, str):
        b = obj.encode("utf-8")
        _head(out, 3, len(b))
        out.extend(b)
    elif isinstance(obj, (list, tuple)):
        _head(out, 4, len(obj))
        for x in obj:
            encode_into(out, x, depth + 1)
    elif isinstance(obj, dict):
        # Core deterministic encoding (RFC 8949 4.2.1): keys in bytewise order of their
        # encodings. MicroPython dicts have no stable order, so this is what makes both
        # runtimes produce the same bytes (and the same MIC over them).
        for k in obj:
            if type(k) is not int or k < 0:     # bool is not int here: True is 0xF5
                break
        else:
            # Every key a non-negative int (the node's STATUS, HELLO and ALARM maps): their
            # encodings sort as the numbers do, so the keys are taken smallest first
            # straight from the dict, with no encoded key, pair or list built per key
            # (~100 bytes of garbage each on a 32-bit MicroPython).
            _head(out, 5, len(obj))
            prev = -1
            for _ in range(len(obj)):
                k = None
                for j in obj:
                    if j > prev and (k is None or j < k):
                        k = j
                _head(out, 0, k)
                encode_into(out, obj[k], depth + 1)
                prev = k
            return out
        pairs = []
        for k in obj:
            pairs.append((bytes(encode_into(bytearray(), k, depth + 1)), obj[k]))
        pairs.sort(key=_first)
        _head(out, 5, len(pairs))
        for kb, v in pairs:
            out.extend(kb)
            encode_into(out, v, depth + 1)
    elif isinstance(obj, float):
        out.append(0xFB)
        out.extend(struct.pack(">d", obj))
    else:
        raise CborError("cannot encode %s in CBOR" % type(obj).__name__)
    return out


def _first(p):
    return p[0]


def dumps(obj):
    return bytes(encode_into(bytearray(), obj))
