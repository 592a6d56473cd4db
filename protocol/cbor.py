"""A small CBOR (RFC 8949) encoder and decoder for the node.

Covers what the wire contract uses: unsigned and negative integers up to 64 bits,
byte and text strings, arrays, maps, false/true/null and floats (decoded from half,
single or double; encoded as double). Definite lengths only. Map keys are sorted
as RFC 8949 core deterministic encoding asks, so output is the same on every runtime. The gateway uses cbor2; tests check that
cbor2 decodes what this encodes and that this decodes what cbor2 encodes.

Decoding errors raise CborError and never anything else; nesting depth and item
counts are bounded so hostile input cannot exhaust a node's heap.
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
    elif n < 0x100:
        out.append(m | 24)
        out.append(n)
    elif n < 0x10000:
        out.append(m | 25)
        out.extend(struct.pack(">H", n))
    elif n < 0x100000000:
        out.append(m | 26)
        out.extend(struct.pack(">I", n))
    elif n < 0x10000000000000000:
        out.append(m | 27)
        out.extend(struct.pack(">Q", n))
    else:
        raise CborError("integer too large for CBOR: %r" % (n,))


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


def _half(h):
    s = -1.0 if h & 0x8000 else 1.0
    e = (h >> 10) & 0x1F
    m = h & 0x3FF
    if e == 0:
        return s * m * 2.0 ** -24
    if e == 31:
        return s * float("inf") if m == 0 else float("nan")
    return s * (1024 + m) * 2.0 ** (e - 25)


class _Reader:
    def __init__(self, data, pos, end):
        self.d = data
        self.p = pos
        self.end = end
        self.items = 0

    def take(self, n):
        p = self.p
        if n < 0 or p + n > self.end:
            raise CborError("truncated CBOR")
        self.p = p + n
        return self.d[p:p + n]

    def arg(self, info):
        if info < 24:
            return info
        if info == 24:
            return self.take(1)[0]
        if info == 25:
            return struct.unpack(">H", self.take(2))[0]
        if info == 26:
            return struct.unpack(">I", self.take(4))[0]
        if info == 27:
            return struct.unpack(">Q", self.take(8))[0]
        raise CborError("indefinite length or reserved additional info %d" % info)

    def item(self, depth):
        if depth > MAX_DEPTH:
            raise CborError("nesting deeper than %d" % MAX_DEPTH)
        self.items += 1
        if self.items > MAX_ITEMS:
            raise CborError("more than %d items" % MAX_ITEMS)
        ib = self.take(1)[0]
        major = ib >> 5
        info = ib & 0x1F
        if major == 7:
            if info == 20:
                return False
            if info == 21:
                return True
            if info == 22:
                return None
            if info == 25:
                return _half(struct.unpack(">H", self.take(2))[0])
            if info == 26:
                return struct.unpack(">f", self.take(4))[0]
            if info == 27:
                return struct.unpack(">d", self.take(8))[0]
            raise CborError("unsupported simple value %d" % info)
        n = self.arg(info)
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major == 2:
            return bytes(self.take(n))
        if major == 3:
            try:
                return str(self.take(n), "utf-8")
            except UnicodeError:
                raise CborError("text string is not UTF-8")
        if major == 4:
            if n > self.end - self.p:
                raise CborError("array longer than the input")
            return [self.item(depth + 1) for _ in range(n)]
        if major == 5:
            if 2 * n > self.end - self.p:
                raise CborError("map longer than the input")
            m = {}
            for _ in range(n):
                k = self.item(depth + 1)
                if isinstance(k, (list, dict)):
                    raise CborError("map key must be an integer or a string")
                if k in m:
                    raise CborError("duplicate map key %r" % (k,))
                m[k] = self.item(depth + 1)
            return m
        raise CborError("CBOR tags are not used in this protocol")


def loads(data, pos=0, end=None):
    """Decode exactly one item filling data[pos:end]; trailing bytes are an error."""
    if end is None:
        end = len(data)
    r = _Reader(data, pos, end)
    v = r.item(0)
    if r.p != end:
        raise CborError("%d trailing bytes after CBOR item" % (end - r.p))
    return v
