"""Ebyte E22/E32 configuration: the register layouts and the config-mode commands.

Used at provisioning and boot only, so firmware/radio/ebyte.py imports it on demand
and its code is not resident while the node just sends and listens. The layouts are
from the Ebyte manuals (E32: 6-byte block HEAD ADDH ADDL SPED CHAN OPTION; E22:
registers 00..06 ADDH ADDL NETID REG0 REG1 CH REG3). Bad values raise ValueError
naming the key and the allowed values; nothing is written."""
from firmware.radio.ebyte import CONFIG, NORMAL

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


def _command(radio, cmd, reply_len, timeout_ms=300):
    """Send cmd in config mode; the reply bytes, or None if it did not come."""
    u = radio._uart
    for _ in range(16):  # stale bytes from before the mode switch
        if not u.readinto(radio._cmd):
            break
    u.write(cmd)
    hal = radio._hal
    if not reply_len:
        # the E32 saves to its flash with AUX low; give it time before the next command
        hal.sleep_ms(40)
        radio.wait_aux()
        return b""
    got = bytearray()
    t0 = hal.ticks_ms()
    while len(got) < reply_len:
        n = u.readinto(radio._cmd)
        if n:
            got.extend(radio._cmd[:n])
        elif hal.ticks_diff(hal.ticks_ms(), t0) >= timeout_ms:
            return None
        else:
            hal.sleep_ms(2)
    return bytes(got[:reply_len])


def read_config(radio):
    """The module's stored settings as a dict, or None if it does not answer."""
    if not radio.set_mode(CONFIG):
        return None
    try:
        if radio.model == "e32":
            return e32_decode(_command(radio, b"\xc1\xc1\xc1", 6) or b"")
        r = _command(radio, b"\xc1\x00\x07", 10)
        if r is None or r[:3] != b"\xc1\x00\x07":
            return None
        return e22_decode(r[3:])
    finally:
        radio.set_mode(NORMAL)


def read_version(radio):
    """E32: the C3 version reply (C3 32 xx yy) or None."""
    if radio.model != "e32" or not radio.set_mode(CONFIG):
        return None
    try:
        return _command(radio, b"\xc3\xc3\xc3", 4)
    finally:
        radio.set_mode(NORMAL)


def write_config(radio, cfg, save=True):
    """Write settings (missing keys take the module defaults) and read them back.
    True only when the module reports back exactly what was written."""
    if radio.model == "e32":
        block = e32_encode(cfg, save)
    else:
        regs = e22_encode(cfg)
        block = (b"\xc0" if save else b"\xc2") + b"\x00\x07" + regs
    if not radio.set_mode(CONFIG):
        return False
    try:
        if radio.model == "e32":
            _command(radio, block, 0)
            back = _command(radio, b"\xc1\xc1\xc1", 6)
            ok = back is not None and back[1:] == block[1:]
        else:
            back = _command(radio, block, 10)
            ok = back == b"\xc1\x00\x07" + regs
    finally:
        radio.set_mode(NORMAL)
    return ok


def apply(radio, cfg=None, save=True):
    """Make the module agree with its driver `radio` (baud, air rate, fixed mode,
    sub-packet size, RSSI byte) plus cfg, keeping its other settings. Writes only when
    something differs, as the module's own flash wears: safe to call at every boot. True
    when the module ends up as wanted; False if it does not answer or refuses."""
    want = {"uart_baud": radio._baud, "air_rate": radio._air_rate, "fixed": radio.fixed}
    if radio.model == "e22":
        want["sub_packet"] = radio.sub_packet
        want["rssi_byte"] = radio.rssi_byte
    if cfg:
        want.update(cfg)
    have = read_config(radio)
    if have is None:
        return False
    if all(have.get(k) == want[k] for k in want):
        return True
    have.update(want)
    return write_config(radio, have, save)
