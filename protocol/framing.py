"""Serial framing on the UART (SPEC.md, "Serial framing").

On the line a frame travels as   0x00 | COBS(frame | CRC16) | 0x00
COBS removes every zero byte from the body, so 0x00 only ever means "frame boundary":
after garbage, a lost byte or a power-up mid-frame the receiver is back in step at the
next zero. CRC-16/CCITT-FALSE (big-endian) catches line errors before the MIC is tried,
so noise is counted apart from forgery.

`wrap()` builds the bytes to write. `Deframer` is a pure state machine: feed it whatever
the UART returned, in any pieces, and it returns good frames and reasons for bad ones.
"""
from protocol.crc16 import crc16

MAX_FRAME = 192          # frame bytes (header + payload + MIC), before CRC and COBS
# a piece (the bytes between two 0x00) holds COBS(frame | CRC): one code byte more than
# frame + CRC below 254 bytes, so at most MAX_FRAME + 3 = 195; on the line, with the two
# delimiters, MAX_WIRE = 197 <= 200 (SPEC §1)
MAX_WIRE = MAX_FRAME + 5

# reasons a run of bytes between two delimiters is not a frame
BAD_CRC = "crc"
BAD_COBS = "cobs"
TOO_LONG = "too_long"
TOO_SHORT = "too_short"


def cobs_encode(data):
    out = bytearray()
    code_pos = 0
    out.append(0)
    code = 1
    for b in data:
        if b == 0:
            out[code_pos] = code
            code_pos = len(out)
            out.append(0)
            code = 1
        else:
            out.append(b)
            code += 1
            if code == 0xFF:
                out[code_pos] = code
                code_pos = len(out)
                out.append(0)
                code = 1
    out[code_pos] = code
    return out


def cobs_decode(data, end=None):
    """Decode a COBS block (no delimiters). Returns bytearray or None if malformed."""
    if end is None:
        end = len(data)
    out = bytearray()
    i = 0
    while i < end:
        code = data[i]
        if code == 0:
            return None
        i += 1
        stop = i + code - 1
        if stop > end:
            return None
        out.extend(data[i:stop])
        i = stop
        if code < 0xFF and i < end:
            out.append(0)
    return out


def wrap(frame):
    """The bytes to write to the UART for one frame, as a bytearray: the buffer COBS is
    done in (a bytes copy of it would be garbage at every send on a node)."""
    n = len(frame)
    if n > MAX_FRAME:
        raise ValueError("frame of %d bytes exceeds MAX_FRAME %d" % (n, MAX_FRAME))
    c = crc16(frame)
    # frame | CRC is at most 194 bytes, fewer than 254, so its COBS form is a code byte in
    # front and every zero replaced by the distance to the next zero (or to the end): no
    # 0xFF blocks, nothing moves. So it is done in place, in the one buffer the wire needs
    # (cobs_encode() gives the same bytes; this allocates half as much on a node).
    out = bytearray(n + 5)      # 0x00 | code | frame | CRC | 0x00
    out[2:n + 2] = frame
    out[n + 2] = c >> 8
    out[n + 3] = c & 0xFF
    p = 1
    for i in range(2, n + 4):
        if out[i] == 0:
            out[p] = i - p
            p = i
    out[p] = n + 4 - p
    return out


class Deframer:
    """Splits a byte stream at 0x00 and checks each piece.

    feed(data) -> list of items; an item is `bytes` (a frame whose CRC is good) or a
    `str` reason (BAD_CRC, BAD_COBS, TOO_LONG, TOO_SHORT). Empty pieces (two zeros in a
    row, as between back-to-back frames) are not reported. Memory is bounded and
    preallocated: a piece longer than the largest legal one is skipped while it streams
    in and reported once as TOO_LONG.
    """

    def __init__(self, max_frame=MAX_FRAME):
        self.max_frame = max_frame
        # too_long is judged on the piece as received, before COBS decoding (SPEC §1)
        self._buf = bytearray(max_frame + 3)
        self._n = 0
        self._overflow = False

    def feed(self, data):
        out = []
        buf = self._buf
        cap = len(buf)
        for b in data:
            if b != 0:
                if self._overflow:
                    continue
                if self._n >= cap:
                    self._overflow = True
                    self._n = 0
                    continue
                buf[self._n] = b
                self._n += 1
                continue
            if self._overflow:
                self._overflow = False
                out.append(TOO_LONG)
            elif self._n:
                out.append(self._check(buf, self._n))
                self._n = 0
        return out

    def _check(self, piece, n):
        body = cobs_decode(piece, n)
        if body is None:
            return BAD_COBS
        if len(body) < 3:
            return TOO_SHORT
        n = len(body) - 2       # <= max_frame: COBS decoding drops at least the code byte
        if crc16(body, 0xFFFF, 0, n) != (body[n] << 8) | body[n + 1]:
            return BAD_CRC
        return bytes(body[:n])
