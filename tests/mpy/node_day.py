"""A simulated day of a 3-channel node, run on the MicroPython unix port with a
device-sized heap (tests/firmware/test_node_mpy.py runs it with -X heapsize=96K).

The node is the real firmware.app.Node with fake sensors and relays and a fake RF;
a minimal gateway in this script acks every frame and prints it ("F <t> <hex>") so
the CPython side decodes and checks them with protocol/. Storm 06:00-08:00, water
level rise, a broken 4-20 mA loop at 12:00, a radio outage 18:30-19:40, creep to
failure at 20:00 (then the draw-wire reads open circuit).

Usage: micropython node_day.py <workdir> [hours]
       micropython node_day.py --code     (prints the heap the imported code takes)
       micropython node_day.py --lib      (imports only: step day(workdir, hours) yourself)

On a board the modules are frozen into flash and cost no heap; the unix port cannot
freeze them, so the wrapper measures the code's heap with --code first and runs the
day with that much more heap. gc.threshold makes the collector run every 4 KB of
allocation, so the highest gc.mem_alloc() seen is the live data plus < 4 KB.
"""
import gc
import math
import sys
from binascii import hexlify

KEY = bytes(range(1, 33))
NODE = 17
UNIX0 = 1780000000
RAIN = 0x08
DISP = 0x10
WATER = 0x18
TF = 20 * 3600


class NoMachine:
    pass


class Relay:
    def __init__(self):
        self.on_ = False

    def on(self):
        self.on_ = True

    def off(self):
        self.on_ = False


class Sim:
    t = 0


def rain_rate(t):
    if 6 * 3600 <= t < 8 * 3600:
        return 10 if 7 * 3600 <= t < 27000 else 4
    return 0


def disp(t):
    return int(-600 * math.log((TF - t) / 3600.0) + 600 * math.log(TF / 3600.0) + 0.5)


def water(t):
    h = t / 3600.0
    if h < 6:
        return 1500
    if h < 9:
        return int(1500 + (h - 6) * 700)
    return max(1500, int(3600 - (h - 9) * 300))


class Rain:
    def __init__(self):
        self.last = 0
        self.acc = 0
        self.total = 0

    def read(self):
        t = Sim.t
        for x in range(self.last, t):
            self.acc += rain_rate(x)
        self.last = max(self.last, t)
        v = self.acc // 60
        self.acc -= v * 60
        self.total += v
        return v, 0


class Disp:
    def read(self):
        if Sim.t >= TF:
            return None, 1          # faults.OPEN_CIRCUIT: the wire snapped
        return disp(Sim.t), 0


class Water:
    def read(self):
        if 12 * 3600 <= Sim.t < 12 * 3600 + 1200:
            return None, 8          # faults.BROKEN_LOOP
        return water(Sim.t), 0


class Radio:
    def __init__(self):
        self.out = []
        self.inbox = []

    def send(self, data):
        self.out.append(data)
        return True

    def poll(self):
        return self.inbox.pop(0) if self.inbox else None

    def busy(self):
        return False

    def airtime_ms(self, n):
        return 100 + 2 * n


def day(workdir, hours=21.5):
    """The day as a generator that yields after every node step: the 32-bit (wasm) runner
    resumes it from JS, the only place that build collects garbage
    (tests/firmware/test_node_32bit.py); main() below just runs it through."""
    yield                       # wasm: the runner collects here, before any firmware loads
    gc.collect()
    start = gc.mem_alloc()      # the runtime and this script: not part of the node
    from firmware.app import Node
    from firmware.hal import Hal
    from firmware.runconfig import NodeConfig
    from firmware.unload import unload_config
    from protocol import frame as fr
    from protocol import framing, messages
    from protocol.mic import Hmac
    cfg = NodeConfig({
        "version": 1, "node": NODE, "key": "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
        "board": "esp32_devkitc",
        "channels": [{"id": "rain.0", "driver": "fake"}, {"id": "displacement.0", "driver": "fake"},
                     {"id": "water_level.0", "driver": "fake"}],
        "rules": [[2, RAIN, 3, 3, 3600, 300, 50, 1800], [6, DISP, 2, 2, 3600, 200, 50, 1800],
                  [7, DISP, 4, 4, 7200, 3600, 900, 3600], [8, WATER, 1, 2, 1, 3000, 100, 2, 600]],
        "log_kb": 64})
    radio = Radio()
    siren = Relay()
    strobe = Relay()
    rain = Rain()
    node = Node(Hal(machine=NoMachine(), root=workdir), cfg, {RAIN: rain, DISP: Disp(), WATER: Water()},
                radio, siren, strobe, rand=lambda: 0.5, console=lambda s: None,
                mem_free=gc.mem_free)
    unload_config()             # boot-only code, dropped as firmware/main.py does
    signer = Hmac(KEY)
    deframer = framing.Deframer()
    yield
    gc.collect()
    base = gc.mem_alloc()
    gc.threshold(4096)
    node.start(0)
    t = 0.0
    end = hours * 3600
    dl = 0
    red_at = -1
    siren_at = -1
    sent_at_red = 0
    sent = 0
    first_after_red = 0
    peak = 0
    steps = 0
    while t < end:
        Sim.t = int(t)
        wake = node.step(t)
        steps += 1
        a = gc.mem_alloc()
        if a > peak:
            peak = a
        if red_at < 0 and node.engine.level(DISP) == 4:
            red_at = int(t)
            sent_at_red = sent
        if siren_at < 0 and siren.on_:
            siren_at = int(t)
        down = 18.5 * 3600 <= t < 19.5 * 3600 + 600
        for wire in radio.out:
            sent += 1
            if red_at >= 0 and not first_after_red and sent == sent_at_red + 1:
                first_after_red = fr.decode(framing.Deframer().feed(wire)[0], lambda n: signer).mtype
            if down:
                continue
            for item in deframer.feed(wire):
                f = fr.decode(item, lambda n: signer)
                print("F %d %s" % (int(t), hexlify(item).decode()))
                dl += 1
                ack = fr.encode(signer, fr.ACK, NODE, dl, UNIX0 + int(t),
                                messages.encode_ack(f.seq, UNIX0 + int(t), [(f.seq, f.seq)]))
                radio.inbox.append(framing.wrap(ack))
        radio.out = []
        nxt = t + 60 if wake is None else wake
        if radio.inbox:
            nxt = min(nxt, t + 0.3)
        t = max(min(nxt, t + 60), t + 0.05)
        yield
    yield                       # wasm: collect before the live figure below
    gc.collect()
    print("DAY_RESULT {\"red_at\": %d, \"siren_at\": %d, \"first_after_red\": %d, \"steps\": %d, "
          "\"peak_alloc\": %d, \"base_alloc\": %d, \"live_alloc\": %d, \"rain_total\": %d, "
          "\"log_depth\": %d, \"level\": %d, \"siren_on\": %d, \"start_alloc\": %d}"
          % (red_at, siren_at, first_after_red, steps, peak, base, gc.mem_alloc(), rain.total,
             node.log.depth(), node.engine.level(), 1 if siren.on_ else 0, start))


def main():
    if sys.argv[1] == "--lib":
        return                  # imported for day(), which the caller steps itself
    if sys.argv[1] == "--code":
        gc.collect()
        print("SCRIPT_BYTES %d" % gc.mem_alloc())     # the runtime and this script
        import firmware.app
        import firmware.hal
        import firmware.runconfig  # noqa: F401
        import protocol.mic  # noqa: F401
        gc.collect()
        print("CODE_BYTES %d" % gc.mem_alloc())       # and the node's modules
        return
    for _ in day(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 21.5):
        pass


main()
