# Randomised round trips under the MicroPython unix port (hypothesis cannot run there):
# readings, acks, CBOR, frames, framing with garbage, single bit flips, random bytes, and
# restamping READINGS and ALARM payloads against decode, shift, encode.
# The board's boot.py runs first for its GC policy (collect early), as on a board: without
# it the result at a given heap size was down to how the heap happened to fragment.
import gc
import random
import sys

import firmware.boot  # noqa: F401  (see above)
from protocol import cbor, cbordecode, framing, gwmessages, messages, readings
from protocol import frame as fr
from protocol.gwlink import DUPLICATE, NEW, GatewayLink
from protocol.mic import Hmac

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200
random.seed(7)
S = Hmac(bytes(range(1, 33)))


def lookup(n):
    return S if n == 101 else None


def rblocks():
    out = []
    for _ in range(random.randint(1, 3)):
        n = random.randint(1, 8)
        step = random.randint(1, 120) if n > 1 else 0
        age = step * (n - 1) + random.randint(0, 5000)
        chan = random.choice((8, 16, 24, 25, 40))
        if random.random() < 0.2:
            out.append(readings.Block(chan, age, step, None, random.randint(0, 9), n))
        else:
            v = random.randint(-100000, 100000)
            vals = []
            for _ in range(n):
                v += random.randint(-500, 500)
                vals.append(v)
            out.append(readings.Block(chan, age, step, vals))
    return out


fails = 0
gc.collect()
base = gc.mem_alloc()
peak = 0
deframer = framing.Deframer()
for i in range(N):
    bs = rblocks()
    seq = random.getrandbits(31) + 1  # randint over 2**32 never returns on MicroPython 1.28
    f = fr.encode(S, fr.READINGS, 101, seq, random.getrandbits(32), readings.encode(bs), 0, random.randint(0, 3))
    g = fr.decode(f, lookup)
    if readings.decode(g.payload) != bs or g.seq != seq:
        fails += 1
        print("FAIL roundtrip", i)
    p = readings.encode(bs)
    al = [{messages.A_EVENT: 1, messages.A_LEVEL: 2, messages.A_CHAN: 8, messages.A_RULE: 3,
           messages.A_VALUE: random.randint(-100000, 100000) << random.randint(0, 14),
           messages.A_AGE: random.getrandbits(random.randint(1, 31))} for _ in range(random.randint(1, 4))]
    pa = messages.encode_alarms(al)
    d = random.getrandbits(random.randint(1, 24))
    for b in bs:
        b.age += d
    for a in al:
        a[messages.A_AGE] += d
    if readings.restamp(p, d) != readings.encode(bs) or messages.restamp_alarms(pa, d) != messages.encode_alarms(al):
        fails += 1
        print("FAIL restamp", i)
    junk = bytes(random.getrandbits(8) for _ in range(random.randint(0, 30)))
    items = deframer.feed(junk + framing.wrap(f))
    if items[-1] != f:
        fails += 1
        print("FAIL resync", i)
    b = bytearray(f)
    k = random.randint(0, len(b) * 8 - 1)
    b[k // 8] ^= 1 << (k % 8)
    try:
        fr.decode(bytes(b), lookup)
        fails += 1
        print("FAIL bitflip accepted", i)
    except fr.FrameError:
        pass
    rnd = bytes(random.getrandbits(8) for _ in range(random.randint(0, 80)))
    try:
        fr.decode(rnd, lookup)
        fails += 1
    except fr.FrameError:
        pass
    for fn, more in ((readings.decode, ()), (messages.decode_ack, ()), (gwmessages.decode_map, ()),
                     (cbordecode.loads, ()), (readings.restamp, (5,)), (messages.restamp_alarms, (5,))):
        try:
            fn(rnd, *more)
        except ValueError:
            pass
        except Exception as e:
            fails += 1
            print("FAIL", fn, "raised", repr(e))
    ranges = []
    hi = seq
    for _ in range(random.randint(0, 5)):
        lo = max(0, hi - random.randint(0, 50))
        ranges.append((lo, hi))
        hi = lo - 2 - random.randint(0, 9)
        if hi < 0:
            break
    if messages.decode_ack(gwmessages.encode_ack(seq, 5, ranges)) != (seq, 5, ranges):
        fails += 1
        print("FAIL ack", i)
    m = {1: random.getrandbits(30) * 1024 - 2 ** 39, 2: "x" * random.randint(0, 30), 3: [1, None, True, b"\x00"]}
    if cbordecode.loads(cbor.dumps(m)) != m:
        fails += 1
    a = gc.mem_alloc() - base
    if a > peak:
        peak = a

gwl = GatewayLink(lookup)
r1 = gwl.receive(fr.encode(S, fr.READINGS, 101, 10, 0, readings.encode([readings.Block(8, 0, 0, [1])])))
gwl.committed(r1.frame)
r2 = gwl.receive(fr.encode(S, fr.READINGS, 101, 10, 9, readings.encode([readings.Block(8, 0, 0, [1])])))
if (r1.status, r2.status) != (NEW, DUPLICATE):
    fails += 1
print("FUZZ iterations=%d failed=%d" % (N, fails))
