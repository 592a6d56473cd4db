"""Hardware seam: the one module that touches `machine`, `time`, `os` and files.

Everything else gets a Hal (or the pin/uart/adc objects it hands out) as a
constructor argument and never imports `machine` itself. Tests build a Hal around a
fake machine module and a fake clock (tests/mpy_fakes/machine.py); on the unix port
that same fake shadows the built-in `machine` when tests/mpy_fakes is on the path.

    hal = Hal()                                  # on a board
    hal = Hal(machine=fake, clock=fake.FakeClock(), root="/tmp/x")   # in a test
"""
import os


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
            # the port's calibrated reading replaces the method on this instance: no
            # extra call per sample
            self.read_uv = adc.read_uv  # type: ignore[method-assign]

    def read_uv(self):
        # 12-bit code times the reference in 100 uV steps stays a small int (< 2**30):
        # no bigint allocation per sample.
        code = self.adc.read_u16() >> 4
        return (code * self._vref_100uv // 4095) * 100


class Hal:
    """What the running node needs of the hardware: clock, files, sleep. Building pins,
    ADC channels, UARTs and the watchdog, and reading why the chip reset or woke, is
    boot-time work: firmware/halsetup.py, whose functions take a Hal (boot code imports
    this module, never the reverse: firmware/README.md)."""

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

    # --- system ------------------------------------------------------------------------
    def rtc(self):
        return self.machine.RTC()

    def lightsleep(self, ms):
        self.machine.lightsleep(ms)

    def deepsleep(self, ms):
        self.machine.deepsleep(ms)

    def unique_id(self):
        return bytes(self.machine.unique_id())

    def _esp32_mod(self):
        if self._esp32 is None:
            import sys
            if sys.platform.startswith("esp32"):   # (tools/stubcheck reads this too)
                try:
                    import esp32
                    self._esp32 = esp32
                except ImportError:
                    pass
        return self._esp32

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
