"""CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor) for the
serial framing. Check value: crc16(b"123456789") == 0x29B1. Same as CPython's
binascii.crc_hqx(data, 0xFFFF), which the tests use to cross-check."""
try:
    from array import array
except ImportError:  # pragma: no cover
    array = None


def _table():
    t = array("H", [0] * 256)
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
        t[i] = c & 0xFFFF
    return t


_T = _table()


def crc16(data, crc=0xFFFF, start=0, end=None):
    if end is None:
        end = len(data)
    t = _T
    for i in range(start, end):
        crc = ((crc << 8) & 0xFFFF) ^ t[((crc >> 8) ^ data[i]) & 0xFF]
    return crc
