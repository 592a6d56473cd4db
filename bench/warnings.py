"""`python -m bench warnings [--quick] [--seed N] [--cases N] [--intervals 10,60,600]`:
how the shipped profiles' warnings behave on displacement traces from published slope
models with realistic sensor behaviour, run through the trip engine exactly as a node
runs them.

Families (displacement in mm; t in s):
  creep      accelerating creep to failure, Voight's law dv/dt = A v^a (a 1.8..2.2; a = 2
             is Fukuzono's linear 1/v), velocity 1 h before failure 3..30 mm/h, on top of
             a steady background creep; the trace ends at failure (the wire over-ranges)
  rainstep   step-like creep of the Three Gorges reservoir slopes (Baishuihe, Bazimen):
             steady creep with rain-driven steps of 10..100 mm over 2..10 days
             (raised-cosine velocity, peak <= 1.5 mm/h = 36 mm/day) that stop again
  decel      a slope that slows down (Crosta & Agliardi's decelerating creep): velocity
             0.5..3 mm/h at the start decaying as 1/(1 + t/tau), tau 6..48 h
  thermal    a still slope read through a draw-wire that breathes with the day: +-0.5..2 mm
             diurnal cycle with a weather-driven day-to-day amplitude
  calm       a still slope (0..0.05 mm/h)
  faults     calm or thermal, plus every sensor fault at a high rate: spikes of up to
             +-50 mm, stuck runs, over-range, open circuit, dropouts
Every family gets Gaussian noise (0.1..0.5 mm), 0.01 mm quantisation, slow drift
(+-1 mm/month), and occasional single spikes (EMI, a snagged wire).

Each case runs through firmware.nodeconfig (the node's own config checks) and the
node's step order: hold-time clears (tick), due samples (firmware.sampler.Sampler, with
its intensified interval whenever engine.near()), engine update, then the interval
switch. Base sampling 10, 60 and 600 s (intensified 10 s).

Reported per family and base interval: red lead time before failure (min, median, and
how many cases got none), false orange/red per station-year, yellow per station-month,
level changes per station-day. The baseline measured in the same run is the profile's
own rules without the robust metrics and kinds of issue #11 (the rules of the previous
shipped profile, `--baseline`). The last line is JSON."""
import json
import math
import random
import sys
import time
from array import array

from firmware import nodeconfig
from firmware.sampler import Sampler
from protocol.trip import TripEngine
from tools.provision import PROFILES

DISP = 0x10
SPAN_MM = 500.0           # the draw-wire's calibrated span: beyond it, OVER_RANGE
DAY = 86400
OVER_RANGE, OPEN_CIRCUIT, STUCK = 2, 1, 4

# the previous shipped landslide profile's displacement rules (the baseline)
OLD_RULES = [[1, DISP, 2, 2, 3600, 200, 50, 1800], [2, DISP, 2, 3, 3600, 1000, 200, 1800],
             [3, DISP, 4, 4, 7200, 3600, 900, 3600]]


# -- slope models ---------------------------------------------------------------------------
def voight(a, v1h, v_bg, t_f):
    """Displacement (mm) of Voight creep reaching v1h mm/h one hour before t_f."""
    p = -1.0 / (a - 1.0)

    def prim(tau):       # integral of v1h (tau/3600)^p over tau, in mm (tau in s)
        h = max(tau, 1e-3) / 3600.0
        if abs(p + 1.0) < 1e-9:
            return v1h * math.log(h)
        return v1h * h ** (p + 1.0) / (p + 1.0)

    base = prim(t_f)

    def s(t):
        return v_bg * t / 3600.0 + (base - prim(t_f - t))
    return s


def rain_steps(v_bg, steps):
    """steps: (start s, duration s, size mm), raised-cosine velocity."""
    def s(t):
        x = v_bg * t / 3600.0
        for t0, d, mm in steps:
            if t >= t0 + d:
                x += mm
            elif t > t0:
                u = (t - t0) / d
                x += mm * (u - math.sin(2 * math.pi * u) / (2 * math.pi))
        return x
    return s


def steady(v):
    def s(t):
        return v * t / 3600.0
    return s


def decelerating(v0, tau, v_bg):
    def s(t):
        return v_bg * t / 3600.0 + v0 * tau / 3600.0 * math.log(1.0 + t / tau)
    return s


def thermal(amp, v_bg, rnd, days):
    amps = [amp * rnd.uniform(0.5, 1.5) for _ in range(int(days) + 2)]

    def s(t):
        d = int(t // DAY)
        a = amps[d] + (amps[d + 1] - amps[d]) * (t % DAY) / DAY
        return v_bg * t / 3600.0 + a * math.sin(2 * math.pi * (t % DAY) / DAY - 2.0)
    return s


# -- the sensor -----------------------------------------------------------------------------
class Sensor:
    """A draw-wire on the slope: noise, 0.01 mm counts, drift, spikes, and in the faults
    family stuck runs, over-range, open circuit and dropouts. read(t) -> (value, fault)."""

    def __init__(self, model, rnd, noise_mm, offset_mm, faults=False, t_fail=None):
        self.model = model
        self.rnd = rnd
        self.noise = noise_mm
        self.offset = offset_mm
        self.drift = rnd.uniform(-1.0, 1.0) / (30 * DAY)
        self.faults = faults
        self.t_fail = t_fail
        self.spike_p = rnd.uniform(0.0005, 0.003) * (4 if faults else 1)
        self.stuck_until = -1
        self.stuck_v = None
        self.fault_until = -1
        self.fault_code = 0

    def read(self, t):
        rnd = self.rnd
        if t < self.fault_until:
            return None, self.fault_code
        if self.faults and rnd.random() < 0.0005:
            self.fault_until = t + rnd.choice((60, 600, 3600, 6 * 3600))
            self.fault_code = rnd.choice((OVER_RANGE, OPEN_CIRCUIT, 5, 6, 10, 11))
            return None, self.fault_code
        if self.t_fail is not None and t >= self.t_fail:
            return None, OPEN_CIRCUIT          # the slope has failed: the wire is gone
        mm = self.offset + self.model(t) + self.drift * t
        if mm > SPAN_MM:
            return None, OVER_RANGE
        if t < self.stuck_until:
            return self.stuck_v, 0
        if self.faults and rnd.random() < 0.001:
            self.stuck_until = t + rnd.choice((600, 3600, 4 * 3600))
        mm += rnd.gauss(0.0, self.noise)
        if t < self.stuck_until:
            self.stuck_v = int(round(mm * 100))     # the reading it sticks at
        if rnd.random() < self.spike_p:
            mm += rnd.choice((-1, 1)) * rnd.uniform(2.0, 50.0)
        return int(round(mm * 100)), 0


# -- the node --------------------------------------------------------------------------------
def profile_config(rules, sample_s, intensified_s):
    """The landslide profile as a node checks it (firmware.nodeconfig), with `rules`."""
    prof = PROFILES["landslide"]
    raw = {"version": 1, "node": 1, "key": "5a" * 32, "board": "esp32_devkitc",
           "channels": prof["channels"], "rules": rules,
           "intervals": {"sample_s": sample_s, "intensified_s": intensified_s,
                         "report_s": max(600, sample_s), "status_s": 3600}}
    return nodeconfig.checked(raw, "bench profile")


def run_case(cfg, sensor, duration, t0=0):
    """Drive one node's sampler and engine over `duration` s; the displacement events."""
    iv = cfg.intervals
    smp = Sampler([DISP], iv["sample_s"], iv["intensified_s"], iv["report_s"])
    for c in smp.chans:
        # Sampler sizes its buffers as bytes(4 * n) for MicroPython's 4-byte array('l');
        # CPython's are 8 bytes, which would halve them here
        c.vals = array("l", [0] * smp.per_channel)
    eng = TripEngine(cfg.rules)
    events = []
    now = t0
    end = t0 + duration
    busy = 0.0      # seconds spent at the intensified interval
    while now < end:
        for ev in eng.tick(now):
            events.append(ev)
        if smp.report_due(now):
            smp.take(now)
        for chan in smp.due(now):
            t = smp.sample_time(chan, now)
            value, fault = sensor.read(t - t0)
            if fault:
                value = None
            smp.add(chan, t, value, fault)
            eng.update_into(chan, t, value, events, fault)
        smp.set_intensified(eng.near(), now)
        nxt = smp.next_due()
        d = eng.next_due()
        if d is not None and d < nxt:
            nxt = d
        step = max(now + 1, nxt)
        if smp.intensified:
            busy += min(step, end) - now
        now = step
    return events, busy


# -- families -------------------------------------------------------------------------------
def family_cases(name, rnd, n):
    """n cases of one family: (model, noise, duration s, t_fail or None, faults)."""
    out = []
    for _ in range(n):
        noise = rnd.uniform(0.1, 0.5)
        if name == "creep":
            days = rnd.uniform(2.0, 6.0)
            t_f = days * DAY
            s = voight(rnd.uniform(1.8, 2.2), rnd.uniform(3.0, 30.0), rnd.uniform(0.0, 0.2), t_f)
            out.append((s, noise, int(t_f), int(t_f), False))
        elif name == "rainstep":
            days = 30
            steps = []
            for _k in range(rnd.randint(1, 3)):
                mm = rnd.uniform(10.0, 100.0)
                d = max(rnd.uniform(2.0, 10.0) * DAY, 2 * mm / 1.5 * 3600)
                steps.append((rnd.uniform(1.0, days - 1.0) * DAY, d, mm))
            out.append((rain_steps(rnd.uniform(0.01, 0.2), steps), noise, days * DAY, None, False))
        elif name == "decel":
            out.append((decelerating(rnd.uniform(0.5, 3.0), rnd.uniform(6, 48) * 3600,
                                     rnd.uniform(0.0, 0.05)), noise, 10 * DAY, None, False))
        elif name == "thermal":
            out.append((thermal(rnd.uniform(0.5, 2.0), rnd.uniform(0.0, 0.05), rnd, 30), noise,
                        30 * DAY, None, False))
        elif name == "calm":
            out.append((steady(rnd.uniform(0.0, 0.05)), noise, 30 * DAY, None, False))
        elif name == "faults":
            if rnd.random() < 0.5:
                m = thermal(rnd.uniform(0.5, 2.0), 0.0, rnd, 30)
            else:
                m = steady(rnd.uniform(0.0, 0.05))
            out.append((m, noise, 30 * DAY, None, True))
    return out


FAMILIES = ("creep", "rainstep", "decel", "thermal", "calm", "faults")


def evaluate(rules, families, intervals, cases, seed):
    """{(family, base_s): figures} for one rule set."""
    res = {}
    for fam in families:
        for base in intervals:
            rnd = random.Random("%s/%s/%d" % (fam, base, seed))
            cfg = profile_config(rules, base, min(10, base))
            leads, reds, oranges, yellows, changes, days, blue_end = [], 0, 0, 0, 0, 0.0, 0
            busy = 0.0
            for model, noise, dur, t_f, faulty in family_cases(fam, rnd, cases):
                # the sensor was installed a while ago: its reading starts mid-span
                sensor = Sensor(model, rnd, noise, rnd.uniform(50.0, 200.0), faulty, t_f)
                evs, b = run_case(cfg, sensor, dur + (3600 if t_f else 0))
                days += dur / DAY
                busy += b
                first_red = None
                lvl = 0
                for e in evs:
                    if e.level != e.prev_level:
                        changes += 1
                    if e.level > e.prev_level:
                        if e.level >= 4 and first_red is None:
                            first_red = e.t
                        if e.level >= 4 and lvl < 4:
                            reds += 1
                        elif e.level == 3 and lvl < 3:
                            oranges += 1
                        elif e.level == 2 and lvl < 2:
                            yellows += 1
                    lvl = e.level
                if t_f is not None:
                    leads.append(None if first_red is None or first_red > t_f
                                 else (t_f - first_red) / 60.0)
                elif lvl:
                    blue_end += 1       # still above normal at the end of the trace
            got = sorted(x for x in leads if x is not None)
            r = {"cases": cases, "station_days": round(days, 1),
                 "changes_per_day": round(changes / days, 3) if days else None,
                 "intensified_pct": round(100 * busy / (days * DAY), 1) if days else None}
            if fam == "creep":
                r["red_lead_min"] = round(got[0], 1) if len(got) == len(leads) and got else None
                r["red_lead_median"] = round(got[len(got) // 2], 1) if got else None
                r["no_red"] = len(leads) - len(got)
            else:
                r["false_red_per_year"] = round(reds * 365 / days, 2)
                r["false_orange_per_year"] = round(oranges * 365 / days, 2)
                r["yellow_per_month"] = round(yellows * 30 / days, 3)
                r["above_normal_at_end"] = blue_end
            res[(fam, base)] = r
    return res


def shipped_disp_rules():
    return [r for r in PROFILES["landslide"]["rules"] if r[1] == DISP]


def table(res, label):
    lines = ["%s" % label,
             "%-9s %5s %6s %9s %9s %6s %9s %9s %9s %8s %6s" % (
                 "family", "base", "cases", "lead_min", "lead_med", "no_red", "red/yr",
                 "orange/yr", "yellow/mo", "chg/day", "busy%")]
    for (fam, base), r in res.items():
        lines.append("%-9s %4ds %6d %9s %9s %6s %9s %9s %9s %8s %6s" % (
            fam, base, r["cases"], r.get("red_lead_min", "-"), r.get("red_lead_median", "-"),
            r.get("no_red", "-"), r.get("false_red_per_year", "-"),
            r.get("false_orange_per_year", "-"), r.get("yellow_per_month", "-"),
            r["changes_per_day"], r["intensified_pct"]))
    return "\n".join(lines)


def main(argv=()):
    argv = list(argv)
    quick = "--quick" in argv
    seed = int(argv[argv.index("--seed") + 1]) if "--seed" in argv else 1
    cases = int(argv[argv.index("--cases") + 1]) if "--cases" in argv else (4 if quick else 20)
    intervals = (60, 600) if quick else (10, 60, 600)
    if "--intervals" in argv:       # e.g. --intervals 10 (a 10-s row costs 6x a 60-s one)
        intervals = tuple(int(x) for x in argv[argv.index("--intervals") + 1].split(","))
    t0 = time.time()
    new = evaluate(shipped_disp_rules(), FAMILIES, intervals, cases, seed)
    t1 = time.time()
    print(table(new, "shipped landslide profile (seed %d, %d cases per row)" % (seed, cases)))
    out = {"bench": "warnings", "seed": seed, "cases": cases,
           "shipped": {"%s@%ds" % k: v for k, v in new.items()}, "seconds": round(t1 - t0, 1)}
    if "--baseline" in argv:
        old = evaluate(OLD_RULES, FAMILIES, intervals, cases, seed)
        print(table(old, "baseline: the previous profile's rules on the same traces"))
        out["baseline"] = {"%s@%ds" % k: v for k, v in old.items()}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
