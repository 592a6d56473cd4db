"""Ebyte E22 / E32 UART LoRa module set-up at the gateway.

At start the daemon puts the module in configuration mode (M0/M1 pins), reads its
settings, writes address, channel, air rate and UART speed where they differ (saved to
the module's flash), reads them back, and returns it to transparent mode. A setting
the module does not take is a clear error naming the setting, what was asked and what
the module reports; a module that does not answer is an error that says what to check.
`module = "none"` (a transparent serial link, e.g. in tests) skips all this.

E22 (SX1262/68): registers 00H.. read with `C1 00 07`, written with `C0 00 07 <7 bytes>`
(answer `C1 00 07 <7 bytes>`, `FF FF FF` on a bad command); configuration mode is
M0=0 M1=1 at 9600 8N1. We also switch on the RSSI byte the module appends to every
received packet (REG3 bit 7): the ingest reads it (gateway/radio.py).
E32 (SX1276/78): `C1 C1 C1` reads `C0 ADDH ADDL SPED CHAN OPTION`, `C0 <5 bytes>`
writes and saves; configuration (sleep) mode is M0=1 M1=1 at 9600 8N1.

Mode pins are injected (`pins.set_mode("config" | "normal")`); `GpioPins` drives two
lines through the GPIO character device (`radio.gpio_chip`, default /dev/gpiochip0;
`radio.m0_gpio` / `radio.m1_gpio`: a line offset on that chip or a line name such as
"GPIO22"; default offsets 22 = M0, 27 = M1, the wiring of common Raspberry Pi LoRa HATs)
with libgpiod's Python binding (`gpiod` 2.x). Not /sys/class/gpio: it is read-only under
the unit's ProtectSystem=strict, current Pi kernels are dropping it, and since 6.6 its
global numbers start at 512 on a Pi, while chip offsets stay the BCM numbers.
"""
import logging
import time

log = logging.getLogger("stationgw.lora")

CONFIG_BAUD = 9600
UART_BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)   # code = index
E22_AIR = (300, 1200, 2400, 4800, 9600, 19200, 38400, 62500)           # code = index
E32_AIR = (300, 1200, 2400, 4800, 9600, 19200)                         # code = index
E22_CHANNELS = 84
E32_CHANNELS = 32


class ModuleError(Exception):
    """The module cannot be brought to the configured settings; says what to check."""


class Settings:
    __slots__ = ("address", "channel", "air_rate", "baudrate", "rssi_byte")

    def __init__(self, address, channel, air_rate, baudrate, rssi_byte=False):
        self.address, self.channel, self.air_rate = address, channel, air_rate
        self.baudrate, self.rssi_byte = baudrate, rssi_byte

    def as_dict(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def diff(self, other):
        return [k for k in self.__slots__ if getattr(self, k) != getattr(other, k)]


# ---------------------------------------------------------------------- register codecs

class E22:
    name = "e22"
    config_mode = "config"
    channels = E22_CHANNELS

    @staticmethod
    def read_cmd():
        return b"\xc1\x00\x07"

    @staticmethod
    def reply_len():
        return 10

    @staticmethod
    def parse(reply):
        if reply[:3] != b"\xc1\x00\x07" or len(reply) != 10:
            raise ValueError("unexpected reply %s" % reply.hex())
        r = reply[3:]
        return r, Settings((r[0] << 8) | r[1], r[5], E22_AIR[r[3] & 7], UART_BAUDS[r[3] >> 5],
                           bool(r[6] & 0x80))

    @staticmethod
    def write_cmd(regs, want):
        r = bytearray(regs)
        r[0], r[1] = want.address >> 8, want.address & 0xFF
        # UART speed, parity 8N1 (bits 4-3 = 0), air rate
        r[3] = (UART_BAUDS.index(want.baudrate) << 5) | E22_AIR.index(want.air_rate)
        r[5] = want.channel
        # bit 7 RSSI byte, bit 6 fixed-point mode off (transparent); LBT, relay, WOR kept
        r[6] = (r[6] & 0x3F) | (0x80 if want.rssi_byte else 0)
        return b"\xc0\x00\x07" + bytes(r), b"\xc1\x00\x07" + bytes(r)


class E32:
    name = "e32"
    config_mode = "sleep"
    channels = E32_CHANNELS

    @staticmethod
    def read_cmd():
        return b"\xc1\xc1\xc1"

    @staticmethod
    def reply_len():
        return 6

    @staticmethod
    def parse(reply):
        if len(reply) != 6 or reply[0] not in (0xC0, 0xC2):
            raise ValueError("unexpected reply %s" % reply.hex())
        r = reply[1:]
        air = r[2] & 7
        return r, Settings((r[0] << 8) | r[1], r[3] & 0x1F, E32_AIR[min(air, 5)],
                           UART_BAUDS[(r[2] >> 3) & 7], False)

    @staticmethod
    def write_cmd(regs, want):
        r = bytearray(regs)
        r[0], r[1] = want.address >> 8, want.address & 0xFF
        r[2] = (UART_BAUDS.index(want.baudrate) << 3) | E32_AIR.index(want.air_rate)  # 8N1
        r[3] = (r[3] & 0xE0) | want.channel
        r[4] = r[4] & 0x7F                       # transparent mode
        cmd = b"\xc0" + bytes(r)
        return cmd, cmd


MODELS = {"e22": E22, "e32": E32}


# ---------------------------------------------------------------------- mode pins

class GpioPins:
    """M0/M1 on two lines of a GPIO chip. Modes: normal (0,0); E22 config (M0=0, M1=1);
    E32 sleep/config (1,1). `request_lines(chip, lines)` returns an object with
    `set_values({line: 0|1})` and `release()`: the libgpiod binding by default, a fake
    in tests (the line interface is injected, as the UART is)."""

    LEVELS = {"normal": (0, 0), "config": (0, 1), "sleep": (1, 1)}

    def __init__(self, chip="/dev/gpiochip0", m0=22, m1=27, settle_s=0.05, request_lines=None):
        if not str(chip).startswith("/"):
            chip = "/dev/" + chip
        self.chip, self.m0, self.m1, self.settle_s = chip, m0, m1, settle_s
        try:
            self.req = (request_lines or _gpiod_request)(chip, (m0, m1))
        except (OSError, ValueError, RuntimeError) as e:
            raise ModuleError("cannot drive the module's M0/M1 pins (lines %s/%s on %s: %s): "
                              "check radio.gpio_chip and the line numbers or names "
                              "(`gpioinfo` lists them), run as a user in group gpio, or set "
                              "radio.module = \"none\" and set the module up with its vendor "
                              "tool" % (m0, m1, chip, getattr(e, "strerror", None) or e)) \
                from None

    def set_mode(self, mode):
        v0, v1 = self.LEVELS[mode]
        self.req.set_values({self.m0: v0, self.m1: v1})
        time.sleep(self.settle_s)

    def close(self):
        self.req.release()


class _GpiodLines:
    """The libgpiod 2.x request behind GpioPins."""

    def __init__(self, chip, lines):
        try:
            import gpiod
            from gpiod.line import Direction, Value
        except ImportError:
            raise RuntimeError("the gpiod package (libgpiod 2.x binding) is not installed: "
                               "`pip install gpiod`") from None
        self._value = {0: Value.INACTIVE, 1: Value.ACTIVE}
        self._req = gpiod.request_lines(
            chip, consumer="stationgw",
            config={tuple(lines): gpiod.LineSettings(direction=Direction.OUTPUT,
                                                     output_value=Value.INACTIVE)})

    def set_values(self, values):
        self._req.set_values({k: self._value[v] for k, v in values.items()})

    def release(self):
        self._req.release()


def _gpiod_request(chip, lines):
    return _GpiodLines(chip, lines)


# ---------------------------------------------------------------------- the procedure

def _exchange(ser, cmd, n, timeout_s):
    ser.reset_input_buffer()
    ser.write(cmd)
    ser.flush()
    out = b""
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        chunk = ser.read(n - len(out))
        if chunk:
            out += chunk
        else:
            time.sleep(0.005)
    return out


def configure(ser, model, want, pins, timeout_s=1.0, retries=2):
    """Bring the module on `ser` to `want` (Settings). Returns the Settings it reports.
    Raises ModuleError with what to check."""
    m = MODELS[model]
    if not 0 <= want.channel < m.channels:
        raise ModuleError("radio.channel %d: an %s has channels 0..%d"
                          % (want.channel, model.upper(), m.channels - 1))
    if model == "e32":
        want = Settings(want.address, want.channel, want.air_rate, want.baudrate, False)
    port = getattr(ser, "port", "?")
    old_timeout = ser.timeout
    pins.set_mode(m.config_mode)
    try:
        ser.baudrate = CONFIG_BAUD
        ser.timeout = 0.05
        regs, have = _read(ser, m, timeout_s, retries, port)
        changed = have.diff(want)
        if changed:
            log.info("event=module_write model=%s fields=%s", model, ",".join(changed))
            cmd, expect = m.write_cmd(regs, want)
            reply = _exchange(ser, cmd, len(expect), timeout_s)
            if reply[:3] == b"\xff\xff\xff":
                raise ModuleError("the %s on %s refused the settings write (FF FF FF): is it an "
                                  "%s? Check radio.module" % (model.upper(), port, model.upper()))
            regs, have = _read(ser, m, timeout_s, retries, port)
            still = have.diff(want)
            if still:
                raise ModuleError("the %s on %s does not take %s: asked %s, it reports %s. The "
                                  "module may be a different band or model; set a value it "
                                  "supports in radio.* or replace the module" % (
                                      model.upper(), port, ", ".join(still),
                                      ", ".join("%s=%s" % (k, getattr(want, k)) for k in still),
                                      ", ".join("%s=%s" % (k, getattr(have, k)) for k in still)))
    finally:
        pins.set_mode("normal")
        ser.timeout = old_timeout
    ser.baudrate = want.baudrate          # the module's UART now runs at radio.baudrate
    return have


def _read(ser, m, timeout_s, retries, port):
    last = b""
    for _ in range(retries + 1):
        last = _exchange(ser, m.read_cmd(), m.reply_len(), timeout_s)
        try:
            return m.parse(last)
        except (ValueError, IndexError):
            continue
    if not last:
        raise ModuleError("no answer from the LoRa module on %s in configuration mode: check "
                          "its M0/M1 wiring and power, that radio.port is right, and that no "
                          "other program holds the port" % port)
    raise ModuleError("the module on %s answers %s to a settings read, not what an %s sends: "
                      "check radio.module" % (port, last.hex(" "), m.name.upper()))


def configure_from_config(ser, radio, pins=None):
    """The daemon's entry: radio is gateway.config.Radio. Returns a dict for the logs and
    status (with rssi_byte: the ingest must expect an RSSI byte after each packet)."""
    if pins is None:
        pins = GpioPins(getattr(radio, "gpio_chip", "/dev/gpiochip0"), radio.m0_gpio,
                        radio.m1_gpio)
    want = Settings(radio.address, radio.channel, radio.air_rate, radio.baudrate,
                    radio.module == "e22")
    have = configure(ser, radio.module, want, pins)
    d = have.as_dict()
    d["model"] = radio.module
    return d
