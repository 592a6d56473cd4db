"""Message integrity code: HMAC-SHA256 (RFC 2104) over header and payload with the
node's key, truncated to MIC_LEN bytes (SPEC.md, "MIC"). MicroPython has hashlib.sha256
but no hmac module, so HMAC is written out here; tests cross-check it against CPython's
hmac. Comparison is constant-time."""
import hashlib

MIC_LEN = 8
MIN_KEY_LEN = 16
MAX_KEY_LEN = 64
_BLOCK = 64


class BadKey(ValueError):
    pass


def check_key(key):
    if not isinstance(key, (bytes, bytearray)):
        raise BadKey("key must be bytes")
    if not MIN_KEY_LEN <= len(key) <= MAX_KEY_LEN:
        raise BadKey("key must be 16..64 bytes (32 recommended), got %d" % len(key))
    for b in key:
        if b:
            return key
    raise BadKey("all-zero key refused: generate one with `stationctl keygen`")


class Hmac:
    """Precomputed HMAC-SHA256 for one key: the pads are built once per node, not per frame."""

    def __init__(self, key):
        check_key(key)
        k = bytearray(_BLOCK)
        k[: len(key)] = key
        self._ipad = bytes(b ^ 0x36 for b in k)
        self._opad = bytes(b ^ 0x5C for b in k)

    def digest(self, data, more=b""):
        """HMAC of data followed by more (two pieces: no joined copy to hash)."""
        inner = hashlib.sha256(self._ipad)
        inner.update(data)
        inner.update(more)
        outer = hashlib.sha256(self._opad)
        outer.update(inner.digest())
        return outer.digest()

    def mic(self, data):
        return self.digest(data)[:MIC_LEN]


def hmac_sha256(key, data):
    return Hmac(key).digest(data)


def ct_equal(a, b):
    """Constant-time equality: the time taken does not depend on where bytes differ."""
    if len(a) != len(b):
        return False
    r = 0
    for i in range(len(a)):
        r |= a[i] ^ b[i]
    return r == 0
