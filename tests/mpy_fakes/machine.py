"""A fake `machine` module for host runs of the firmware, in CPython and on the
MicroPython unix port (where it shadows the built-in `machine` when tests/mpy_fakes
is first on MICROPYPATH).

Same constructors and methods as the real module for what the firmware uses, plus
test handles: pin(n) / adc(key) / uart(id) / wdt() return the objects the firmware
created; Pin.drive(v) sets an input level and fires its IRQ on a matching edge;
ADC.set_uv(...) sets a reading (or a sequence that repeats); a UART is in-memory
(feed() / take_tx(), keeping the newest 4 KB written) unless attach(id, path) backed it
with a pty; Pin.writes keeps at least an output's last 32 levels; FakeClock is a
monotonic clock the test advances. In CPython, load this file under another name
and hand it to firmware.hal.Hal(machine=...): no global is patched."""
import select

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
SLEEP = 2
DEEPSLEEP = 4
PIN_WAKE = 2
EXT0_WAKE = 2
EXT1_WAKE = 3
TIMER_WAKE = 4

_TICKS_PERIOD = 1 << 30
_TICKS_HALF = 1 << 29

_pins = {}
_adcs = {}
_uarts = {}
_uart_paths = {}
_state = {"reset_cause": PWRON_RESET, "wake_reason": 0, "unique_id": b"\x24\x0a\xc4\x00\x12\x34", "wdt": None,
          "clock": None, "irq_disabled": 0}
sleeps = []


class DeepSleepReset(Exception):
    """Raised by deepsleep(): on a board the MCU resets and boots again."""


def reset():
    """Forget every object: call between scenarios that share a process."""
    _pins.clear()
    _adcs.clear()
    _uarts.clear()
    _uart_paths.clear()
    del sleeps[:]
    _state["reset_cause"] = PWRON_RESET
    _state["wdt"] = None
    _state["clock"] = None


class FakeClock:
    """ticks_* with MicroPython's wrap; time moves only when the test (or a sleep) moves it."""

    def __init__(self, start_ms=0, wall=1767225600):
        self.us = start_ms * 1000
        self.wall0 = wall

    def ticks_ms(self):
        return (self.us // 1000) % _TICKS_PERIOD

    def ticks_us(self):
        return self.us % _TICKS_PERIOD

    def ticks_add(self, t, delta):
        return (t + delta) % _TICKS_PERIOD

    def ticks_diff(self, a, b):
        return ((a - b + _TICKS_HALF) % _TICKS_PERIOD) - _TICKS_HALF

    def sleep_ms(self, ms):
        self.us += ms * 1000

    def sleep_us(self, us):
        self.us += us

    def advance_ms(self, ms):
        self.us += ms * 1000

    def time(self):
        return self.wall0 + self.us // 1000000


def use_clock(clock):
    """lightsleep() advances this clock, as a real sleep would."""
    _state["clock"] = clock


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2

    # Defaults live on the class and a pin gets its own only when set: a board's Pin
    # objects cost no heap (they are in ROM), so the fakes the node's heap figures count
    # (tests/firmware/test_node_32bit.py) should cost as little as they can.
    source = None       # a callable giving the input level, e.g. a fake module's AUX
    writes = ()         # becomes a list at the first write
    _handler = None
    _trigger = 0

    def __init__(self, id, mode=-1, pull=-1, value=None, **kw):
        self.id = id
        self.mode = mode
        self.pull = pull
        self._level = 1 if pull == Pin.PULL_UP else 0
        if value is not None:
            self.value(value)
        _pins[id] = self

    def init(self, mode=-1, pull=-1, value=None, **kw):
        if mode != -1:
            self.mode = mode
        if pull != -1:
            self.pull = pull
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            if self.source is not None:
                return 1 if self.source() else 0
            return self._level
        self._level = 1 if v else 0
        w = self.writes
        if not w:
            w = self.writes = []
        w.append(self._level)
        if len(w) > 64:  # a blinking LED over a simulated day must not fill the heap
            del w[:32]   # (trimmed in chunks: the list never regrows, so the heap stays flat)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def __call__(self, v=None):
        return self.value(v)

    def irq(self, handler=None, trigger=3, hard=False, wake=None, **kw):
        self._handler = handler
        self._trigger = trigger
        self.irq_hard = hard
        self.irq_wake = wake

    def drive(self, level):
        """Test side: set the input level; fire the IRQ handler on a matching edge."""
        old = self._level
        self._level = 1 if level else 0
        if self._handler is None or old == self._level:
            return
        if (self._level and self._trigger & Pin.IRQ_RISING) or \
                (not self._level and self._trigger & Pin.IRQ_FALLING):
            self._handler(self)


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_9BIT = 0
    WIDTH_10BIT = 1
    WIDTH_11BIT = 2
    WIDTH_12BIT = 3
    VREF_UV = 3300000

    _values = (0,)      # class defaults, as for Pin: set_uv() and reads make a sensor's own
    _i = 0
    reads = 0

    def __init__(self, src, atten=None, **kw):
        self.key = src.id if isinstance(src, Pin) else src
        self.atten_value = atten
        _adcs[self.key] = self

    def atten(self, a):
        self.atten_value = a

    def width(self, w):
        self.width_value = w

    def set_uv(self, *values):
        """Test side: the reading(s), in microvolts; a sequence repeats."""
        self._values = list(values)
        self._i = 0

    def read_uv(self):
        v = self._values[self._i % len(self._values)]
        self._i += 1
        self.reads += 1
        return v

    def read_u16(self):
        uv = min(max(self.read_uv(), 0), ADC.VREF_UV)
        code = uv * 4095 // ADC.VREF_UV
        return (code << 4) | (code >> 8)

    def read(self):
        return self.read_u16() >> 4


class UART:
    def __init__(self, id, baudrate=9600, **kw):
        self.id = id
        self.baudrate = baudrate
        self.kw = kw
        self._rx = bytearray()
        self.tx_log = bytearray()
        self.on_write = None  # test side: called with each written chunk
        self._file = None
        self._poll = None
        self._one = bytearray(1)
        path = _uart_paths.get(id)
        if path is not None:
            if isinstance(path, int):  # CPython only: the fd stays the test's to close
                self._file = open(path, "r+b", 0, closefd=False)
            else:  # unbuffered: poll() must see every byte
                self._file = open(path, "r+b", 0)
            self._poll = select.poll()
            self._poll.register(self._file, select.POLLIN)
        _uarts[id] = self

    def init(self, baudrate=None, **kw):
        if baudrate is not None:
            self.baudrate = baudrate
        for k in kw:
            self.kw[k] = kw[k]

    def deinit(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def write(self, buf):
        data = bytes(buf)
        if self._file is not None:
            self._file.write(data)  # unbuffered; flush() would fsync, which a pty refuses
        else:
            self.tx_log.extend(data)
            if len(self.tx_log) > 4096:  # nobody is reading it: keep the newest bytes only
                self.tx_log = self.tx_log[-4096:]
            if self.on_write is not None:
                self.on_write(data)
        return len(data)

    def _pull(self):
        # one byte per read: a blocking file never blocks once poll says data is there
        if self._file is None:
            return
        while self._poll.poll(0):
            if not self._file.readinto(self._one):
                break
            self._rx.extend(self._one)

    def any(self):
        self._pull()
        return len(self._rx)

    def readinto(self, buf, nbytes=None):
        self._pull()
        n = min(len(buf) if nbytes is None else nbytes, len(self._rx))
        if not n:
            return None
        for i in range(n):
            buf[i] = self._rx[i]
        self._rx = self._rx[n:]
        return n

    def read(self, n=None):
        self._pull()
        if not self._rx:
            return None
        n = len(self._rx) if n is None else min(n, len(self._rx))
        out = bytes(self._rx[:n])
        self._rx = self._rx[n:]
        return out

    def flush(self):
        pass

    def txdone(self):
        return True

    def feed(self, data):
        """Test side: bytes the far end sends to us."""
        self._rx.extend(data)

    def take_tx(self):
        """Test side: everything written since the last call."""
        out = bytes(self.tx_log)
        self.tx_log = bytearray()
        return out


class RTC:
    _dt = (2026, 1, 1, 3, 0, 0, 0, 0)

    def datetime(self, dt=None):
        if dt is None:
            return RTC._dt
        RTC._dt = tuple(dt)


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.feeds = 0
        _state["wdt"] = self

    def feed(self):
        self.feeds += 1


def pin(n):
    return _pins[n]


def adc(key):
    return _adcs[key]


def uart(id):
    return _uarts[id]


def wdt():
    return _state["wdt"]


def attach(uart_id, path):
    """Back UART `uart_id` with a pty (or any character device) at path; in CPython
    path may also be an open file descriptor (a pty master has no path)."""
    _uart_paths[uart_id] = path


def unique_id():
    return _state["unique_id"]


def reset_cause():
    return _state["reset_cause"]


def set_reset_cause(cause):
    _state["reset_cause"] = cause


def wake_reason():
    return _state["wake_reason"]


def set_wake_reason(reason):
    _state["wake_reason"] = reason


def lightsleep(ms=0):
    sleeps.append(("light", ms))
    c = _state["clock"]
    if c is not None:
        c.sleep_ms(ms)


def deepsleep(ms=0):
    sleeps.append(("deep", ms))
    raise DeepSleepReset(ms)


def disable_irq():
    _state["irq_disabled"] += 1
    return 0


def enable_irq(state=0):
    _state["irq_disabled"] -= 1


def freq(hz=None):
    return 240000000


def idle():
    pass
