"""Load tests/mpy_fakes/machine.py as a fresh, privately named module: each test gets
its own fake hardware and no global `machine` is installed."""
import importlib.util
from pathlib import Path

FAKES = Path(__file__).resolve().parent.parent / "mpy_fakes"


def load_fake_machine():
    spec = importlib.util.spec_from_file_location("fake_machine", FAKES / "machine.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TICKS_PERIOD = 1 << 30  # MicroPython's ticks wrap on every port
_TICKS_HALF = 1 << 29


class HostClock:
    """Real monotonic ticks_* on CPython with MicroPython's wrap, for tests that talk to
    real processes (pymodbus on a pty) in real time."""

    def __init__(self):
        import time
        self._time = time

    def ticks_ms(self):
        return (self._time.monotonic_ns() // 1000000) & (TICKS_PERIOD - 1)

    def ticks_us(self):
        return (self._time.monotonic_ns() // 1000) & (TICKS_PERIOD - 1)

    def ticks_add(self, t, delta):
        return (t + delta) & (TICKS_PERIOD - 1)

    def ticks_diff(self, a, b):
        return ((a - b + _TICKS_HALF) & (TICKS_PERIOD - 1)) - _TICKS_HALF

    def sleep_ms(self, ms):
        self._time.sleep(ms / 1000)

    def sleep_us(self, us):
        self._time.sleep(us / 1000000)

    def time(self):
        return int(self._time.time())


class StillClock:
    """For code that only uses the hal's files (frame log, config): no time passes."""

    def ticks_ms(self):
        return 0

    ticks_us = ticks_ms

    def ticks_diff(self, a, b):
        return a - b

    def ticks_add(self, a, b):
        return a + b

    def sleep_ms(self, ms):
        pass

    sleep_us = sleep_ms


class NoMachine:
    """A `machine` with nothing on it: any hardware access fails loudly."""


def fs_at(path):
    """A Hal whose filesystem root is `path` and that has no hardware and no time."""
    from firmware.hal import Hal
    return Hal(machine=NoMachine(), clock=StillClock(), root=str(path))
