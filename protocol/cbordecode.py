"""The CBOR decoder (protocol/cbor.py is the encoder and says what is covered): its own
module so that a node, which decodes CBOR only for a CONFIG downlink, can drop it from
the heap between downlinks (firmware/unload.py). It imports protocol.cbor, never the
reverse."""
import struct

from protocol.cbor import MAX_DEPTH, MAX_ITEMS, CborError


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
            n = self.take(1)[0]
        elif info == 25:
            n = struct.unpack(">H", self.take(2))[0]
        elif info == 26:
            n = struct.unpack(">I", self.take(4))[0]
        elif info == 27:
            n = struct.unpack(">Q", self.take(8))[0]
        else:
            raise CborError("indefinite length or reserved additional info %d" % info)
        # shortest heads only (SPEC §0): one value, one encoding
        if n < (24 if info == 24 else 1 << (4 << (info - 24))):
            raise CborError("integer or length not in its shortest form")
        return n

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
                t = type(k)
                if t is not int and t is not str:   # so true is never a duplicate of 1
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
