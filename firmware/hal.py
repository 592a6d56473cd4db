"""Hardware seam: the one module that touches `machine`, `time`, `os` and files.

Everything else gets a Hal (or the pin/uart/adc objects it hands out) as a
constructor argument and never imports `machine` itself. Tests build a Hal around a
fake machine module and a fake clock (tests/mpy_fakes/machine.py); on the unix port
that same fake shadows the built-in `machine` when tests/mpy_fakes is on the path.

    hal = Hal()                                  # on a board
    hal = Hal(machine=fake, clock=fake.FakeClock(), root="/tmp/x")   # in a test
"""
import os

# machine.ADC attenuation constant names (esp32 port) by the name used in board files
ATTEN_NAMES = {"0db": "ATTN_0DB", "2.5db": "ATTN_2_5DB", "6db": "ATTN_6DB", "11db": "ATTN_11DB"}

_RESET_NAMES = (("PWRON_RESET", "power_on"), ("HARD_RESET", "hard"), ("WDT_RESET", "watchdog"),
                ("DEEPSLEEP_RESET", "deep_sleep"), ("SOFT_RESET", "soft"), ("BROWNOUT_RESET", "brownout"))
_WAKE_NAMES = (("PIN_WAKE", "pin"), ("EXT0_WAKE", "ext0"), ("EXT1_WAKE", "ext1"),
               ("TIMER_WAKE", "timer"), ("TOUCHPAD_WAKE", "touch"), ("ULP_WAKE", "ulp"))


def _default_clock():
    import time
    if not hasattr(time, "ticks_ms"):
        raise ValueError("Hal: this Python has no time.ticks_ms (CPython?): pass clock=, "
                         "e.g. tests/firmware/fake_hw.HostClock or the fake machine's FakeClock")
    return time


class AdcChannel:
    """One ADC input, read in microvolts whatever the port.

    esp32 ports use read_uv(), which applies the chip's eFuse calibration; rp2 uses
    read_u16() scaled to the reference. floor_uv/ceiling_uv bound the range where the
    converter is linear for this attenuation (board file data); adc_filter flags
    readings outside it instead of trusting them."""

    def __init__(self, adc, floor_uv, ceiling_uv, vref_uv=3300000, uv_method=False):
        self.adc = adc
        self.floor_uv = floor_uv
        self.ceiling_uv = ceiling_uv
        self._vref_100uv = vref_uv // 100
        if uv_method:
            self.read_uv = adc.read_uv

    def read_uv(self):
        # 12-bit code times the reference in 100 uV steps stays a small int (< 2**30):
        # no bigint allocation per sample.
        code = self.adc.read_u16() >> 4
        return (code * self._vref_100uv // 4095) * 100


class Hal:
    def __init__(self, machine=None, clock=None, root="", esp32=None):
        if machine is None:
            import machine
        self.machine = machine
        self.clock = clock or _default_clock()
        self.root = root
        self._esp32 = esp32
        c = self.clock
        # bound once: these run on hot paths (IRQ handlers, sampling loops)
        self.ticks_ms = c.ticks_ms
        self.ticks_us = c.ticks_us
        self.ticks_diff = c.ticks_diff
        self.ticks_add = c.ticks_add
        self.sleep_ms = c.sleep_ms
        self.sleep_us = c.sleep_us

    # --- pins -------------------------------------------------------------------
    def pin_in(self, num, pull=None):
        """pull: None, "up" or "down"."""
        P = self.machine.Pin
        if pull == "up":
            return P(num, P.IN, P.PULL_UP)
        if pull == "down":
            return P(num, P.IN, P.PULL_DOWN)
        if pull is not None:
            raise ValueError("pin %r: pull %r not allowed: use None, 'up' or 'down'" % (num, pull))
        return P(num, P.IN)

    def pin_out(self, num, value=0):
        P = self.machine.Pin
        return P(num, P.OUT, value=value)

    # --- ADC ----------------------------------------------------------------------
    def adc(self, mcu, spec):
        """An AdcChannel for a board-file ADC entry: {"pin": n, "atten": "11db",
        "floor_mv": 150, "ceiling_mv": 2450, "bits": 12} on esp32 (bits optional),
        {"pin": 26} or {"channel": 4} on rp2040."""
        m = self.machine
        floor_uv = spec.get("floor_mv", 0) * 1000
        ceiling_uv = spec.get("ceiling_mv", 3300) * 1000
        if mcu.startswith("esp32"):
            atten = spec.get("atten", "11db")
            if atten not in ATTEN_NAMES:
                raise ValueError("ADC pin %r: atten %r not allowed: use one of %s"
                                 % (spec.get("pin"), atten, ", ".join(sorted(ATTEN_NAMES))))
            a = getattr(m.ADC, ATTEN_NAMES[atten])
            try:
                adc = m.ADC(m.Pin(spec["pin"]), atten=a)
            except TypeError:  # ports before the atten= keyword
                adc = m.ADC(m.Pin(spec["pin"]))
                adc.atten(a)
            bits = spec.get("bits")
            if bits and hasattr(adc, "width"):  # classic ESP32 only; read_uv() is unaffected
                adc.width(getattr(m.ADC, "WIDTH_%dBIT" % bits))
            return AdcChannel(adc, floor_uv, ceiling_uv, uv_method=hasattr(adc, "read_uv"))
        if "channel" in spec:
            adc = m.ADC(spec["channel"])
        else:
            adc = m.ADC(m.Pin(spec["pin"]))
        return AdcChannel(adc, floor_uv, ceiling_uv, vref_uv=spec.get("vref_mv", 3300) * 1000)

    # --- UART -----------------------------------------------------------------------
    def uart(self, uart_id, baudrate, tx=None, rx=None, timeout_ms=0, rxbuf=512):
        """A machine.UART (8N1). timeout_ms=0 makes reads non-blocking; the drivers poll."""
        kw = {"baudrate": baudrate, "bits": 8, "parity": None, "stop": 1,
              "timeout": timeout_ms, "rxbuf": rxbuf}
        if tx is not None:
            kw["tx"] = self.machine.Pin(tx)
        if rx is not None:
            kw["rx"] = self.machine.Pin(rx)
        return self.machine.UART(uart_id, **kw)

    # --- system ------------------------------------------------------------------------
    def rtc(self):
        return self.machine.RTC()

    def watchdog(self, timeout_ms):
        """Once started a watchdog cannot be stopped on esp32/rp2: feed it from the main
        loop's progress only, never from a timer."""
        return self.machine.WDT(timeout=timeout_ms)

    def lightsleep(self, ms):
        self.machine.lightsleep(ms)

    def deepsleep(self, ms):
        self.machine.deepsleep(ms)

    def unique_id(self):
        return bytes(self.machine.unique_id())

    def reset_cause(self):
        """The reason for the last reset as a name from protocol/messages.RESET_CAUSES
        (power_on, hard, watchdog, deep_sleep, soft, brownout), or unknown(<n>)."""
        m = self.machine
        cause = m.reset_cause()
        for attr, label in _RESET_NAMES:
            if getattr(m, attr, None) == cause:
                return label
        return "unknown(%d)" % cause

    def _esp32_mod(self):
        if self._esp32 is None:
            try:
                import esp32
                self._esp32 = esp32
            except ImportError:
                return None
        return self._esp32

    def wake_on_pin(self, pin, level=0):
        """Let `pin` at `level` wake the MCU from deep sleep (esp32 EXT0, e.g. the rain
        reed so a tip during deep sleep is not lost). False where the port cannot."""
        e = self._esp32_mod()
        if e is None or not hasattr(e, "wake_on_ext0"):
            return False
        e.wake_on_ext0(pin=pin, level=e.WAKEUP_ANY_HIGH if level else e.WAKEUP_ALL_LOW)
        return True

    def wake_reason(self):
        """What ended the last deep sleep: pin, ext0, ext1, timer, touch, ulp, or none."""
        m = self.machine
        if not hasattr(m, "wake_reason"):
            return "none"
        r = m.wake_reason()
        for attr, label in _WAKE_NAMES:
            if getattr(m, attr, None) == r:
                return label
        return "none"

    def mcu_temperature_c(self):
        """Die temperature from the esp32 module in degC, or None where there is none
        (rp2040 reads its sensor through ADC channel 4, see drivers/supply.py)."""
        e = self._esp32_mod()
        if e is None:
            return None
        if hasattr(e, "mcu_temperature"):
            return float(e.mcu_temperature())
        if hasattr(e, "raw_temperature"):  # classic esp32, degF and uncalibrated
            return (e.raw_temperature() - 32) / 1.8
        return None

    # --- files -------------------------------------------------------------------------
    def path(self, p):
        return self.root + "/" + p if self.root else p

    def open(self, p, mode="rb"):
        return open(self.path(p), mode)

    def rename(self, a, b):
        os.rename(self.path(a), self.path(b))

    def remove(self, p):
        os.remove(self.path(p))

    def exists(self, p):
        try:
            os.stat(self.path(p))
            return True
        except OSError:
            return False

    def size(self, p):
        return os.stat(self.path(p))[6]

    def listdir(self, p=""):
        return os.listdir(self.path(p) if p else (self.root or "."))

    def mkdir(self, p):
        try:
            os.mkdir(self.path(p))
        except OSError:
            if not self.exists(p):
                raise

    def sync(self):
        """Flush filesystem caches where the port offers it (littlefs commits on close)."""
        if hasattr(os, "sync"):
            os.sync()


class Output:
    """A digital output with its polarity from the board file: on()/off() mean the
    load (relay, LED) is energised or not, whatever level that takes. Starts off."""

    def __init__(self, pin, active=1):
        self.pin = pin
        self._active = 1 if active else 0
        self.off()

    def on(self):
        self.pin.value(self._active)

    def off(self):
        self.pin.value(1 - self._active)

    def is_on(self):
        return self.pin.value() == self._active
