"""A simulated day of a 3-channel node, run on the MicroPython unix port with a
device-sized heap (tests/firmware/test_node_mpy.py runs it with -X heapsize=96K).

The node is the real firmware.app.Node with fake sensors and relays and a fake RF;
a minimal gateway in this script acks every frame and prints it ("F <t> <hex>") so
the CPython side decodes and checks them with protocol/. Storm 06:00-08:00, water
level rise, a broken 4-20 mA loop at 12:00, a radio outage 18:30-19:40, creep to
failure at 20:00 (then the draw-wire reads open circuit).

Usage: micropython node_day.py <root> [hours] [file]   (file: a CONFIG body in hex, day())
       micropython node_day.py --code     (prints the heap the imported code takes)
       micropython node_day.py --lib      (imports only: step day(root, hours) yourself)

On a board the modules are frozen into flash and cost no heap; the unix port cannot
freeze them, so the wrapper measures the code's heap with --code first and runs the
day with that much more heap. gc.threshold makes the collector run every 4 KB of
allocation, so the highest gc.mem_alloc() seen is the live data plus < 4 KB.
"""
import gc
import math
import struct
import sys
from binascii import hexlify

from micropython import const

# The script's own constants are private consts: no names of their own in the qstr pool,
# which the node shares with this script (on a board the script does not exist).
_NODE = const(17)
_RAIN = const(0x08)
_DISP = const(0x10)
_WATER = const(0x18)
_TF = const(72000)         # 20:00
_UNIX0 = const(1780000000)


class Sim:
    """A scripted sensor. The station's real driver (built by firmware/main.py's wiring
    on the fake machine) is read every time, so its code, its objects and its garbage
    are the node's as on a board; the value is the script's, so the checks on the
    CPython side stay exact. The script's names are kept few: they share the node's
    qstr pool, which on a board holds the node's names only."""
    t = 0
    now = {}            # channel id -> (value, fault) for the step about to run (step())

    def __init__(self, driver, chan, rain=None):
        self.driver = driver
        self.chan = chan
        self.rain = rain

    def read(self):
        self.driver.read()
        if self.rain is not None:
            return self.rain.read()
        return Sim.now[self.chan]

    @staticmethod
    def step(t):
        """The draw-wire (log creep to failure at _TF, then the wire snaps: fault 1,
        OPEN_CIRCUIT) and 4-20 mA (a flood wave; a broken loop, fault 8, at noon)
        readings at second t, worked out before each node step: the floats they take are
        this script's garbage, not the node's."""
        Sim.t = t
        Sim.now[_DISP] = (None, 1) if t >= _TF else (
            int(-600 * math.log((_TF - t) / 3600.0) + 600 * math.log(_TF / 3600.0) + 0.5), 0)
        h = t / 3600.0
        w = 1500 if h < 6 else int(1500 + (h - 6) * 700) if h < 9 else max(
            1500, int(3600 - (h - 9) * 300))
        Sim.now[_WATER] = (None, 8) if 12 * 3600 <= t < 12 * 3600 + 1200 else (w, 0)


class Rain:
    def __init__(self):
        self.last = 0
        self.acc = 0
        self.total = 0

    def read(self):
        t = Sim.t
        for x in range(self.last, t):       # mm/h x 10: 4 from 06:00, 10 07:00-07:30, to 08:00
            if 6 * 3600 <= x < 8 * 3600:
                self.acc += 10 if 7 * 3600 <= x < 27000 else 4
        self.last = max(self.last, t)
        v = self.acc // 60
        self.acc -= v * 60
        self.total += v
        return v, 0


class Radio:
    """The link to this script's gateway. Packet size and airtime are the station's E22
    driver's (`lora`, built by the wiring), so the node sizes and paces its frames, and
    loads the airtime code, as it would on the board."""

    def __init__(self, lora):
        self.out = []
        self.rx = []
        self.lora = lora
        self.max_payload = lora.max_payload

    def send(self, data):
        self.out.append(data)
        return True

    def poll(self):
        return self.rx.pop(0) if self.rx else None

    def busy(self):
        return False

    def airtime_ms(self, n):
        return self.lora.airtime_ms(n)


def day(root, h=21.5, payload=None):
    """The day as a generator that yields after every node step: the 32-bit (wasm) runner
    resumes it from JS, the only place that build collects garbage
    (tests/firmware/test_node_32bit.py); main() below just runs it through.

    `payload`: a CONFIG body as hex, without its 4-byte `re` (the CBOR map the gateway's
    set-rules builds, made on the CPython side: the gateway's codecs are not the node's).
    At 10:00 this script's gateway sends it right after an ACK, answering the frame just
    acked; the busiest step while it is in the air is DAY_RESULT's config_peak."""
    # the test's machine module (pins, ADCs, UARTs), tests/mpy_fakes/machine.py: not the node's
    import fake_machine
    yield                       # wasm: the runner collects here, before any firmware loads
    gc.collect()
    gc.collect()
    start = gc.mem_alloc()      # the runtime and this script (below, its gateway too): not the node
    import firmware.main  # noqa: F401  (running on a board: its code is the node's)
    from firmware import startup as wiring
    from firmware.app import Node
    from firmware.hal import Hal
    from protocol import frame as fr
    from protocol import framing
    from protocol.mic import Hmac
    hal = Hal(machine=fake_machine, clock=fake_machine.FakeClock(), root=root)
    for d in ("firmware", "firmware/variants"):
        hal.mkdir(d)
    # The station's board file, as `stationctl flash` puts it on the board (the esp32_devkitc
    # variant's pins; embedded so the wasm runner needs no host file).
    board = {
        "board": "station", "mcu": "esp32",
        "inputs": {"rain": {"pin": 27, "pull": "up"}},
        "outputs": {"siren": {"pin": 25, "active": 1}, "strobe": {"pin": 26, "active": 1}},
        "adc": {
            "drawwire": {"pin": 34, "atten": "11db", "floor_mv": 150, "ceiling_mv": 2450},
            "excitation": {"pin": 39, "atten": "11db", "floor_mv": 150, "ceiling_mv": 2450,
                           "divider": [10000, 10000]},
            "loop420": {"pin": 35, "atten": "11db", "floor_mv": 150, "ceiling_mv": 2450, "shunt_ohm": 100},
            "battery": {"pin": 36, "atten": "11db", "floor_mv": 150, "ceiling_mv": 2450,
                        "divider": [220000, 33000]},
        },
        "uarts": {"lora": {"id": 1, "tx": 18, "rx": 19, "m0": 21, "m1": 22, "aux": 23, "baudrate": 9600}},
    }

    config = {
        "version": 1, "node": _NODE, "key": "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
        "board": "station",
        "channels": [{"id": "rain.0", "driver": "rain", "mm_per_tip": 0.2},
                     {"id": "displacement.0", "driver": "drawwire", "cal": [[0.1, 0], [0.9, 50000]]},
                     {"id": "water_level.0", "driver": "loop420", "value_4ma": 0, "value_20ma": 10000}],
        "rules": [[2, _RAIN, 3, 3, 3600, 300, 50, 1800], [6, _DISP, 2, 2, 3600, 200, 50, 1800],
                  [7, _DISP, 4, 4, 7200, 3600, 900, 3600], [8, _WATER, 1, 2, 1, 3000, 100, 2, 600]],
        "radio": {"model": "e22"},
        "log_kb": 64}
    import json
    for path, obj in (("firmware/variants/station.json", board), ("config.json", config)):
        f = hal.open(path, "w")
        try:
            f.write(json.dumps(obj))
        finally:
            f.close()
    # boot as firmware/main.py's run() does: the config checked, the board file read,
    # drivers, radio driver and relays built, then the boot-only modules dropped
    cfg, drivers, lora, siren, strobe = wiring.wire(hal, console=lambda s: None)
    # voltages inside the ADCs' linear range, with a little noise, so the drivers read
    # through their value paths (their arithmetic and garbage) rather than a fault's
    for pin, uv in ((34, 1200000), (39, 1650000), (35, 1200000)):   # wiper, excitation, loop
        fake_machine.adc(pin).set_uv(uv, uv + 400, uv - 200, uv + 100)
    yield
    gc.collect()
    before = gc.mem_alloc()
    # this script's stand-ins around the node (its link to the gateway, the scripted
    # sensor values, the gateway's signer and deframer) are not part of the node either
    radio = Radio(lora)         # frames go to this script's gateway
    rain = Rain()
    sources = {_RAIN: Sim(drivers[_RAIN], _RAIN, rain),
               _DISP: Sim(drivers[_DISP], _DISP), _WATER: Sim(drivers[_WATER], _WATER)}
    signer = Hmac(bytes(range(1, 33)))
    deframer = framing.Deframer()
    yield
    gc.collect()
    start += gc.mem_alloc() - before
    # The fake machine's pins, ADCs and UART stand in for objects an ESP32 keeps in ROM
    # (its machine.Pin, ADC and UART objects are static): a twin of each, built the same
    # way, measures what the fakes hold, and that is not the node's either.
    registries = (fake_machine._pins, fake_machine._adcs, fake_machine._uarts)
    saved = [list(r.values()) for r in registries]
    twins = [None] * sum(len(r) for r in saved)
    yield
    gc.collect()
    before = gc.mem_alloc()
    i = 0
    for p in saved[0]:
        twins[i] = fake_machine.Pin(p.id, p.mode, p.pull)
        i += 1
    for a in saved[1]:
        twins[i] = fake_machine.ADC(a.key, a.atten_value)
        i += 1
    for u in saved[2]:
        twins[i] = fake_machine.UART(u.id, u.baudrate, **u.kw)
        i += 1
    yield
    gc.collect()
    start += gc.mem_alloc() - before
    for r, objs in zip(registries, saved):
        for o in objs:          # the firmware's objects stay the ones the tests reach
            r[o.key if r is registries[1] else o.id] = o
    twins = saved = registries = None
    node = Node(hal, cfg, sources, radio, siren, strobe, rand=lambda: 0.5, console=lambda s: None,
                mem_free=gc.mem_free, downlink=firmware.main.downlink)
    from firmware.logscan import open_log
    open_log(node.log, node.clock)      # as firmware/main.py: the log opened, then boot code dropped
    wiring.drop_boot_modules()
    del wiring, open_log
    yield
    gc.collect()
    gw = gc.mem_alloc()
    # this script's gateway builds its ACKs itself, not with protocol/gwmessages.py: that
    # module is the gateway's (validation tables a node never carries), and its interned
    # names would share the node's qstr pool and tip it into its next, larger pool
    yield
    gc.collect()
    start += gc.mem_alloc() - gw
    base = gc.mem_alloc()
    gc.threshold(4096)
    node.start(0)
    t = 0.0
    end = h * 3600
    dl = 0
    red_at = -1
    siren_at = -1
    sent_at_red = 0
    sent = 0
    first_after_red = 0
    peak = 0
    steps = 0
    live_peak = 0               # between steps, after the collection: no garbage
    cfg_at = -1 if payload is None else 36000       # 10:00
    cfg_peak = 0
    cfg_steps = 0               # node steps while the CONFIG was in the air or in rx
    while t < end:
        Sim.step(int(t))
        if sys.platform == "webassembly":
            # the script's values are worked out before the step so that their floats and
            # tuples are this script's garbage, not the node's: on wasm that garbage goes
            # only at a collection, which the runner makes when this yields
            gc.collect()
            yield
        a = gc.mem_alloc()
        if a > live_peak:
            live_peak = a
        wake = node.step(t)
        steps += 1
        a = gc.mem_alloc()
        if cfg_steps:           # the CONFIG's steps are measured apart: the rest is routine
            cfg_steps -= 1
            if a > cfg_peak:
                cfg_peak = a
        elif a > peak:
            peak = a
        if red_at < 0 and node.engine.level(_DISP) == 4:
            red_at = int(t)
            sent_at_red = sent
        if siren_at < 0 and siren.is_on():
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
                ack = fr.encode(signer, fr.ACK, _NODE, dl, _UNIX0 + int(t),
                                # the gateway's ACK of this one frame (SPEC 6.2): re = seq,
                                # one range at gap 0, length 1
                                struct.pack(">II", f.seq, _UNIX0 + int(t)) + b"\x00\x01")
                radio.rx.append(framing.wrap(ack))
                if 0 <= cfg_at <= t:
                    cfg_at = -1
                    dl += 1
                    radio.rx.append(framing.wrap(fr.encode(
                        signer, fr.CONFIG, _NODE, dl, _UNIX0 + int(t),
                        struct.pack(">I", f.seq) + bytes.fromhex(payload))))
                    cfg_steps = 2
        radio.out = []
        nxt = t + 60 if wake is None else wake
        if radio.rx:
            nxt = min(nxt, t + 0.3)
        t = max(min(nxt, t + 60), t + 0.05)
        if sys.platform == "webassembly":
            # the runner collects when this yields only if a collection is due: ask for one,
            # so each step starts from live data (else up to gc.threshold's 4 KB of older
            # garbage rides along into whichever step comes next)
            gc.collect()
        yield
    yield                       # wasm: collect before the live figure below
    gc.collect()
    print("DAY_RESULT {\"red_at\": %d, \"siren_at\": %d, \"first_after_red\": %d, \"steps\": %d, "
          "\"peak_alloc\": %d, \"base_alloc\": %d, \"live_alloc\": %d, \"rain_total\": %d, "
          "\"log_depth\": %d, \"level\": %d, \"siren_on\": %d, \"start_alloc\": %d, \"live_peak\": %d, "
          "\"cbor_decoder\": %d, \"config_peak\": %d, \"version\": %d}"
          % (red_at, siren_at, first_after_red, steps, peak, base, gc.mem_alloc(), rain.total,
             node.log.depth(), node.engine.level(), 1 if siren.is_on() else 0, start, live_peak,
             1 if "protocol.cbordecode" in sys.modules else 0, cfg_peak, node.cfg.version))


def main():
    if sys.argv[1] == "--lib":
        return                  # imported for day(), which the caller steps itself
    if sys.argv[1] == "--code":
        import fake_machine  # noqa: F401
        gc.collect()
        print("SCRIPT_BYTES %d" % gc.mem_alloc())     # the runtime, this script, its fake machine
        for name in ("firmware.main", "firmware.startup", "firmware.app", "firmware.hal", "firmware.drivers.rain",
                     "firmware.drivers.drawwire", "firmware.drivers.loop420",
                     "firmware.radio.ebyte", "protocol.mic"):
            __import__(name)
        gc.collect()
        print("CODE_BYTES %d" % gc.mem_alloc())       # and the node's modules
        return
    # the unix port interns each argument as a name (at most 255 characters: a longer one
    # is a fatal "uncaught NLR"), so the CONFIG comes in a file
    for _ in day(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 21.5,
                 open(sys.argv[3]).read() if len(sys.argv) > 3 else None):
        pass


main()
