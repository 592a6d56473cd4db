"""World models: what the sensors of a simulated site would measure, as pure
functions of simulated time (seconds since the scenario started), seeded where random.

A node's sensor is a `Signal` (physics) wrapped in zero or more `Fault`s (what goes
wrong with the instrument). `sample(t)` gives what the rig feeds the firmware's
input at time t, in the channel's scaled integers (protocol/channels.py):

    rain          cumulative tipping-bucket total in 0.1 mm (the node's rain source
                  turns it into increments, as the pulse counter does)
    displacement  0.01 mm; water level mm; battery mV
    4-20 mA loop  the rig converts a level to loop current in uA for the real
                  firmware/drivers/loop420.py behind a fake ADC

A fault returns FAULT(code) instead of a value where the instrument itself would
report one (an open draw wire); otherwise it bends the value (spike, stuck, drift) or
the loop current (broken loop -> 0 mA), and the firmware must notice.
"""
import math
import random


class Fault:
    """Base: `apply(t, v)` -> v (possibly changed) for a value, in window [start, end)."""

    def __init__(self, start=0.0, end=float("inf")):
        self.start, self.end = float(start), float(end)

    def active(self, t):
        return self.start <= t < self.end

    def apply(self, t, v):
        return v


class FaultCode:
    """A sensor that reports a fault state instead of a value (e.g. open circuit)."""
    __slots__ = ("code",)

    def __init__(self, code):
        self.code = code

    def __eq__(self, other):
        return isinstance(other, FaultCode) and other.code == self.code

    def __repr__(self):
        return "FaultCode(%d)" % self.code


# ------------------------------------------------------------------------ rain

class Hyetograph:
    """Rain as piecewise-constant intensities: a list of (start_s, end_s, mm_per_h).
    `mm(t)` is the cumulative depth since the scenario began."""

    def __init__(self, pieces=()):
        self.pieces = []
        for a, b, i in pieces:
            self.add(a, b, i)

    def add(self, start, end, mm_per_h):
        if end <= start or mm_per_h < 0:
            raise ValueError("rain piece %r..%r at %r mm/h: need end > start, intensity >= 0"
                             % (start, end, mm_per_h))
        self.pieces.append((float(start), float(end), float(mm_per_h)))
        return self

    def mm(self, t):
        total = 0.0
        for a, b, i in self.pieces:
            if t > a:
                total += i * (min(t, b) - a) / 3600.0
        return total

    def depth(self, a, b):
        return self.mm(b) - self.mm(a)


def storm(start_s, duration_s, total_mm, burst_end_s=None, burst_mm=53.9, burst_s=1200.0,
          steps=12):
    """A design storm: a triangular hyetograph (peak at 40 % of the duration, the
    usual advanced storm shape) of `total_mm`, plus, if burst_end_s is given, the
    documented burst of `burst_mm` (53.9 mm) within `burst_s` (20 minutes) ending at
    burst_end_s (the Xuan'en case: a slope failed right after it)."""
    h = Hyetograph()
    peak = 0.4
    dt = duration_s / steps
    weights = []
    for k in range(steps):
        x = (k + 0.5) / steps
        weights.append(x / peak if x < peak else (1 - x) / (1 - peak))
    norm = sum(weights)
    for k, w in enumerate(weights):
        mm = total_mm * w / norm
        h.add(start_s + k * dt, start_s + (k + 1) * dt, mm * 3600.0 / dt)
    if burst_end_s is not None:
        h.add(burst_end_s - burst_s, burst_end_s, burst_mm * 3600.0 / burst_s)
    return h


class RainGauge:
    """A tipping bucket of `tip_mm` on a hyetograph: the cumulative count in 0.1 mm is
    whole tips only (a bucket tips when full, not before)."""

    def __init__(self, rain, tip_mm=0.2):
        self.rain = rain
        self.tip_mm = tip_mm

    def value(self, t):
        tips = int(self.rain.mm(t) / self.tip_mm + 1e-9)
        return int(round(tips * self.tip_mm * 10))


# ------------------------------------------------------------------------ slope

class Creep:
    """Displacement of a slope in 0.01 mm: steady creep at `v0_mm_h` until the tertiary
    phase starts at `t_acc`, then velocity v = A / (t_f - t) so that inverse velocity
    falls linearly to zero at the failure time t_f (Fukuzono 1985, alpha = 2), with
    A = v0 * (t_f - t_acc) so velocity is continuous. After t_f the draw wire has
    snapped: `value` returns FaultCode(1) (open circuit). Gaussian reading noise of
    sigma `noise` counts, seeded."""

    def __init__(self, t_f, t_acc, v0_mm_h, start_mm=100.0, noise=3.0, seed=0):
        if not t_acc < t_f:
            raise ValueError("creep: the tertiary phase must start (%r) before failure (%r)"
                             % (t_acc, t_f))
        self.t_f, self.t_acc = float(t_f), float(t_acc)
        self.v0 = v0_mm_h / 3600.0                      # mm/s
        self.a = self.v0 * (self.t_f - self.t_acc)      # mm
        self.start = start_mm
        self.noise = noise
        self.seed = seed

    def mm(self, t):
        if t <= self.t_acc:
            return self.start + self.v0 * t
        left = max(self.t_f - t, 1e-3)
        return self.start + self.v0 * self.t_acc + self.a * math.log((self.t_f - self.t_acc) / left)

    def velocity_mm_h(self, t):
        if t <= self.t_acc:
            return self.v0 * 3600
        return self.a / max(self.t_f - t, 1e-3) * 3600

    def value(self, t):
        if t >= self.t_f:
            return FaultCode(1)
        n = random.Random(self.seed * 1000003 + int(t)).gauss(0, self.noise) if self.noise else 0
        return int(round(self.mm(t) * 100 + n))


# ------------------------------------------------------------------------ river

class Hydrograph:
    """Stage at a river station in mm: base flow, then a flood wave shaped like a
    gamma unit hydrograph, h = base + rise * (s e^(1-s))^k with s = (t - start) / t_peak."""

    def __init__(self, base_mm, rise_mm, start_s, t_peak_s, k=3.0):
        self.base, self.rise, self.start, self.tp, self.k = base_mm, rise_mm, start_s, t_peak_s, k

    def value(self, t):
        if t <= self.start:
            return int(self.base)
        s = (t - self.start) / self.tp
        return int(round(self.base + self.rise * (s * math.exp(1 - s)) ** self.k))


class Steady:
    """A constant with slow sinusoidal wander and seeded noise (battery, calm days)."""

    def __init__(self, value, wander=0.0, period_s=86400.0, noise=0.0, seed=0):
        self.v, self.wander, self.period, self.noise, self.seed = value, wander, period_s, noise, seed

    def value(self, t):
        n = random.Random(self.seed * 7919 + int(t)).gauss(0, self.noise) if self.noise else 0
        return int(round(self.v + self.wander * math.sin(2 * math.pi * t / self.period) + n))


# ------------------------------------------------------------------------ faults

class Spikes(Fault):
    """EMI spikes: with probability p a reading jumps by +-magnitude counts."""

    def __init__(self, p, magnitude, start=0.0, end=float("inf"), seed=0):
        Fault.__init__(self, start, end)
        self.p, self.magnitude, self.seed = p, magnitude, seed

    def apply(self, t, v):
        r = random.Random(self.seed * 15485863 + int(t))
        if self.active(t) and r.random() < self.p:
            return v + (self.magnitude if r.random() < 0.5 else -self.magnitude)
        return v


class Stuck(Fault):
    """The reading freezes at its value when the fault began."""

    def __init__(self, start, end=float("inf")):
        Fault.__init__(self, start, end)
        self.frozen = None

    def apply(self, t, v):
        if self.active(t):
            if self.frozen is None:
                self.frozen = v
            return self.frozen
        return v


class Drift(Fault):
    """Calibration drift: + per_h counts per hour since the fault began."""

    def __init__(self, per_h, start=0.0, end=float("inf")):
        Fault.__init__(self, start, end)
        self.per_h = per_h

    def apply(self, t, v):
        if self.active(t):
            return v + int(self.per_h * (t - self.start) / 3600.0)
        return v


class BrokenLoop(Fault):
    """A cut 4-20 mA loop: the current falls to 0 mA (the rig feeds 0 uA to the ADC)."""
    broken_loop = True

    def apply(self, t, v):
        return v


class OpenCircuit(Fault):
    """A disconnected sensor wire: the driver reports open circuit (fault 1)."""

    def apply(self, t, v):
        return FaultCode(1) if self.active(t) else v


class Silent(Fault):
    """A Modbus device that stops answering (unplugged, dead, its bus cut)."""
    silent = True


class Sensor:
    """A signal and its faults, as one node channel sees them."""

    def __init__(self, signal, faults=()):
        self.signal = signal
        self.faults = list(faults)

    def sample(self, t):
        v = self.signal.value(t)
        for f in self.faults:
            if isinstance(v, FaultCode):
                break
            v = f.apply(t, v)
        return v

    def silent(self, t):
        for f in self.faults:
            if getattr(f, "silent", False) and f.active(t):
                return True
        return False

    def loop_broken(self, t):
        for f in self.faults:
            if getattr(f, "broken_loop", False) and f.active(t):
                return True
        return False


def loop_current_ua(value, value_4ma, value_20ma):
    """The 4-20 mA transmitter: a value in the channel's unit -> loop current in uA,
    clamped to the 3.8..20.5 mA a transmitter can drive while the loop is intact."""
    ua = 4000 + (value - value_4ma) * 16000.0 / (value_20ma - value_4ma)
    return int(round(min(max(ua, 3850), 20450)))


# A draw-wire crack meter: wiper/excitation ratio (ppm) 0.1 -> 0 mm, 0.9 -> 500 mm,
# excited at 3.3 V (firmware/drivers/drawwire.py two-point calibration).
DRAWWIRE_CAL = (100000, 0, 900000, 50000)
DRAWWIRE_EXC_MV = 3300


def wiper_uv(value):
    """Displacement (0.01 mm) -> wiper voltage in uV; a cut wire (FaultCode 1) reads 0 V
    through the wiper's pull-down. Exact: the driver gives the same value back."""
    if isinstance(value, FaultCode):
        return 0
    p1, v1, p2, v2 = DRAWWIRE_CAL
    ppm = p1 + (value - v1) * (p2 - p1) // (v2 - v1)
    return int(round(ppm * DRAWWIRE_EXC_MV / 1000.0))
