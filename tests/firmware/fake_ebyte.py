"""A fake Ebyte E22/E32 UART LoRa module, written from the Ebyte manuals independently
of firmware/radio/ebyte.py so the two check each other.

It sits on a fake machine UART (in-memory), reads its M0/M1 pins on every byte
burst, drives AUX low while it "transmits" (on the test's fake clock), answers the
configuration commands only in configuration mode and only at 9600 baud, splits
writes larger than its sub-packet size into several packets on the air as the real
module does, and hands packets to peer modules on the same channel and address."""

E32_FACTORY = bytes([0xC0, 0x00, 0x00, 0x1A, 0x17, 0x44])   # 9600 8N1, 2.4k, ch 23, transparent
E22_FACTORY = bytes([0x00, 0x00, 0x00, 0x62, 0x00, 0x17, 0x03])
_E22_SUB = (240, 128, 64, 32)
_BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
_AIR = (300, 1200, 2400, 4800, 9600, 19200, 38400, 62500)


class Air:
    """The shared medium: every module on it hears every packet it is tuned to."""

    def __init__(self, clock):
        self.clock = clock
        self.modules = []
        self.packets = []  # (sender, dest_addr or None, chan, payload)
        self._due = []     # (deliver_at_us, receiver, bytes)

    def pump(self):
        """Hand every packet whose airtime has passed to its receivers' UARTs."""
        now = self.clock.us
        for item in [d for d in self._due if d[0] <= now]:
            self._due.remove(item)
            item[1].uart.feed(item[2])

    def run(self, ms, radios=()):
        """Let ms of fake time pass, 1 ms at a time, polling the radios; their packets."""
        got = []
        for _ in range(ms):
            self.clock.advance_ms(1)
            self.pump()
            for r in radios:
                p = r.poll()
                if p is not None:
                    got.append((r, p))
        return got


class FakeEbyte:
    def __init__(self, model, uart, m0, m1, aux, clock, air):
        self.model = model
        self.uart = uart
        self.m0, self.m1, self.aux = m0, m1, aux
        self.clock = clock
        self.air = air
        air.modules.append(self)
        self.e32 = bytearray(E32_FACTORY)
        self.e22 = bytearray(E22_FACTORY)
        self.saved = None
        self.config_writes = 0
        self.busy_until_us = 0
        self.hung = False
        self.rssi = 0xB0  # -80 dBm
        self.written_while_busy = 0
        self.ignored = []  # (reason, bytes)
        self.received = 0
        aux.source = self._aux_level
        uart.on_write = self._on_bytes

    # --- state as the manuals define it ------------------------------------------------
    def _aux_level(self):
        return 0 if self.hung or self.clock.us < self.busy_until_us else 1

    def mode(self):
        m1, m0 = self.m1.value(), self.m0.value()
        if self.model == "e32":
            return {(0, 0): "normal", (0, 1): "wakeup", (1, 0): "powersave", (1, 1): "config"}[(m1, m0)]
        return {(0, 0): "normal", (0, 1): "wor", (1, 0): "config", (1, 1): "sleep"}[(m1, m0)]

    def addr(self):
        r = self.e32 if self.model == "e32" else self.e22
        return (r[1] << 8) | r[2] if self.model == "e32" else (r[0] << 8) | r[1]

    def chan(self):
        return self.e32[4] if self.model == "e32" else self.e22[5]

    def fixed(self):
        return bool(self.e32[5] & 0x80) if self.model == "e32" else bool(self.e22[6] & 0x40)

    def sub_packet(self):
        return 58 if self.model == "e32" else _E22_SUB[self.e22[4] >> 6]

    def data_baud(self):
        return _BAUDS[(self.e32[3] >> 3) & 7] if self.model == "e32" else _BAUDS[self.e22[3] >> 5]

    def air_bps(self):
        code = self.e32[3] & 7 if self.model == "e32" else self.e22[3] & 7
        return _AIR[min(code, 5) if self.model == "e32" else code]

    # --- UART side ----------------------------------------------------------------------
    def _on_bytes(self, data):
        mode = self.mode()
        if mode == "config":
            if self.uart.baudrate != 9600:
                self.ignored.append(("config not at 9600", data))
                return
            self._command(bytes(data))
        elif mode in ("normal", "wakeup", "wor"):
            if self.uart.baudrate != self.data_baud():
                self.ignored.append(("baud mismatch", data))
                return
            self._transmit(bytes(data))
        else:
            self.ignored.append((mode, data))

    def _command(self, cmd):
        reply = None
        if self.model == "e32":
            if cmd == b"\xc1\xc1\xc1":
                reply = bytes(self.e32)
            elif cmd == b"\xc3\xc3\xc3":
                reply = b"\xc3\x32\x48\x14"
            elif len(cmd) == 6 and cmd[0] in (0xC0, 0xC2):
                self.e32[:] = cmd
                self.e32[0] = 0xC0
                if cmd[0] == 0xC0:
                    self.saved = bytes(self.e32)
                self.config_writes += 1
                self.busy_until_us = self.clock.us + 30000  # saving: AUX low ~30 ms
            else:
                self.ignored.append(("bad e32 command", cmd))
        else:
            if len(cmd) == 3 and cmd[0] == 0xC1 and cmd[1] + cmd[2] <= 7:
                a, n = cmd[1], cmd[2]
                reply = b"\xc1" + cmd[1:3] + bytes(self.e22[a:a + n])
            elif len(cmd) >= 3 and cmd[0] in (0xC0, 0xC2) and len(cmd) == 3 + cmd[2] \
                    and cmd[1] + cmd[2] <= 9:
                a, n = cmd[1], cmd[2]
                for i in range(n):
                    if a + i < 7:  # 07/08 (crypt key) are write-only
                        self.e22[a + i] = cmd[3 + i]
                if cmd[0] == 0xC0:
                    self.saved = bytes(self.e22)
                self.config_writes += 1
                reply = b"\xc1" + cmd[1:]
            else:
                reply = b"\xff\xff\xff"
        if reply is not None:
            self.uart.feed(reply)

    def _transmit(self, data):
        if self.clock.us < self.busy_until_us or self.hung:
            self.written_while_busy += 1
        dest = None
        chan = self.chan()
        if self.fixed():
            dest, chan, data = (data[0] << 8) | data[1], data[2], data[3:]
        size = self.sub_packet()
        t_us = max(self.busy_until_us, self.clock.us)
        for i in range(0, len(data), size):
            part = data[i:i + size]
            self.air.packets.append((self, dest, chan, part))
            t_us += (len(part) + 24) * 8 * 1000000 // self.air_bps()
            for m in self.air.modules:
                if m is not self:
                    m._hear(dest, chan, part, t_us)
        self.busy_until_us = t_us

    def _hear(self, dest, chan, payload, at_us):
        if self.mode() not in ("normal", "wakeup", "wor") or chan != self.chan():
            return
        if dest is not None and dest not in (0xFFFF, self.addr()):
            return
        self.received += 1
        extra = bytes([self.rssi]) if self.model == "e22" and self.e22[6] & 0x80 else b""
        self.air._due.append((at_us + 5000, self, payload + extra))  # output 5 ms after reception
