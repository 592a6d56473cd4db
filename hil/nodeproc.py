"""One field node of the HIL rig: the real firmware (firmware.app.Node) in its own
process, on the MicroPython unix port with a device-sized heap (or on CPython).

    micropython -X heapsize=96K -m nodeproc <workdir> <uart pty>

The node's flash is <workdir> (config.json, the frame log), its UART a pty whose
other end is the rig's radio medium, driven by the real firmware.radio.loopback
radio through the fake `machine` (tests/mpy_fakes/machine.py). Sensors: the 4-20 mA
loop is the real firmware/drivers/loop420.py behind a fake ADC; rain and direct
channels are fed values the rig computes from its world model. <workdir>/hil.json
says which is which: {"sources": [["rain", chan, mm_per_tip], ["counter", chan],
["direct", chan], ["loop420", chan, shunt_ohm, value_4ma, value_20ma],
["drawwire", chan, [ppm1, value1, ppm2, value2]]],
"lora": [sf, bw_hz]}. "rain" is the real firmware/drivers/rain.py counting reed-switch
edges of a fake pin; the rig feeds the cumulative number of tips.

Control pipe (stdin/stdout, one line each), lock-step with the rig's simulated time:
  rig  -> node: "T <mono_s> <input> <input> ..."  inputs in source order: an int, or
                "F<code>" for a sensor that reports a fault, step the node at mono_s
  node -> rig:  "R <chan> <t> <value>" / "R <chan> <t> F<code>"  a sample taken
                "P <t_ref>"                     buffered samples went into a log record
                "A <event> <chan> <rule> <level> <prev> <t> <value>"  an alarm event
                "C <text>"                      a console line
                "M <bytes>"                     at exit: most live heap seen after a GC
                "W <wake> <level> <depth> <siren> <tx>"  step done; next wake (mono s,
                                -1 none); bytes written to the UART since boot
"""
import gc
import json
import sys

import machine

from firmware.app import Node
from firmware.drivers.adc_filter import AdcFilter
from firmware.drivers.drawwire import DrawWire
from firmware.drivers.loop420 import Loop420
from firmware.drivers.rain import RainGauge
from firmware.hal import AdcChannel, Hal
from firmware.main import downlink
from firmware.nodeconfig import load
from firmware.radio.loopback import LoopbackRadio


class _HostClock:
    """ticks_* for CPython (the unix port has them in `time`)."""

    def __init__(self):
        import time
        self._t = time

    def ticks_ms(self):
        return int(self._t.monotonic() * 1000) & 0x3FFFFFFF

    def ticks_us(self):
        return int(self._t.monotonic() * 1000000) & 0x3FFFFFFF

    def ticks_diff(self, a, b):
        return ((a - b + 0x20000000) & 0x3FFFFFFF) - 0x20000000

    def ticks_add(self, a, d):
        return (a + d) & 0x3FFFFFFF

    def sleep_ms(self, ms):
        self._t.sleep(ms / 1000)

    def sleep_us(self, us):
        self._t.sleep(us / 1000000)


def _open_log(node):
    """The frame log scanned as firmware/main.py does it: firmware/logscan.py loaded for
    the call and dropped again (boot-only code)."""
    from firmware.logscan import open_log
    from firmware.unload import unload
    open_log(node.log, node.clock)
    open_log = None
    unload("firmware.logscan")


def _clock():
    import time
    if hasattr(time, "ticks_ms"):
        return time
    return _HostClock()


def _out(s):
    sys.stdout.write(s + "\n")


class Inputs:
    """What the rig fed in this step, by source index."""

    def __init__(self, n):
        self.v = [0] * n
        self.t = 0


class Direct:
    def __init__(self, inputs, i, chan):
        self.inputs, self.i, self.chan = inputs, i, chan

    def read(self):
        v = self.inputs.v[self.i]
        if isinstance(v, str):
            return None, int(v[1:])
        return v, 0


class Counter:
    """A plain counter: the rig feeds the cumulative total (0.1 mm); a read returns
    what fell since the previous read."""

    def __init__(self, inputs, i, chan):
        self.inputs, self.i, self.chan = inputs, i, chan
        self.last = None

    def read(self):
        v = self.inputs.v[self.i]
        if isinstance(v, str):
            return None, int(v[1:])
        if self.last is None or v < self.last:
            self.last = v
        d = v - self.last
        self.last = v
        return d, 0


class Reed:
    """The real tipping-bucket driver (firmware/drivers/rain.py) on a fake reed pin: the
    rig feeds the cumulative number of tips; the tips since the last step become
    closures (falling edge, released 50 ms later) spread evenly over that interval on
    the driver's own fake tick clock, so its IRQ handler and debounce do the counting."""

    def __init__(self, inputs, i, chan, mm_per_tip):
        self.inputs, self.i, self.chan = inputs, i, chan
        self.pin = machine.Pin(200 + i, machine.Pin.IN, machine.Pin.PULL_UP)
        self.ticks = machine.FakeClock()
        self.drv = RainGauge(self.pin, self.ticks, mm_per_tip)
        self.fed = None
        self.last_ms = 0

    def feed(self, now):
        v = self.inputs.v[self.i]
        now_ms = int(now * 1000)
        if isinstance(v, str) or self.fed is None or v < self.fed:
            self.fed = None if isinstance(v, str) else v
            self.last_ms = now_ms
            return
        n = v - self.fed
        if n:
            gap = (now_ms - self.last_ms) // n
            for k in range(n):
                self.ticks.us = (self.last_ms + (k + 1) * gap - 50) * 1000
                self.pin.drive(0)
                self.ticks.advance_ms(50)
                self.pin.drive(1)
            self.fed = v
        self.last_ms = now_ms
        self.ticks.us = now_ms * 1000

    def read(self):
        v = self.inputs.v[self.i]
        if isinstance(v, str):
            return None, int(v[1:])
        return self.drv.read()


class Loop:
    """The real 4-20 mA driver; the rig feeds loop current in uA to a fake ADC."""

    def __init__(self, inputs, i, chan, hal, shunt, v4, v20):
        self.inputs, self.i, self.chan = inputs, i, chan
        self.shunt = shunt
        self.adc = machine.ADC(100 + i)
        ch = AdcChannel(self.adc, 100000, 3100000, uv_method=True)
        self.drv = Loop420(AdcFilter(ch, hal, samples=8), shunt, v4, v20)

    def read(self):
        v = self.inputs.v[self.i]
        if isinstance(v, str):
            return None, int(v[1:])
        self.adc.set_uv(v * self.shunt)
        return self.drv.read()


class Wire:
    """The real draw-wire crack meter driver on a fake ADC; the rig feeds the wiper
    voltage in uV (0 V: the wire is cut)."""

    def __init__(self, inputs, i, chan, hal, cal):
        self.inputs, self.i, self.chan = inputs, i, chan
        self.adc = machine.ADC(300 + i)
        ch = AdcChannel(self.adc, 100000, 3100000, uv_method=True)
        self.drv = DrawWire(AdcFilter(ch, hal, samples=8), ((cal[0], cal[1]), (cal[2], cal[3])))

    def read(self):
        v = self.inputs.v[self.i]
        if isinstance(v, str):
            return None, int(v[1:])
        self.adc.set_uv(v)
        return self.drv.read()


class Logged:
    """Wraps a source: every read is reported to the rig."""

    def __init__(self, src):
        self.src = src

    def read(self):
        v, f = self.src.read()
        if f:
            _out("R %d %d F%d" % (self.src.chan, self.src.inputs.t, f))
        else:
            _out("R %d %d %d" % (self.src.chan, self.src.inputs.t, v))
        return v, f


class CountedUart:
    """The node's UART, counting the bytes written. A wrapper, since a real port's
    machine.UART takes no new attributes (assigning uart.write raises AttributeError)."""

    def __init__(self, uart):
        self.uart = uart
        self.tx = 0

    def write(self, buf):
        n = self.uart.write(buf)
        self.tx += n or 0
        return n

    def readinto(self, buf):
        return self.uart.readinto(buf)


class Relay:
    def __init__(self):
        self.on_ = False

    def on(self):
        self.on_ = True

    def off(self):
        self.on_ = False


def main():
    workdir, tty = sys.argv[1], sys.argv[2]
    f = open(workdir + "/hil.json")
    spec = json.loads(f.read())
    f.close()
    if hasattr(machine, "attach"):          # the fake machine: the UART is the rig's pty
        machine.attach(1, tty)
        uart = machine.UART(1, 9600)
    else:                                   # a real board: the LoRa UART pins of the wiring
        u = spec["uart"]
        uart = machine.UART(u[0], u[1], tx=u[2], rx=u[3])
    # count what goes to the UART: the rig waits for every byte of a step to cross the
    # pty before it moves time on (a pty delivers through a kernel work queue)
    uart = CountedUart(uart)
    hal = Hal(machine=machine, clock=_clock(), root=workdir)

    def console(s):
        _out("C " + s)

    cfg = load(hal, console)
    lora = spec.get("lora", [9, 125000])
    radio = LoopbackRadio(uart, hal, gap_ms=0, lora=(lora[0], lora[1]))
    srcs = spec["sources"]
    inputs = Inputs(len(srcs))
    sources = {}
    reeds = []
    for i, s in enumerate(srcs):
        kind, chan = s[0], s[1]
        if kind == "counter":
            src = Counter(inputs, i, chan)
        elif kind == "rain":
            src = Reed(inputs, i, chan, s[2])
            reeds.append(src)
        elif kind == "drawwire":
            src = Wire(inputs, i, chan, hal, s[2])
        elif kind == "loop420":
            src = Loop(inputs, i, chan, hal, s[2], s[3], s[4])
        else:
            src = Direct(inputs, i, chan)
        sources[chan] = Logged(src)
    siren = Relay()
    seed = [(cfg.node * 2654435761 + spec.get("boot_seed", 1)) & 0xFFFFFFFF or 1]

    def rand():
        x = seed[0]
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        seed[0] = x
        return (x & 0xFFFFFF) / 16777216.0

    node = Node(hal, cfg, sources, radio, siren, Relay(), rand=rand,
                reset_cause=spec.get("reset_cause", "power_on"), console=console,
                mem_free=getattr(gc, "mem_free", None), downlink=downlink)
    take = node.sampler.take

    def take_logged(t_ref):
        p = take(t_ref)
        if p is not None:
            _out("P %d" % t_ref)
        return p
    node.sampler.take = take_logged
    log_alarms = node._log_alarms

    def log_alarms_logged(now, events):
        for ev in events:
            _out("A %d %d %d %d %d %d %d" % (ev.event, ev.chan, ev.rule_id, ev.level,
                                             ev.prev_level, ev.t, ev.value))
        log_alarms(now, events)
    node._log_alarms = log_alarms_logged
    _open_log(node)
    node.start(0)
    _out("W 0 0 %d 0 %d" % (node.log.depth(), uart.tx))
    readline = sys.stdin.readline
    steps = 0
    alloc = getattr(gc, "mem_alloc", None)
    live_max = 0
    while True:
        line = readline()
        if not line or line[0] == "Q":
            if alloc is not None:
                gc.collect()
                _out("M %d" % max(live_max, alloc()))
            break
        parts = line.split()
        now = float(parts[1])
        inputs.t = int(now)
        v = inputs.v
        for i in range(len(v)):
            x = parts[2 + i]
            v[i] = x if x[0] == "F" else int(x)
        for r in reeds:
            r.feed(now)
        wake = node.step(now)
        steps += 1
        if steps % 50 == 0:
            gc.collect()
            if alloc is not None and alloc() > live_max:
                live_max = alloc()
        _out("W %s %d %d %d %d" % ("-1" if wake is None else "%.3f" % wake, node.engine.level(),
                                   node.log.depth(), 1 if siren.on_ else 0, uart.tx))


main()
