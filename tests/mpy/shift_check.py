# protocol/shiftages.py under the MicroPython unix port (tests/protocol/test_shiftages.py
# runs it at 64K): random payloads shifted as decode() + age += delta + encode() shifts them,
# damaged payloads failing where those fail, and what one shift allocates beside them.
import gc
import random
import sys

from protocol import readings
from protocol.shiftages import shift_ages

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200
random.seed(11)


def rvalues(n):
    if random.random() < 0.7:
        v = random.randint(-100000, 100000)
        step = 500
    else:
        v = random.getrandbits(31) - random.getrandbits(31)
        step = 1 << 30
    vals = [v]
    for _ in range(n - 1):
        v = max(-0x80000000, min(0x7FFFFFFF, v + random.randint(-step, step)))
        vals.append(v)
    return vals


def rblocks():
    out = []
    for _ in range(random.randint(1, 4)):
        n = random.randint(1, 12)
        step = random.randint(0, 600) if n > 1 else 0
        age = step * (n - 1) + random.randint(0, 100000)
        chan = random.choice((8, 16, 24, 25, 40))
        if random.random() < 0.2:
            out.append(readings.Block(chan, age, step, None, random.getrandbits(16), n))
        else:
            out.append(readings.Block(chan, age, step, rvalues(n)))
    return out


def reference(data, delta):
    try:
        bs = readings.decode(data)
        for b in bs:
            b.age += delta
        return readings.encode(bs)
    except ValueError:
        return None


def shifted(data, delta):
    try:
        return bytes(shift_ages(data, delta))
    except ValueError:
        return None


fails = 0
for i in range(N):
    bs = rblocks()
    data = readings.encode(bs)
    delta = random.choice((0, random.randint(0, 3600), random.getrandbits(24), -random.randint(0, 50000)))
    want = reference(data, delta)
    got = shifted(data, delta)
    if got != want or (got is not None and readings.decode(got) != readings.decode(want)):
        fails += 1
        print("FAIL shift", i, data, delta)
    raw = bytearray(data)
    k = random.randint(0, len(raw) - 1)
    how = random.randint(0, 2)
    if how == 0:
        raw = raw[:k]
    elif how == 1:
        raw[k] = random.getrandbits(8)
    else:
        raw = raw[:k] + bytes([random.getrandbits(8)]) + raw[k:]
    raw = bytes(raw)
    if shifted(raw, delta) != reference(raw, delta):
        fails += 1
        print("FAIL damaged", i, raw, delta)
    rnd = bytes(random.getrandbits(8) for _ in range(random.randint(0, 40)))
    if shifted(rnd, delta) != reference(rnd, delta):
        fails += 1
        print("FAIL random", i, rnd, delta)

# A report as the node logs it: three channels, ten 60 s samples each, ages from logging.
rep = readings.encode([readings.Block(8, 540, 60, [0, 0, 2, 5, 1, 0, 0, 0, 3, 0]),
                       readings.Block(16, 540, 60, list(range(1234, 1244))),
                       readings.Block(24, 540, 60, [1502, 1503, 1503, 1505, 1510, 1512, 1515, 1516, 1516, 1517])])
buf = bytearray(200)


def alloc(fn):
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    fn()
    b = gc.mem_alloc()
    gc.enable()
    return b - a


old = alloc(lambda: reference(rep, 3600))
new = alloc(lambda: shift_ages(rep, 3600))
into = alloc(lambda: shift_ages(rep, 3600, buf))
print("SHIFT alloc %d-byte payload: decode+encode %d B, shift_ages %d B, into a buffer %d B"
      % (len(rep), old, new, into))
if new > len(rep) + 64 or into > 0:
    fails += 1
    print("FAIL shift_ages allocates more than its result")
print("SHIFT iterations=%d failed=%d" % (N, fails))
