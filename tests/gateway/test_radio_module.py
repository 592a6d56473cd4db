"""E22/E32 module set-up against a small fake module on a pty pair (pyserial on the
gateway side, the fake's register file behind the master end). The mode pins are a
fake too: they are GPIO, which a CI box does not have."""
import os
import threading
import tty

import pytest
import serial

from gateway import lora_module as lm


class FakePins:
    def __init__(self, module):
        self.module = module
        self.modes = []

    def set_mode(self, mode):
        self.modes.append(mode)
        self.module.mode = mode


class FakeModule:
    """Answers register commands in configuration mode, like the datasheets say.
    `locked`: settings it silently does not take (a different band or model)."""

    def __init__(self, model, regs, locked=(), silent=False):
        self.model = model
        self.regs = bytearray(regs)
        self.locked = set(locked)
        self.silent = silent
        self.mode = "normal"
        self.saved = 0
        self.m, s = os.openpty()
        tty.setraw(self.m)
        tty.setraw(s)
        self._s = s
        self.path = os.ttyname(s)
        self._stop = threading.Event()
        self._buf = b""
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        import select
        while not self._stop.is_set():
            r, _, _ = select.select([self.m], [], [], 0.02)
            if not r:
                continue
            try:
                self._buf += os.read(self.m, 256)
            except OSError:
                return
            if self.mode == "normal" or self.silent:
                self._buf = b""           # normal mode: bytes go on the air
                continue
            self._handle()

    def _handle(self):
        b = self._buf
        if self.model == "e22":
            if b[:3] == b"\xc1\x00\x07":
                self._buf = b[3:]
                os.write(self.m, b"\xc1\x00\x07" + bytes(self.regs))
            elif b[:3] == b"\xc0\x00\x07" and len(b) >= 10:
                self._buf = b[10:]
                self._apply(b[3:10])
                os.write(self.m, b"\xc1\x00\x07" + bytes(self.regs))
            elif len(b) >= 3 and b[:3] != b"\xc0\x00\x07":
                self._buf = b""
                os.write(self.m, b"\xff\xff\xff")
        else:
            if b[:3] == b"\xc1\xc1\xc1":
                self._buf = b[3:]
                os.write(self.m, b"\xc0" + bytes(self.regs))
            elif b[:1] == b"\xc0" and len(b) >= 6:
                self._buf = b[6:]
                self._apply(b[1:6])
                os.write(self.m, b"\xc0" + bytes(self.regs))

    def _apply(self, new):
        new = bytearray(new)
        if self.model == "e22":
            if "channel" in self.locked:
                new[5] = self.regs[5]
            if "air_rate" in self.locked:
                new[3] = (new[3] & 0xF8) | (self.regs[3] & 7)
        else:
            if "channel" in self.locked:
                new[3] = self.regs[3]
        self.regs[:] = new
        self.saved += 1

    def close(self):
        self._stop.set()
        self.t.join(1)
        os.close(self.m)
        os.close(self._s)


@pytest.fixture
def module():
    made = []

    def make(*a, **kw):
        f = FakeModule(*a, **kw)
        made.append(f)
        return f
    yield make
    for f in made:
        f.close()


# E22 factory state: address 0, NETID 0, 9600 8N1 2.4k, 240 B sub-packets, channel 0x17,
# no RSSI byte, transparent, LBT on (bit 4) which we must keep.
E22_FACTORY = bytes([0x00, 0x00, 0x00, 0x62, 0x00, 0x17, 0x10])
E32_FACTORY = bytes([0x00, 0x00, 0x1A, 0x17, 0x44])


def open_port(path):
    return serial.Serial(path, 19200, timeout=0)


# A module that answers ends each exchange as soon as its reply is complete, so a
# generous timeout costs nothing and a busy box's stall is not taken for silence.
LOADED_S = 10.0


def test_e22_settings_read_written_and_read_back(module):
    fake = module("e22", E22_FACTORY)
    ser = open_port(fake.path)
    pins = FakePins(fake)
    want = lm.Settings(address=0x0102, channel=18, air_rate=4800, baudrate=19200, rssi_byte=True)
    have = lm.configure(ser, "e22", want, pins, timeout_s=LOADED_S)
    ser.close()
    assert have.diff(want) == []
    assert fake.saved == 1
    assert fake.regs[0:2] == b"\x01\x02" and fake.regs[5] == 18
    assert fake.regs[3] == (4 << 5) | 3                # 19200 baud, 8N1, 4.8k
    assert fake.regs[6] & 0x80 and fake.regs[6] & 0x10  # RSSI byte on, LBT kept
    assert pins.modes == ["config", "normal"]
    assert ser.baudrate == 19200


def test_e22_already_right_is_not_rewritten(module):
    regs = bytes([0x00, 0x05, 0x00, 0x62, 0x00, 18, 0x90])
    fake = module("e22", regs)
    ser = open_port(fake.path)
    have = lm.configure(ser, "e22", lm.Settings(5, 18, 2400, 9600, True), FakePins(fake),
                        timeout_s=LOADED_S)
    ser.close()
    assert fake.saved == 0 and have.channel == 18


def test_e22_setting_it_will_not_take_is_a_clear_error(module):
    fake = module("e22", E22_FACTORY, locked={"channel"})
    ser = open_port(fake.path)
    pins = FakePins(fake)
    with pytest.raises(lm.ModuleError) as e:
        lm.configure(ser, "e22", lm.Settings(0, 70, 2400, 9600, True), pins, timeout_s=LOADED_S)
    ser.close()
    text = str(e.value)
    assert "does not take channel" in text and "asked channel=70" in text and \
        "it reports channel=23" in text
    assert pins.modes[-1] == "normal"                   # left in transparent mode


def test_silent_module_says_what_to_check(module):
    fake = module("e22", E22_FACTORY, silent=True)
    ser = open_port(fake.path)
    with pytest.raises(lm.ModuleError, match="no answer from the LoRa module.*M0/M1"):
        lm.configure(ser, "e22", lm.Settings(0, 18, 2400, 9600), FakePins(fake), timeout_s=0.2,
                     retries=1)
    ser.close()


def test_wrong_model_is_named(module):
    fake = module("e22", E22_FACTORY)          # an E22 answers FF FF FF to E32 commands
    fake.mode = "sleep"
    ser = open_port(fake.path)
    with pytest.raises(lm.ModuleError, match="answers ff ff ff.*not what an E32 sends: check "
                                             "radio.module"):
        # the 3-byte answer is only judged when the 6-byte read times out: 3 s, so that
        # an answer a busy box delays is not taken for silence
        lm.configure(ser, "e32", lm.Settings(0, 18, 2400, 9600), FakePins(fake), timeout_s=3.0,
                     retries=0)
    ser.close()


def test_e32_settings_written(module):
    fake = module("e32", E32_FACTORY)
    ser = open_port(fake.path)
    pins = FakePins(fake)
    have = lm.configure(ser, "e32", lm.Settings(7, 15, 9600, 9600, True), pins,
                        timeout_s=LOADED_S)
    ser.close()
    assert (have.address, have.channel, have.air_rate, have.baudrate, have.rssi_byte) == \
        (7, 15, 9600, 9600, False)
    assert fake.regs[2] == (3 << 3) | 4 and fake.regs[3] & 0x1F == 15
    assert pins.modes == ["sleep", "normal"]


def test_channel_out_of_the_model_range_refused_before_touching_it(module):
    fake = module("e32", E32_FACTORY)
    ser = open_port(fake.path)
    pins = FakePins(fake)
    with pytest.raises(lm.ModuleError, match="channels 0..31"):
        lm.configure(ser, "e32", lm.Settings(0, 40, 2400, 9600), pins)
    ser.close()
    assert pins.modes == []


def test_gpio_unavailable_is_a_clear_error(tmp_path):
    with pytest.raises(lm.ModuleError, match="M0/M1.*gpio_chip.*radio.module = \"none\""):
        lm.GpioPins(str(tmp_path / "gpiochip9"))          # the real libgpiod binding


class FakeLines:
    """The injected line interface: records what the driver sets."""

    def __init__(self, chip, lines):
        self.chip, self.lines, self.values, self.released = chip, lines, [], False

    def set_values(self, values):
        self.values.append(dict(values))

    def release(self):
        self.released = True


def test_mode_pins_go_through_the_character_device_lines():
    made = []

    def request(chip, lines):
        made.append(FakeLines(chip, lines))
        return made[-1]
    pins = lm.GpioPins("gpiochip0", 22, "GPIO27", settle_s=0, request_lines=request)
    assert (made[0].chip, made[0].lines) == ("/dev/gpiochip0", (22, "GPIO27"))
    for mode in ("config", "normal", "sleep"):
        pins.set_mode(mode)
    assert made[0].values == [{22: 0, "GPIO27": 1}, {22: 0, "GPIO27": 0},
                              {22: 1, "GPIO27": 1}]
    pins.close()
    assert made[0].released


def test_no_sysfs_gpio_anywhere_in_the_gateway():
    import pathlib
    for f in pathlib.Path(lm.__file__).parent.glob("*.py"):
        assert "/sys/class/gpio\"" not in f.read_text() and "gpio/export" not in f.read_text(), f
