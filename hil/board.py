"""The real-board tier: a scenario's first node is a real board on the bench.

    HIL_PORT=/dev/ttyACM0 HIL_WIRING=bench.json python -m hil board storm

HIL_PORT is the board's USB REPL; HIL_WIRING a JSON file like MicroPython's
`target_wiring`:

    {"board": "esp32_devkitc",            # a firmware/variants/ name
     "uart": [1, 9600, 17, 16],           # the node's LoRa UART: id, baud, tx pin, rx pin
     "uart_port": "/dev/ttyUSB0",         # the USB-UART adapter wired to those pins
     "frozen": false}                     # optional: true when the board's image has the
                                          # app frozen in (firmware/manifest.py): only
                                          # data and the node runner are copied then

The rig compiles protocol/, firmware/ and the node runner (hil/nodeproc.py) with
mpy-cross, deploys them and the node's config with mpremote, starts the runner through
the raw REPL and steps it on simulated time exactly as it steps a simulated node; the
board's real UART goes through the USB-UART adapter into the simulated medium. Test
inputs are fed in software over the REPL (the rig sends each step's sensor values;
rain as a tip counter, crack meter and water level as values, a cut loop as its
fault), since a bench has no DAC in front of the ADC pins.

`HIL_PORT=exec:<micropython>` runs a *stand-in board*: the MicroPython unix port
driven through its raw REPL on a pty, the same control path as a board, with a pty as
its UART (tests/hil runs it, so the tier's own code is tested without hardware).

Without HIL_PORT the tier prints `real-board tier NOT RUN: set HIL_PORT` and exits 3;
it never passes silently. Scenarios that cut a node's power are not run on a board
(a bench has no relay on the supply yet): NOT RUN, exit 3. Exit codes: 0 passed,
1 failed, 2 bad usage or wiring, 3 not run."""
import copy
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import tty

from hil.procs import ROOT, NodeProc

NOT_RUN = 3
RAW_TIMEOUT_S = 60.0


def not_run(why):
    print("real-board tier NOT RUN: %s" % why)
    return NOT_RUN


class ReplLink:
    """The board's REPL: a serial port, or (stand-in) the unix port on a pty."""

    def __init__(self, port, mpy_dir, heap="256K"):
        self.port = port
        self.proc = None
        self.buf = b""
        if port.startswith("exec:"):
            m, s = os.openpty()
            tty.setraw(m)
            tty.setraw(s)
            env = dict(os.environ, MICROPYPATH=".frozen:%s" % mpy_dir)
            # from the .mpy directory: the REPL puts "" (the working directory) first on
            # sys.path, and from ROOT the stand-in would compile firmware/ from source
            self.proc = subprocess.Popen([port[5:], "-X", "heapsize=%s" % heap], stdin=s,
                                         stdout=s, stderr=s, cwd=str(mpy_dir), env=env,
                                         close_fds=True)
            os.close(s)
            self.fd = m
        else:
            import serial
            self.ser = serial.Serial(port, 115200, timeout=0)
            self.fd = self.ser.fileno()
        os.set_blocking(self.fd, False)

    def alive(self):
        return self.proc is None or self.proc.poll() is None

    def write(self, data):
        os.write(self.fd, data)

    def _fill(self, timeout):
        r, _, _ = select.select([self.fd], [], [], timeout)
        if r:
            try:
                b = os.read(self.fd, 4096)
            except OSError:
                b = b""
            if not b:
                return False
            self.buf += b
        return True

    def read_until(self, marker, timeout=RAW_TIMEOUT_S):
        end = time.monotonic() + timeout
        while marker not in self.buf:
            if time.monotonic() > end or not self._fill(0.05) and not self.alive():
                raise RuntimeError("board %s: no %r from the REPL (got %r)"
                                   % (self.port, marker, self.buf[-200:]))
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def readline(self, timeout=60.0):
        """One output line of the running program, or None when it has ended."""
        end = time.monotonic() + timeout
        while b"\n" not in self.buf and b"\x04" not in self.buf:
            if time.monotonic() > end or (not self._fill(0.05) and not self.alive()):
                return None
        if b"\x04" in self.buf and (b"\n" not in self.buf
                                    or self.buf.index(b"\x04") < self.buf.index(b"\n")):
            return None                      # the program ended (its traceback follows)
        i = self.buf.index(b"\n")
        line, self.buf = self.buf[:i], self.buf[i + 1:]
        return line.decode(errors="replace").replace("\r", "")

    def raw_exec(self, code):
        """Ctrl-C twice, raw REPL (Ctrl-A), the code, Ctrl-D: the program runs and its
        stdin is this link."""
        self.write(b"\r\x03\x03")
        time.sleep(0.05)
        self.buf = b""
        self.write(b"\x01")
        self.read_until(b"raw REPL; CTRL-B to exit\r\n>")
        self.write(code.encode() + b"\x04")
        self.read_until(b"OK")

    def close(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(5)
            os.close(self.fd)
        else:
            try:
                self.write(b"\x03\x03\x02")
            finally:
                self.ser.close()


class BoardNode(NodeProc):
    """A node on a board: stepped through the raw REPL, its UART a pty (stand-in) or
    the USB-UART adapter on its LoRa pins."""

    def __init__(self, spec, d, bench, mpy_dir):
        NodeProc.__init__(self, spec, d, "micropython", bench.heap, mpy_dir)
        self.bench = bench
        self.link = None
        if not bench.standin:
            os.close(self.master)
            os.close(self.slave)
            self.master = os.open(bench.wiring["uart_port"], os.O_RDWR | os.O_NOCTTY)
            tty.setraw(self.master)
            os.set_blocking(self.master, False)
            self.slave = None
            self.tty = bench.wiring["uart_port"]

    def start(self, t):
        self.boots += 1
        self.rx_total = self.tx_total = 0
        self.boot_t = t
        if self.boots == 1:
            self.first_boot_t = t
        if self.link is not None:
            self.link.close()
        self.link = ReplLink(self.bench.port, self.mpy_dir, self.bench.heap)
        workdir = str(self.d) if self.bench.standin else ""
        # on a board, boot.py as a reset runs it (the raw REPL does not reset): a frozen
        # app ahead of the files, the collection threshold
        boot = "" if self.bench.standin else "import boot\n"
        self.link.raw_exec("%simport sys\ndel sys.argv[:]\nsys.argv.extend(['nodeproc', %r, %r])\n"
                           "import nodeproc\n" % (boot, workdir, self.tty))
        return self.read_until_w()

    def alive(self):
        return self.link is not None and self.link.alive()

    def read_until_w(self):
        lines = []
        while True:
            line = self.link.readline()
            if line is None:
                self.ended = True
                return lines, None
            if line.startswith("W "):
                return lines, line
            if line:
                lines.append(line)

    def step(self, mono, inputs):
        self.link.write(("T %.3f %s\n" % (mono, " ".join(inputs))).encode())
        return self.read_until_w()

    def pull(self, want=None, timeout=30.0):
        """As NodeProc.pull, with a longer guard: a board's UART sends at its baud rate
        in the board's time, and an emulated Pico polling its REPL runs at a third of
        real time or less (a 200-byte frame, 208 ms at 9600 baud, can take more than the
        1 s a pty is given). It returns as soon as every byte is in."""
        return NodeProc.pull(self, want, timeout)

    def kill_in_step(self, mono, inputs, delay_s):
        raise RuntimeError("power cuts are not run on a board (no supply relay on the bench)")

    def stop(self):
        if self.link is None:
            return
        try:
            self.link.write(b"Q\n")
            while True:
                line = self.link.readline(timeout=5)
                if line is None:
                    break
                if line.startswith("M "):
                    self.live_heap = int(line.split()[1])
        finally:
            self.link.close()
            self.link = None

    def stderr_text(self):
        """What the program printed after its output ended: the raw REPL frames it as
        <Ctrl-D> error text <Ctrl-D> '>' (a traceback when it raised)."""
        if self.link is None:
            return ""
        parts = self.link.buf.decode(errors="replace").replace("\r", "").split("\x04")
        text = [p for p in parts if p.strip() not in ("", ">")]
        return text[-1] if text else ""


# removes what an earlier deploy left, if anything
_CLEAN = ("import os\n"
          "def _rm(p):\n"
          "    try:\n"
          "        if os.stat(p)[0] & 0x4000:\n"
          "            for n in os.listdir(p):\n"
          "                _rm(p + '/' + n)\n"
          "            os.rmdir(p)\n"
          "        else:\n"
          "            os.remove(p)\n"
          "    except OSError:\n"
          "        pass\n"
          "for p in ('log', 'firmware', 'protocol'):\n"
          "    _rm(p)\n")


class Bench:
    """What the rig needs to put a board in place of the first node."""

    def __init__(self, port, wiring, heap="256K"):
        self.port = port
        self.standin = port.startswith("exec:")
        self.wiring = wiring
        self.heap = heap

    def uart_spec(self):
        return self.wiring.get("uart", [1, 9600, 17, 16])

    def adapt(self, spec):
        """Software test inputs: rain as a counter, analogue channels as values."""
        n = copy.copy(spec)
        n.channels = []
        for c in spec.channels:
            c = copy.copy(c)
            if c.source == "rain":
                c.source = "counter"
            elif c.source in ("drawwire", "loop420"):
                c.source = "direct"
            n.channels.append(c)
        return n

    def node(self, spec, d, mpy_dir):
        if not self.standin:
            self.deploy(d, mpy_dir)
        return BoardNode(spec, d, self, mpy_dir)

    def deploy(self, d, mpy_dir):
        """The node's files onto the board in one mpremote session (each `connect` costs
        a soft reset). With the app frozen into the image (wiring "frozen": true) only
        the data goes: the board file, config.json, hil.json and the node runner."""
        mpremote = shutil.which("mpremote") or os.path.join(sys.prefix, "bin", "mpremote")
        code = [] if self.wiring.get("frozen") else [
            ["fs", "cp", "-r", str(mpy_dir / "protocol"), ":"],
            ["fs", "cp", "-r", str(mpy_dir / "firmware"), ":"]]
        data = ([["fs", "mkdir", ":firmware"]] if self.wiring.get("frozen") else []) + [
            ["fs", "mkdir", ":firmware/variants"]]
        data += [["fs", "cp", str(p), ":firmware/variants/"]
                 for p in sorted((d / "firmware" / "variants").glob("*.json"))]
        data += [["fs", "cp", str(ROOT / "firmware" / "boot.py"), ":boot.py"],
                 ["fs", "cp", str(mpy_dir / "nodeproc.mpy"), ":nodeproc.mpy"],
                 ["fs", "cp", str(d / "config.json"), ":config.json"],
                 ["fs", "cp", str(d / "hil.json"), ":hil.json"]]
        # first a fresh frame log and no app left from an earlier deploy (it would
        # shadow the frozen modules)
        chain = ["exec", _CLEAN]
        for c in code + data:
            chain += ["+"] + c
        r = subprocess.run([mpremote, "connect", self.port] + chain, capture_output=True,
                           text=True, timeout=300)
        if r.returncode:
            raise RuntimeError("deploy to %s failed (%s): %s"
                               % (self.port, " ".join(chain), r.stderr.strip()[-2000:]))


def main(scenario=None, environ=None, seed=None, hours=None):
    env = os.environ if environ is None else environ
    port = env.get("HIL_PORT", "")
    if not port:
        return not_run("set HIL_PORT (e.g. /dev/ttyACM0) and HIL_WIRING to a wiring file, "
                       "or HIL_PORT=exec:.venv/bin/micropython for the stand-in board")
    if not scenario:
        print("usage: python -m hil board SCENARIO", file=sys.stderr)
        return 2
    wiring = {}
    if not port.startswith("exec:"):
        if not os.path.exists(port):
            return not_run("HIL_PORT=%s does not exist: is the board plugged in?" % port)
        path = env.get("HIL_WIRING", "")
        if not path or not os.path.exists(path):
            return not_run("HIL_WIRING=%r: give the wiring JSON file of this bench" % path)
        try:
            with open(path) as f:
                wiring = json.load(f)
        except ValueError as e:
            print("%s: not valid JSON: %s" % (path, e), file=sys.stderr)
            return 2
        for key, what in (("board", "a firmware/variants/ name"),
                          ("uart", "[uart id, baud, tx pin, rx pin] of the node's LoRa UART"),
                          ("uart_port", "the USB-UART adapter wired to those pins")):
            if key not in wiring:
                print("%s: key %r is required: %s" % (path, key, what), file=sys.stderr)
                return 2
        if not (shutil.which("mpremote") or os.path.exists(os.path.join(sys.prefix, "bin",
                                                                        "mpremote"))):
            return not_run("mpremote is not installed (pip install mpremote)")
    from hil import scenario as scen
    from hil.rig import Rig
    try:
        sc = scen.load(scenario)
    except scen.ScenarioError as e:
        print("hil: %s" % e, file=sys.stderr)
        return 2
    if hours:
        sc.duration_s = hours * 3600.0
    if any(a["do"] == "node_power_cuts" for a in sc.actions):
        return not_run("scenario %s cuts node power: no supply relay on the bench" % sc.name)
    with tempfile.TemporaryDirectory(prefix="hil-board-") as tmp:
        rig = Rig(sc, tmp, seed=seed, board=Bench(port, wiring))
        res = rig.run()
    print("real-board tier: node %d ran on %s%s" % (sc.nodes[0].id, port,
                                                     " (stand-in board)" if port.startswith(
                                                         "exec:") else ""))
    print(res.text())
    print(res.json_line(), flush=True)
    return 0 if res.passed else 1
