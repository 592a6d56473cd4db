"""The small Radio interface the node link drives, and helpers every radio shares.

A Radio moves opaque packets; it knows nothing of frame formats (protocol/ does).

    send(data) -> bool     queue one packet; False if refused (too big, module busy
                           past its timeout, asleep and cannot wake): nothing was sent
    poll() -> bytes|None   one received packet, or None; call it often
    busy() -> bool         the module is still taking in or sending a packet
    airtime_ms(n) -> int   estimated time on air of an n-byte packet, for the link's
                           airtime budget
    sleep() / wake()       lowest-power receive-off state and back
    max_payload            the largest packet send() accepts
"""
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

_DEFAULT_GAP_MS = const(10)


class Radio:
    max_payload = 240

    def send(self, data):
        raise NotImplementedError

    def poll(self):
        raise NotImplementedError

    def busy(self):
        return False

    def airtime_ms(self, n):
        return 0

    def sleep(self):
        pass

    def wake(self):
        pass


def lora_airtime_ms(n, sf, bw_hz=125000, cr=1, preamble=8, crc=True, explicit_header=True,
                    low_dr_opt=None):
    """Time on air of an n-byte LoRa packet in ms (Semtech AN1200.13 / SX127x datasheet).

    cr is 1..4 for coding rate 4/5..4/8. Low data rate optimisation defaults to on when
    a symbol lasts 16 ms or more (SF11/SF12 at 125 kHz), as the SX127x requires."""
    t_sym = (1 << sf) * 1000.0 / bw_hz
    if low_dr_opt is None:
        low_dr_opt = t_sym >= 16
    de = 1 if low_dr_opt else 0
    ih = 0 if explicit_header else 1
    num = 8 * n - 4 * sf + 28 + (16 if crc else 0) - 20 * ih
    den = 4 * (sf - 2 * de)
    payload_syms = 8 + max(-(-num // den) * (cr + 4), 0)
    return (preamble + 4.25 + payload_syms) * t_sym


class GapPacketizer:
    """Cuts a UART byte stream into packets at gaps: a packet is complete once no byte
    has arrived for gap_ms. UART LoRa modules output each received packet as one
    back-to-back burst, so the gap is the only boundary they give. Buffers are
    preallocated; a packet longer than the buffer is cut there and counted."""

    def __init__(self, uart, hal, gap_ms=_DEFAULT_GAP_MS, size=256):
        self._uart = uart
        self._hal = hal
        self._gap = gap_ms
        self._buf = bytearray(size)
        self._chunk = bytearray(64)
        self._n = 0
        self._last = 0
        self.overflows = 0

    def pending(self):
        return self._n

    def poll(self):
        hal = self._hal
        got = self._uart.readinto(self._chunk)
        if got:
            buf = self._buf
            room = len(buf) - self._n
            if got > room:
                self.overflows += 1
                got = room
            for i in range(got):
                buf[self._n + i] = self._chunk[i]
            self._n += got
            self._last = hal.ticks_ms()
            return None
        if self._n and hal.ticks_diff(hal.ticks_ms(), self._last) >= self._gap:
            out = bytes(self._buf[:self._n])
            self._n = 0
            return out
        return None
