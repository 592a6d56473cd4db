"""Ebyte E22 (SX1262/68) and E32 (SX1276/78) UART LoRa modules.

Pins: M0/M1 select the mode, AUX (input, low = busy) tells when the module is
taking in, sending or outputting data. Modes (M1, M0):

            E32                 E22
    0 0     normal              normal (transparent or fixed)
    0 1     wake-up (WOR tx)    WOR
    1 0     power saving        configuration (9600 8N1)
    1 1     sleep = config      deep sleep

Configuration runs at 9600 8N1 whatever the data baud (changing the data baud
cannot lock us out): the driver switches the UART to 9600 for it and back.
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

UART_BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
PARITIES = ("8N1", "8O1", "8E1")
E32_AIR_RATES = (300, 1200, 2400, 4800, 9600, 19200)
E22_AIR_RATES = (300, 1200, 2400, 4800, 9600, 19200, 38400, 62500)
E22_SUB_PACKETS = (240, 128, 64, 32)
E32_SUB_PACKET = 58
CONFIG_BAUD = 9600


def _index(key, value, allowed):
    for i in range(len(allowed)):
        if allowed[i] == value:
            return i
    raise ValueError("ebyte config key '%s': %r not allowed: use one of %s"
                     % (key, value, ", ".join([str(a) for a in allowed])))


def _check_range(key, value, lo, hi):
    if not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError("ebyte config key '%s': %r not allowed: use %d..%d" % (key, value, lo, hi))
    return value


# E32 6-byte block: HEAD ADDH ADDL SPED CHAN OPTION
E32_DEFAULTS = {"addr": 0, "chan": 0x17, "uart_baud": 9600, "parity": "8N1", "air_rate": 2400,
                "fixed": False, "push_pull": True, "wor_ms": 250, "fec": True, "power": 0}


def e32_encode(cfg, save=True):
    c = dict(E32_DEFAULTS)
    c.update(cfg)
    addr = _check_range("addr", c["addr"], 0, 0xFFFF)
    sped = (_index("parity", c["parity"], PARITIES) << 6) | \
        (_index("uart_baud", c["uart_baud"], UART_BAUDS) << 3) | \
        _index("air_rate", c["air_rate"], E32_AIR_RATES)
    wor = _index("wor_ms", c["wor_ms"], (250, 500, 750, 1000, 1250, 1500, 1750, 2000))
    option = (0x80 if c["fixed"] else 0) | (0x40 if c["push_pull"] else 0) | (wor << 3) | \
        (0x04 if c["fec"] else 0) | _check_range("power", c["power"], 0, 3)
    return bytes((0xC0 if save else 0xC2, addr >> 8, addr & 0xFF, sped,
                  _check_range("chan", c["chan"], 0, 0xFF), option))


def e32_decode(block):
    if len(block) != 6 or block[0] not in (0xC0, 0xC2):
        return None
    sped, option = block[3], block[5]
    air = sped & 7
    return {"addr": (block[1] << 8) | block[2], "chan": block[4],
            "parity": PARITIES[min(sped >> 6, 2)] if sped >> 6 != 3 else "8N1",
            "uart_baud": UART_BAUDS[(sped >> 3) & 7],
            "air_rate": E32_AIR_RATES[min(air, 5)],
            "fixed": bool(option & 0x80), "push_pull": bool(option & 0x40),
            "wor_ms": 250 * (((option >> 3) & 7) + 1), "fec": bool(option & 0x04),
            "power": option & 3, "sub_packet": E32_SUB_PACKET}


# E22 registers 00..06: ADDH ADDL NETID REG0 REG1 REG2(CH) REG3
E22_DEFAULTS = {"addr": 0, "netid": 0, "uart_baud": 9600, "parity": "8N1", "air_rate": 2400,
                "sub_packet": 240, "rssi_noise": False, "power": 0, "chan": 0x17,
                "rssi_byte": False, "fixed": False, "repeater": False, "lbt": False,
                "wor_tx": False, "wor_ms": 2000}


def e22_encode(cfg):
    c = dict(E22_DEFAULTS)
    c.update(cfg)
    addr = _check_range("addr", c["addr"], 0, 0xFFFF)
    reg0 = (_index("uart_baud", c["uart_baud"], UART_BAUDS) << 5) | \
        (_index("parity", c["parity"], PARITIES) << 3) | \
        _index("air_rate", c["air_rate"], E22_AIR_RATES)
    reg1 = (_index("sub_packet", c["sub_packet"], E22_SUB_PACKETS) << 6) | \
        (0x20 if c["rssi_noise"] else 0) | _check_range("power", c["power"], 0, 3)
    wor = _index("wor_ms", c["wor_ms"], (500, 1000, 1500, 2000, 2500, 3000, 3500, 4000))
    reg3 = (0x80 if c["rssi_byte"] else 0) | (0x40 if c["fixed"] else 0) | \
        (0x20 if c["repeater"] else 0) | (0x10 if c["lbt"] else 0) | \
        (0x08 if c["wor_tx"] else 0) | wor
    return bytes((addr >> 8, addr & 0xFF, _check_range("netid", c["netid"], 0, 0xFF), reg0, reg1,
                  _check_range("chan", c["chan"], 0, 83), reg3))


def e22_decode(regs):
    if len(regs) != 7:
        return None
    reg0, reg1, reg3 = regs[3], regs[4], regs[6]
    par = (reg0 >> 3) & 3
    return {"addr": (regs[0] << 8) | regs[1], "netid": regs[2],
            "uart_baud": UART_BAUDS[reg0 >> 5], "parity": PARITIES[par] if par < 3 else "8N1",
            "air_rate": E22_AIR_RATES[reg0 & 7], "sub_packet": E22_SUB_PACKETS[reg1 >> 6],
            "rssi_noise": bool(reg1 & 0x20), "power": reg1 & 3, "chan": regs[5],
            "rssi_byte": bool(reg3 & 0x80), "fixed": bool(reg3 & 0x40),
            "repeater": bool(reg3 & 0x20), "lbt": bool(reg3 & 0x10),
            "wor_tx": bool(reg3 & 0x08), "wor_ms": 500 * ((reg3 & 7) + 1)}


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
            sub_packet = E32_SUB_PACKET if model == "e32" else 240
        if model == "e22":
            _index("sub_packet", sub_packet, E22_SUB_PACKETS)
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
            self._uart.init(baudrate=CONFIG_BAUD)
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
            self.last_busy_ms = self._hal.ticks_diff(self._hal.ticks_ms(), self._busy_since)
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

    # --- configuration ---------------------------------------------------------------
    def _command(self, cmd, reply_len, timeout_ms=300):
        """Send cmd in config mode; the reply bytes, or None if it did not come."""
        u = self._uart
        for _ in range(16):  # stale bytes from before the mode switch
            if not u.readinto(self._cmd):
                break
        u.write(cmd)
        hal = self._hal
        if not reply_len:
            # the E32 saves to its flash with AUX low; give it time before the next command
            hal.sleep_ms(40)
            self.wait_aux()
            return b""
        got = bytearray()
        t0 = hal.ticks_ms()
        while len(got) < reply_len:
            n = u.readinto(self._cmd)
            if n:
                got.extend(self._cmd[:n])
            elif hal.ticks_diff(hal.ticks_ms(), t0) >= timeout_ms:
                return None
            else:
                hal.sleep_ms(2)
        return bytes(got[:reply_len])

    def read_config(self):
        """The module's stored settings as a dict, or None if it does not answer."""
        if not self.set_mode(CONFIG):
            return None
        try:
            if self.model == "e32":
                return e32_decode(self._command(b"\xc1\xc1\xc1", 6) or b"")
            r = self._command(b"\xc1\x00\x07", 10)
            if r is None or r[:3] != b"\xc1\x00\x07":
                return None
            return e22_decode(r[3:])
        finally:
            self.set_mode(NORMAL)

    def read_version(self):
        """E32: the C3 version reply (C3 32 xx yy) or None."""
        if self.model != "e32" or not self.set_mode(CONFIG):
            return None
        try:
            return self._command(b"\xc3\xc3\xc3", 4)
        finally:
            self.set_mode(NORMAL)

    def write_config(self, cfg, save=True):
        """Write settings (missing keys take the module defaults) and read them back.
        True only when the module reports back exactly what was written."""
        if self.model == "e32":
            block = e32_encode(cfg, save)
        else:
            regs = e22_encode(cfg)
            block = (b"\xc0" if save else b"\xc2") + b"\x00\x07" + regs
        if not self.set_mode(CONFIG):
            return False
        try:
            if self.model == "e32":
                self._command(block, 0)
                back = self._command(b"\xc1\xc1\xc1", 6)
                ok = back is not None and back[1:] == block[1:]
            else:
                back = self._command(block, 10)
                ok = back == b"\xc1\x00\x07" + regs
        finally:
            self.set_mode(NORMAL)
        return ok

    def apply(self, cfg=None, save=True):
        """Write this driver's settings (plus cfg) to the module: baud, air rate, fixed
        mode, sub-packet size and RSSI byte stay consistent with what send() assumes."""
        c = {"uart_baud": self._baud, "air_rate": self._air_rate, "fixed": self.fixed}
        if self.model == "e22":
            c["sub_packet"] = self.sub_packet
            c["rssi_byte"] = self.rssi_byte
        if cfg:
            c.update(cfg)
        return self.write_config(c, save)
