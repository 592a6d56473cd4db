"""A simulated Ebyte E22 UART LoRa module between a stand-in node and a gateway, for
`stationctl standin --radio`. Pure: bytes in, bytes out; tools/standin.py does the I/O.

What the node's driver (firmware/radio/ebyte.py) sees is an E22 on its UART that
answers the configuration commands (C1 00 07 read, C0/C2 00 07 + 7 registers write,
replies C1 00 07 + registers, as the E22 manual gives them), transmits everything
else, and hands packets from the air to the node, with the RSSI byte appended when
the node turned it on (REG3 bit 7). In fixed mode (REG3 bit 6) the 3-byte ADDH ADDL
CHAN prefix of each packet is taken off, as the receiving module does.

What the gateway sees is a transparent module (site.toml `[radio] module = "none"`):
payloads only. Simplifications: no airtime, no loss, no collisions; the sim cannot see
M0/M1 (the stand-in's pins are fakes in another process), so a write is taken as a
configuration command when it is exactly one (the node's frames start with 0x00,
protocol/framing.py, never with C0/C1/C2).
"""

# registers 00..06: ADDH ADDL NETID REG0 REG1 REG2(CHAN) REG3, the E22's factory values
E22_FACTORY = bytes([0x00, 0x00, 0x00, 0x62, 0x00, 0x17, 0x03])
N_REGS = 7
RSSI_BIT = 0x80
FIXED_BIT = 0x40


class E22Sim:
    def __init__(self, rssi_dbm=-70):
        self.regs = bytearray(E22_FACTORY)
        self.rssi_dbm = rssi_dbm
        self.commands = 0
        self.packets_up = 0
        self.packets_down = 0

    def _config(self, data):
        """The reply to a configuration command, or None if data is not one."""
        if len(data) < 3 or data[0] not in (0xC0, 0xC1, 0xC2):
            return None
        start, n = data[1], data[2]
        if start + n > N_REGS or n == 0:
            return None
        if data[0] == 0xC1 and len(data) == 3:
            pass
        elif data[0] in (0xC0, 0xC2) and len(data) == 3 + n:
            self.regs[start:start + n] = data[3:3 + n]
        else:
            return None
        self.commands += 1
        return bytes([0xC1, start, n]) + bytes(self.regs[start:start + n])

    def from_node(self, data):
        """The node wrote `data` to the module: (reply to the node, payload put on air)."""
        reply = self._config(bytes(data))
        if reply is not None:
            return reply, None
        payload = bytes(data)
        if self.regs[6] & FIXED_BIT:
            payload = payload[3:]
        if not payload:
            return b"", None
        self.packets_up += 1
        return b"", payload

    def to_node(self, payload):
        """A packet from the air (the gateway wrote it): what the module outputs."""
        self.packets_down += 1
        if self.regs[6] & RSSI_BIT:
            return bytes(payload) + bytes([(256 + self.rssi_dbm) & 0xFF])
        return bytes(payload)
