"""Ebyte E22 (SX1262/68) and E32 (SX1276/78) UART LoRa modules.

Pins: M0/M1 select the mode, AUX (input, low = busy) tells when the module is
taking in, sending or outputting data. Modes (M1, M0):

            E32                 E22
    0 0     normal              normal (transparent or fixed)
    0 1     wake-up (WOR tx)    WOR
    1 0     power saving        configuration (9600 8N1)
    1 1     sleep = config      deep sleep

Configuration runs at 9600 8N1 whatever the data baud (changing the data baud
cannot lock us out): the driver switches the UART to 9600 for it and back. The
register layouts and commands live in ebyte_config.py, which boot and provisioning code
imports (it imports this module, never the reverse), so they are not resident.
E32: C1 C1 C1 reads the 6-byte block C0 ADDH ADDL SPED CHAN OPTION, C0 (save) or
C2 (no save) + 5 bytes writes it, C3 C3 C3 reads the version. E22: C1 00 07 reads
registers 00..06, C0 00 07 + 7 bytes writes them (C2 for no save); the module
answers C1 00 07 + registers. AUX does not mark the end of an E22 command, so the
driver waits for the reply bytes instead.

Packets: a send() larger than the module's sub-packet (E32: 58 bytes, E22: 240/128/
64/32 as configured), counting the 3-byte ADDH ADDL CHAN prefix in fixed mode, is
refused: the module would split it into several radio packets that the receiving
module outputs as separate bursts, and the far end could not reassemble them
reliably. send() waits for AUX high (module idle) before writing and gives up after
aux_timeout_ms. In fixed mode the receiving module outputs only the payload.

Airtime: Ebyte does not document how its "air data rate" maps to LoRa SF/BW, so
airtime_ms() estimates from the nominal rate with a 24-byte allowance for preamble,
header and CRC (close to, and above, AN1200.13 for SF7-SF9 at equal bit rates);
give lora=(sf, bw_hz) once the module's setting is known to use the exact formula.
AUX rises when the last packet *starts* on air (E32 manual 6.2), so AUX low time is
kept as last_busy_ms for diagnostics, not as airtime."""
from firmware.radio.radio import GapPacketizer, Radio, lora_airtime_ms

NORMAL = 0
WAKEUP = 1
POWER_SAVE = 2
CONFIG = 3
SLEEP = 4

# mode -> (M1, M0)
_PINS = {
    "e32": {NORMAL: (0, 0), WAKEUP: (0, 1), POWER_SAVE: (1, 0), CONFIG: (1, 1), SLEEP: (1, 1)},
    "e22": {NORMAL: (0, 0), WAKEUP: (0, 1), CONFIG: (1, 0), SLEEP: (1, 1)},
}

class EbyteRadio(Radio):
    def __init__(self, uart, m0, m1, aux, hal, model="e22", baudrate=9600, air_rate=2400,
                 sub_packet=None, fixed=False, dest=None, rssi_byte=False,
                 aux_timeout_ms=1000, gap_ms=None, lora=None):
        """m0, m1: output pins; aux: input pin. dest=(addr, chan) is the default target
        in fixed mode. The settings here must match the module's stored configuration:
        apply() writes them, read_config() checks them."""
        if model not in _PINS:
            raise ValueError("ebyte model %r not supported: use e22 or e32" % (model,))
        self.model = model
        self._uart = uart
        self._m0 = m0
        self._m1 = m1
        self._aux = aux
        self._hal = hal
        self._baud = baudrate
        self._air_rate = air_rate
        self._lora = lora
        if sub_packet is None:
            sub_packet = 58 if model == "e32" else 240
        if model == "e22" and sub_packet not in (240, 128, 64, 32):
            raise ValueError("ebyte e22 sub_packet %r not allowed: use 240, 128, 64 or 32" % (sub_packet,))
        self.sub_packet = sub_packet
        self.fixed = fixed
        self.dest = dest
        self.rssi_byte = rssi_byte and model == "e22"
        self.max_payload = sub_packet - (3 if fixed else 0)
        self._aux_timeout = aux_timeout_ms
        # a received packet is one burst; end it after ~4 character times of silence
        if gap_ms is None:
            gap_ms = max(5, 4 * 11000 // baudrate + 2)
        self._rx = GapPacketizer(uart, hal, gap_ms)
        self._tx = bytearray(sub_packet)
        self._txmv = memoryview(self._tx)
        self._cmd = bytearray(16)
        self.mode = None
        self._busy_since = None
        self.last_busy_ms = None
        self.last_rssi = None
        self.sent = 0
        self.refused = 0
        self.aux_timeouts = 0

    # --- modes -----------------------------------------------------------------
    def wait_aux(self, timeout_ms=None):
        """True once AUX is high (module idle); False after the timeout."""
        hal = self._hal
        t0 = hal.ticks_ms()
        limit = self._aux_timeout if timeout_ms is None else timeout_ms
        while not self._aux.value():
            if hal.ticks_diff(hal.ticks_ms(), t0) >= limit:
                return False
            hal.sleep_ms(1)
        return True

    def set_mode(self, mode):
        if mode == self.mode:
            return True
        pins = _PINS[self.model].get(mode)
        if pins is None:
            raise ValueError("ebyte %s has no mode %r" % (self.model, mode))
        if not self.wait_aux():  # switching while busy may abort a transmission
            self.aux_timeouts += 1
            return False
        self._m1.value(pins[0])
        self._m0.value(pins[1])
        self._hal.sleep_ms(2)
        ok = self.wait_aux()
        self._hal.sleep_ms(2)  # the modules want a moment after AUX rises
        if not ok:
            self.aux_timeouts += 1
            self.mode = None
            return False
        if mode == CONFIG:
            self._uart.init(baudrate=9600)  # configuration always runs at 9600 8N1
        elif self.mode == CONFIG:
            self._uart.init(baudrate=self._baud)
        self.mode = mode
        return True

    def sleep(self):
        return self.set_mode(SLEEP)

    def wake(self):
        return self.set_mode(NORMAL)

    def busy(self):
        busy = not self._aux.value()
        if busy:
            if self._busy_since is None:
                self._busy_since = self._hal.ticks_ms()
        elif self._busy_since is not None:
            d = self._hal.ticks_diff(self._hal.ticks_ms(), self._busy_since)
            self.last_busy_ms = d if d >= 0 else None  # negative: ticks wrapped, unknown
            self._busy_since = None
        return busy

    # --- data ---------------------------------------------------------------------
    def airtime_ms(self, n):
        if self._lora is not None:
            return int(lora_airtime_ms(n, self._lora[0], self._lora[1]) + 0.999)
        return (8000 * (n + 24) + self._air_rate - 1) // self._air_rate

    def send(self, data, dest=None):
        n = len(data)
        total = n + 3 if self.fixed else n
        if n == 0 or total > self.sub_packet:
            self.refused += 1
            return False
        if self.mode != NORMAL and not self.set_mode(NORMAL):
            return False
        if not self.wait_aux():
            self.aux_timeouts += 1
            return False
        tx = self._tx
        at = 0
        if self.fixed:
            addr, chan = dest or self.dest or (0xFFFF, 0)
            tx[0] = addr >> 8
            tx[1] = addr & 0xFF
            tx[2] = chan
            at = 3
        for i in range(n):
            tx[at + i] = data[i]
        self._uart.write(self._txmv[:total])
        self._busy_since = self._hal.ticks_ms()
        self.sent += 1
        return True

    def poll(self):
        pkt = self._rx.poll()
        if pkt is not None and self.rssi_byte and len(pkt) > 1:
            self.last_rssi = pkt[-1] - 256  # dBm = -(256 - RSSI)
            pkt = pkt[:-1]
        return pkt
