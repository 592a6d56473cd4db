"""A small Modbus RTU master over a UART with an RS485 driver-enable pin.

Reads holding (function 3) and input (function 4) registers into the caller's
preallocated array and returns a fault code (firmware/faults.py): OK, NO_RESPONSE
(nothing within timeout_ms), BAD_CRC, BAD_RESPONSE (wrong unit/function/length or a
truncated reply) or modbus_exception(code) for an exception reply. NO_RESPONSE,
BAD_CRC and BAD_RESPONSE are retried `retries` times; an exception reply is an answer
and is not retried.

RS485 half duplex: DE (and RE, tied to it on most boards) is raised just for the
request and dropped only once the UART has shifted out the last stop bit, or the
request's CRC would be cut and the reply would collide with our own driver. Requests
are spaced by the 3.5-character silence the standard asks for (1.75 ms above 19200
baud). All buffers are allocated once; a read allocates nothing on the way.

The uart needs write(buf) and readinto(buf) -> n or None (non-blocking, as
machine.UART with timeout=0); wait_tx_done(ms), flush() or txdone() are used when
the port has them (see _wait_sent)."""
import array

from firmware import faults

READ_HOLDING = 3
READ_INPUT = 4
MAX_REGISTERS = 125  # the standard's limit for one read

_crc_table = None


def _table():
    global _crc_table
    if _crc_table is None:
        t = array.array("H", bytes(512))
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
            t[i] = c
        _crc_table = t
    return _crc_table


def crc16(buf, n=None):
    """Modbus CRC-16 (poly 0xA001 reflected, init 0xFFFF) of buf[:n]; sent low byte first."""
    t = _table()
    crc = 0xFFFF
    for i in range(len(buf) if n is None else n):
        crc = (crc >> 8) ^ t[(crc ^ buf[i]) & 0xFF]
    return crc


class ModbusMaster:
    def __init__(self, uart, hal, de=None, baudrate=9600, timeout_ms=500, retries=1, echo=False):
        """de: an Output (firmware.hal.Output) or None when the transceiver switches
        itself. echo: True when the transceiver's receiver stays enabled while sending,
        so our own request comes back first and must be skipped."""
        self._uart = uart
        self._hal = hal
        self._de = de
        self.timeout_ms = timeout_ms
        self.retries = retries
        self._echo = echo
        self._char_us = 11 * 1000000 // baudrate  # start + 8 data + parity/stop + stop
        self._gap_us = 1750 if baudrate > 19200 else 35 * self._char_us // 10
        self._tx = bytearray(8)
        self._rx = bytearray(5 + 2 * MAX_REGISTERS + 2)
        self._chunk = bytearray(32)
        self._last_activity = hal.ticks_us()
        self._wait_tx = getattr(uart, "wait_tx_done", None)
        self._flush = getattr(uart, "flush", None)
        self._txdone = getattr(uart, "txdone", None)
        # counters for the status report
        self.requests = 0
        self.no_response = 0
        self.bad_crc = 0
        self.bad_response = 0
        self.exceptions = 0
        if de is not None:
            de.off()
        _table()

    def read_holding(self, unit, start, count, out):
        return self.read(unit, READ_HOLDING, start, count, out)

    def read_input(self, unit, start, count, out):
        return self.read(unit, READ_INPUT, start, count, out)

    def read(self, unit, function, start, count, out):
        """Registers start..start+count-1 of device `unit` into out[0:count]; fault code."""
        if not 1 <= unit <= 247:
            raise ValueError("modbus unit %r out of range: allowed 1..247 (0 is broadcast, "
                             "which never answers a read)" % (unit,))
        if function not in (READ_HOLDING, READ_INPUT):
            raise ValueError("modbus function %r not supported: use 3 (holding) or 4 (input)" % (function,))
        if not 1 <= count <= MAX_REGISTERS or not 0 <= start <= 0xFFFF - count + 1:
            raise ValueError("modbus read of %r registers at %r: count must be 1..125 within 0..65535"
                             % (count, start))
        if len(out) < count:
            raise ValueError("modbus read: out holds %d registers, %d requested" % (len(out), count))
        fault = faults.NO_RESPONSE
        for _ in range(self.retries + 1):
            fault = self._transact(unit, function, start, count, out)
            if fault != faults.NO_RESPONSE and fault != faults.BAD_CRC and fault != faults.BAD_RESPONSE:
                break
        return fault

    def _wait_sent(self, n):
        """Until the UART has sent the request. txdone() is polled first: it is bounded by
        the request's own length, whereas flush() on rp2 v1.22 took ~785 ms (MicroPython
        issue 13377), long enough to miss the device's reply while DE still drives."""
        hal = self._hal
        limit_us = (n + 2) * self._char_us
        if self._txdone is not None:
            t0 = hal.ticks_us()
            while not self._txdone():
                if hal.ticks_diff(hal.ticks_us(), t0) > limit_us:
                    break
                hal.sleep_us(self._char_us // 4 + 1)
        elif self._wait_tx is not None:
            self._wait_tx(limit_us // 1000 + 1)
        elif self._flush is not None:
            self._flush()
        else:
            hal.sleep_us(n * self._char_us)

    def _send(self, n):
        hal = self._hal
        # leave the bus silent for 3.5 characters since the last traffic; ticks_us wraps
        # every 18 minutes, so a negative age means "long ago", not "wait 9 minutes"
        quiet = hal.ticks_diff(hal.ticks_us(), self._last_activity)
        if 0 <= quiet < self._gap_us:
            hal.sleep_us(self._gap_us - quiet)
        u = self._uart
        for _ in range(16):  # drop a late reply to an earlier request (bounded: a babbling bus)
            if not u.readinto(self._chunk):
                break
        if self._de is not None:
            self._de.on()
        u.write(self._tx)
        self._wait_sent(n)
        if self._de is not None:
            # txdone()/flush() may return while the final character is still shifting out
            hal.sleep_us(self._char_us)
            self._de.off()
        self._last_activity = hal.ticks_us()

    def _transact(self, unit, function, start, count, out):
        tx = self._tx
        tx[0] = unit
        tx[1] = function
        tx[2] = start >> 8
        tx[3] = start & 0xFF
        tx[4] = count >> 8
        tx[5] = count & 0xFF
        c = crc16(tx, 6)
        tx[6] = c & 0xFF
        tx[7] = c >> 8
        self.requests += 1
        self._send(8)
        fault = self._receive(unit, function, count)
        if fault == faults.OK:
            rx = self._rx
            for i in range(count):
                out[i] = (rx[3 + 2 * i] << 8) | rx[4 + 2 * i]
        return fault

    def _receive(self, unit, function, count):
        hal = self._hal
        u = self._uart
        rx = self._rx
        chunk = self._chunk
        skip = 8 if self._echo else 0
        need = 5  # until the header says otherwise
        pos = 0
        t0 = hal.ticks_ms()
        while True:
            n = u.readinto(chunk)
            if n:
                self._last_activity = hal.ticks_us()
                for i in range(n):
                    if skip:
                        skip -= 1
                    elif pos < len(rx):
                        rx[pos] = chunk[i]
                        pos += 1
                if pos >= 3:
                    if rx[1] == function:
                        need = 5 + rx[2]
                    elif rx[1] == function | 0x80:
                        need = 5
                    else:
                        need = 5  # garbage or another device's reply: judged below
                if pos >= need:
                    break
                continue
            if hal.ticks_diff(hal.ticks_ms(), t0) >= self.timeout_ms:
                if pos == 0:
                    self.no_response += 1
                    return faults.NO_RESPONSE
                self.bad_response += 1
                return faults.BAD_RESPONSE
            hal.sleep_ms(1)
        c = crc16(rx, need - 2)
        if rx[need - 2] != c & 0xFF or rx[need - 1] != c >> 8:
            self.bad_crc += 1
            return faults.BAD_CRC
        if rx[0] != unit:
            self.bad_response += 1
            return faults.BAD_RESPONSE
        if rx[1] == function | 0x80:
            self.exceptions += 1
            return faults.modbus_exception(rx[2])
        if rx[1] != function or rx[2] != 2 * count:
            self.bad_response += 1
            return faults.BAD_RESPONSE
        return faults.OK
