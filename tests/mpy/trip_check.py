# Core trip-engine checks on the node's runtime: the MicroPython unix port with a
# device-sized heap (tests/protocol/test_trip_mpy.py runs it with -X heapsize=64K and
# asserts on the last line). Also runs under CPython, where heap and allocation figures
# are reported as -1.
#
# Prints one line: TRIP_CHECK {"ok": ..., "fails": [...], figures...}
import gc
import json
import math
import time

from protocol.trip import CLEAR, INVVEL, LEVEL, RATE, SUM, THRESHOLD, TRIP, Rule, TripEngine

VECTORS = "protocol/vectors/trip_events.json"   # relative to the repo root (the cwd)
RAIN = 0x08
DISP = 0x10
WATER = 0x18

fails = []
checks = [0]


def check(cond, what):
    checks[0] += 1
    if not cond:
        fails.append(what)


def mem():
    try:
        return gc.mem_alloc()
    except AttributeError:   # CPython
        return -1


def ticks_us():
    try:
        return time.ticks_us()
    except AttributeError:   # CPython
        return int(time.perf_counter() * 1000000)


class Noise:
    """Deterministic noise (an LCG; no `random` needed): sum of three uniforms in
    -a..a, so roughly Gaussian with sigma = a."""

    def __init__(self, seed, a):
        self.x = seed & 0x7FFFFFFF
        self.a = a

    def next(self):
        s = 0
        for _ in range(3):
            self.x = (1103515245 * self.x + 12345) & 0x7FFFFFFF
            s += (self.x >> 8) % (2 * self.a + 1) - self.a
        return s


def node_rules():
    return [
        Rule.from_wire([1, RAIN, SUM, 2, 600, 100, 20, 600]),         # 10 mm / 10 min
        Rule.from_wire([2, RAIN, SUM, 3, 3600, 300, 50, 1800]),       # 30 mm / 1 h
        Rule.from_wire([3, RAIN, SUM, 3, 10800, 600, 100, 3600]),     # 60 mm / 3 h
        Rule.from_wire([4, RAIN, SUM, 4, 86400, 1000, 100, 3600]),    # 100 mm / 24 h
        Rule.from_wire([5, DISP, THRESHOLD, 3, 1, 5000, 100, 3, 600]),  # 50 mm moved
        Rule.from_wire([6, DISP, RATE, 2, 3600, 200, 50, 1800]),      # 2 mm/h
        Rule.from_wire([7, DISP, INVVEL, 4, 7200, 3600, 900, 3600]),  # forecast < 1 h
        Rule.from_wire([8, WATER, THRESHOLD, 3, 1, 3000, 100, 2, 600]),  # 3 m stage
    ]


def events_of(evs):
    out = []
    for e in evs:
        out.append((e.event, e.chan, e.rule_id, e.level, e.prev_level, e.value, e.t))
    return out


def check_threshold():
    eng = TripEngine([Rule.from_wire([9, WATER, THRESHOLD, 3, 1, 3000, 100, 60, 600])])
    check(eng.update(WATER, 0, 3100) == [], "one sample beyond must not trip with persist_s 60")
    check(eng.update(WATER, 60, None) == [], "a fault must not trip")
    ev = eng.update(WATER, 120, 3050)
    check(len(ev) == 1 and ev[0].event == TRIP and ev[0].level == 3, "second sample beyond trips")
    check(eng.update(WATER, 180, 2950) == [], "inside the hysteresis band stays latched")
    check(eng.update(WATER, 240, 2850) == [], "clear side before the hold keeps the latch")
    ev = eng.tick(720)
    check(len(ev) == 1 and ev[0].event == CLEAR and ev[0].t == 720, "tick clears once the hold ran out")
    check(eng.level() == 0, "level back to normal")


def check_config_table():
    r = Rule.from_dict({"id": 3, "chan": "water_level.0", "kind": "threshold", "level": "orange",
                        "op": 1, "threshold": 3000, "hysteresis": 100, "persist_s": 60, "hold_s": 600})
    check(r.to_wire() == [3, WATER, THRESHOLD, 3, 1, 3000, 100, 60, 600], "from_dict %r" % (r,))
    try:
        Rule.from_dict({"id": 3, "chan": "rain", "kind": "sum", "level": 3})
        check(False, "a bad channel name must be refused")
    except ValueError as e:
        check("kind.instance" in str(e), "message for a bad channel name: %s" % e)


def check_levels():
    eng = TripEngine([Rule.from_wire([1, WATER, THRESHOLD, 2, 1, 2000, 0, 0, 0]),
                      Rule.from_wire([2, WATER, THRESHOLD, 4, 1, 3000, 0, 0, 0])])
    a = eng.update(WATER, 0, 2500)
    b = eng.update(WATER, 10, 3500)
    c = eng.update(WATER, 20, 2500)
    d = eng.update(WATER, 30, 100)
    check(events_of(a) == [(TRIP, WATER, 1, 2, 0, 2500, 0)], "trip to yellow %r" % (events_of(a),))
    check(events_of(b) == [(LEVEL, WATER, 2, 4, 2, 3500, 10)], "level up to red %r" % (events_of(b),))
    check(events_of(c) == [(LEVEL, WATER, 2, 2, 4, 2500, 20)], "level down to yellow %r" % (events_of(c),))
    check(events_of(d) == [(CLEAR, WATER, 1, 0, 2, 100, 30)], "clear %r" % (events_of(d),))


def check_sum():
    eng = TripEngine([Rule.from_wire([1, RAIN, SUM, 2, 3600, 300, 50, 0])])
    noise = Noise(7, 3)
    hist = []
    ok = True
    for i in range(600):
        t = i * 60
        v = noise.next() + 3
        if v < 0:
            v = 0
        hist.append((t, v))
        eng.update(RAIN, t, v)
        bs = 60
        lo = (t // bs - 60) * bs     # oldest bucket start still counted (60 buckets + current)
        brute = 0
        for tt, vv in hist:
            if tt >= lo:
                brute += vv
        if brute != eng.metric(1):
            ok = False
        if len(hist) > 80:
            hist.pop(0)
    check(ok, "rolling sum equals the brute-force sum over its buckets")


def creep_value(t, tf, c_cmm, noise):
    # 1/v linear to zero at tf: s = -C ln(tf - t), in 0.01 mm
    return int(-c_cmm * math.log((tf - t) / 3600.0) + 0.5) + noise.next()


def check_invvel():
    tf = 200000
    eng = TripEngine([Rule.from_wire([7, DISP, INVVEL, 4, 7200, 3600, 900, 3600])])
    noise = Noise(11, 3)
    first = None
    t = tf - 24 * 3600
    while t < tf - 60:
        for e in eng.update(DISP, t, creep_value(t, tf, 600, noise)):
            if e.event == TRIP and first is None:
                first = e
        t += 60
    lead = tf - first.t if first else -1
    check(lead >= 1800, "creep to failure: red %d s before failure, need >= 1800" % lead)
    eng = TripEngine([Rule.from_wire([7, DISP, INVVEL, 4, 7200, 3600, 900, 3600])])
    noise = Noise(5, 3)
    trips = 0
    for i in range(2 * 1440):   # two days of steady creep, 0.5 mm/h
        t = i * 60
        trips += len(eng.update(DISP, t, i * 50 // 60 + noise.next()))
    check(trips == 0, "steady creep with noise must not trip (%d events)" % trips)
    return lead


def feed_day(eng, seed, out):
    """One day of 1-min samples on three channels: a storm and slow creep."""
    noise = Noise(seed, 2)
    n = 0
    for i in range(1440):
        t = i * 60
        rain = 4 if 600 <= i < 780 else 0
        eng.update_into(RAIN, t, rain, out)
        eng.update_into(DISP, t, i * 3 + noise.next(), out)
        eng.update_into(WATER, t, 1500 + (i if i < 900 else 900) * 2, out)
        n += 3
    return n


def scenarios(path):
    """The scenarios of protocol/vectors/trip_events.json, parsed one line at a time (the
    file is laid out one scenario per line) so the whole document never sits in RAM."""
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if line.startswith('{"name"'):
                if line.endswith(","):
                    line = line[:-1]
                yield json.loads(line)


def check_vectors(path):
    n = 0
    for sc in scenarios(path):
        rules = []
        for r in sc["rules"]:
            rules.append(Rule.from_wire(r))
        eng = TripEngine(rules)
        out = []
        for step in sc["steps"]:
            if step[0] == "u":
                eng.update_into(step[1], step[2], step[3], out, step[4] if len(step) > 4 else 0)
            elif step[0] == "t":
                out += eng.tick(step[1])
            else:
                new = []
                for r in step[1]:
                    new.append(Rule.from_wire(r))
                out += eng.set_rules(new, step[2])
        got = []
        for e in out:
            got.append(list(e.as_tuple()))
        check(got == sc["events"], "vector %s: got %r" % (sc["name"], got))
        n += 1
        eng = out = got = sc = None
    check(n >= 6, "only %d trip vectors" % n)


def check_replay():
    a = []
    b = []
    feed_day(TripEngine(node_rules()), 3, a)
    feed_day(TripEngine(node_rules()), 3, b)
    check(len(a) > 0, "the storm day must raise at least one alarm")
    check(events_of(a) == events_of(b), "replaying the same samples gives the same events")


def measure():
    gc.collect()
    r0 = mem()
    rules = node_rules()
    gc.collect()
    m0 = mem()
    heap_rules = m0 - r0 if r0 >= 0 else -1
    eng = TripEngine(rules)
    gc.collect()
    m1 = mem()
    out = []
    feed_day(eng, 1, out)
    del out
    gc.collect()
    m2 = mem()
    heap = max(m1 - m0, m2 - m0) if m0 >= 0 else -1

    # Allocation per update, measured with the collector off. THRESHOLD/SUM/RATE
    # channels: integer arithmetic only. INVVEL: floats once per completed sub-window.
    alloc_ts = alloc_of(eng, ((RAIN, 0), (WATER, 1500)), 90000, 1)
    alloc_rate = alloc_of(TripEngine([node_rules()[5]]), ((DISP, 5000),), 0, 3)
    alloc_fit = alloc_of(TripEngine([node_rules()[6]]), ((DISP, 5000),), 0, 3)
    # Time per update(): one simulated day on three channels, minus the same loop
    # without the engine (sample generation is not the engine's cost).
    eng = None   # one 8-rule engine at a time, as on a node
    eng = TripEngine(node_rules())
    out = []
    t0 = ticks_us()
    n = feed_day(eng, 2, out)
    t1 = ticks_us()

    class Null:
        def update_into(self, chan, t, v, out):
            return 0

    feed_day(Null(), 2, out)
    t2 = ticks_us()
    us = ((t1 - t0) - (t2 - t1)) / n
    return heap, heap_rules, alloc_ts, alloc_rate, alloc_fit, us


def alloc_of(eng, chans, t0, slope):
    """Bytes allocated by the worst single update_into() after a warm-up of 3 h."""
    out = []
    for i in range(180):
        for c, base in chans:
            eng.update_into(c, t0 + i * 60, base + i * slope, out)
    worst = 0
    for i in range(180, 180 + 20):
        t = t0 + i * 60
        for c, base in chans:
            gc.collect()
            gc.disable()
            a = mem()
            eng.update_into(c, t, base + i * slope, out)
            b = mem()
            gc.enable()
            if b - a > worst:
                worst = b - a
    return worst if a >= 0 else -1


def check_unload():
    """Once rules are built, the engine keeps nothing of protocol.ruleparse (the checks and
    parsers): unloading it, as a node does after boot and after a CONFIG downlink, frees
    its code; the engine keeps running; the next rule change imports it again.
    Returns the bytes freed (-1 on CPython, where unload() is a no-op)."""
    import sys

    from firmware.unload import unload

    eng = TripEngine(node_rules())
    for r in eng.rules:
        for k in r.__dict__:
            v = r.__dict__[k]
            check(type(v) in (int, tuple), "Rule.%s holds a %s: only ints and a tuple may stay"
                  % (k, type(v).__name__))
    check(eng.update(WATER, 0, 3100) == [], "one sample beyond must not trip with persist_s 2")
    gc.collect()
    before = mem()
    unload("protocol.ruleparse")
    gc.collect()
    freed = before - mem() if before >= 0 else -1
    if freed >= 0:
        check("protocol.ruleparse" not in sys.modules, "unload leaves protocol.ruleparse in sys.modules")
        check(freed > 4000, "unloading protocol.ruleparse freed %d B: something still holds it" % freed)
    ev = eng.update(WATER, 60, 3100)
    check(len(ev) == 1 and ev[0].event == TRIP, "the engine trips after the unload %r" % (ev,))
    # A changed threshold on the latched rule: imports ruleparse again and keeps the latch.
    ev = eng.set_rules([Rule.from_wire([8, WATER, THRESHOLD, 3, 1, 3200, 100, 2, 600])], 120)
    check(ev == [] and eng.latched() == [8], "set_rules after the unload: %r, latched %r"
          % (ev, eng.latched()))
    try:
        Rule.from_wire([1, WATER, THRESHOLD, 3, 1, 3000, 100, -1, 600])
        check(False, "persist_s -1 must be refused after the unload")
    except ValueError as e:
        check("persist_s -1 out of range" in str(e), "message after the unload: %s" % e)
    unload("protocol.ruleparse")
    return freed


def main():
    check_vectors(VECTORS)   # first, while the heap is emptiest: the JSON is the biggest thing
    check_threshold()
    check_config_table()
    check_levels()
    check_sum()
    lead = check_invvel()
    check_replay()
    heap, heap_rules, alloc_ts, alloc_rate, alloc_fit, us = measure()
    freed = check_unload()
    if heap >= 0:
        check(heap < 8192, "engine heap %d B for 3 channels / 8 rules, budget 8192" % heap)
        check(alloc_ts == 0, "THRESHOLD/SUM update allocates %r B" % alloc_ts)
        check(alloc_rate == 0, "RATE update allocates %r B" % alloc_rate)
    print("TRIP_CHECK " + json.dumps({
        "ok": not fails, "fails": fails, "checks": checks[0], "lead_s": lead,
        "heap_engine_bytes": heap, "heap_rules_bytes": heap_rules, "alloc_threshold_sum_bytes_per_update": alloc_ts,
        "alloc_rate_bytes_per_update": alloc_rate, "alloc_invvel_fit_bytes": alloc_fit,
        "us_per_update": us, "ruleparse_unload_freed": freed,
    }))


main()
