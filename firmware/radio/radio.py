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


def lora_airtime_ms(n, sf, bw_hz=125000):
    """Time on air of an n-byte LoRa packet in ms (CR 4/5, 8-symbol preamble, explicit
    header, CRC on): protocol/airtime.py has the AN1200.13 arithmetic. Imported here,
    not at the top, so radios that never need it do not keep it resident."""
    from protocol.airtime import airtime_s
    return airtime_s(n, sf, bw_hz) * 1000


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
        if self._n:
            quiet = hal.ticks_diff(hal.ticks_ms(), self._last)
            if quiet < 0 or quiet >= self._gap:  # negative: ticks wrapped, long ago
                out = bytes(self._buf[:self._n])
                self._n = 0
                return out
        return None
