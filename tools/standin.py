"""A stand-in board: a pty that speaks the MicroPython REPL protocols, backed by the real
MicroPython unix port, so that real `mpremote connect <pty> fs cp / exec / reset` (and
`stationctl flash --app-only / provision / selftest`) run against it without hardware.

    python -m tools.standin --fs /tmp/node17 [--link /tmp/ttyNODE] [--heap 256K]
    -> prints "standin: board on /dev/pts/7 (filesystem /tmp/node17)" and serves until killed

Why a shim: mpremote cannot drive the unix port's own REPL over a pty, because the raw
REPL's soft reboot (Ctrl-D) ends that process. So this process owns the pty and plays
the part of the board's REPL firmware (pyexec.c), and runs every piece of code in a
real `micropython` unix-port process (the *agent*).

What is real:
  - the serial side: a real pty, opened by pyserial/mpremote like a USB-serial board;
    exclusive locks work as on a real port; no baud rate, no DTR/RTS reset;
  - the REPL protocols as mpremote speaks them: friendly REPL (echo, one line at a
    time), raw REPL (Ctrl-A, Ctrl-D execute with "OK", output, 0x04, error, 0x04, ">"),
    raw-paste mode (Ctrl-E "A" Ctrl-A, window-based flow control), Ctrl-B back to the
    friendly REPL, Ctrl-C interrupting running code (KeyboardInterrupt via SIGINT),
    Ctrl-D soft reboot ("MPY: soft reboot", fresh interpreter, boot.py, and main.py in
    the friendly REPL only, as on a board);
  - the interpreter: every line, every mpremote snippet and boot.py/main.py run in the
    MicroPython unix port with a bounded heap (`-X heapsize`, default 256K: the unix
    port is 64-bit, so objects take up to twice the bytes they take on a 32-bit ESP32,
    and the agent plus the fake `machine` hold ~18 KB that a board keeps in flash; the
    node application did not boot in 144K here, it does in 200K) and the board's
    globals kept between raw-REPL commands;
  - the filesystem: the node directory is mounted as "/" inside the interpreter
    (os.mount(os.VfsPosix(dir), "/")), so absolute and relative paths, os.rename,
    hashlib, .mpy imports behave as on a board's flash and the files survive reboots
    (os.ilistdir gives no sizes there, so `mpremote fs ls` shows 0 bytes);
  - `machine.reset()` reboots: boot.py and main.py run and print on the console;
    `machine.lightsleep(ms)` pauses for ms, `machine.deepsleep(ms)` pauses, then reboots;
    reset_cause() says power on, hard or soft reset accordingly.

What is not:
  - no hardware: `machine` is a fake (by default tests/mpy_fakes/machine.py, mounted
    at "/.standin" and so also listed by os.listdir("/")); its reset() is replaced by
    the reboot above; pins, ADCs and UARTs do nothing real;
  - it identifies as what it is: sys.platform "linux", not esp32 or rp2, so `stationctl
    flash --board esp32` refuses it as a wrong board (use --board unix);
  - no flash wear, no littlefs power-cut semantics (files are host files), no USB
    re-enumeration on reset (the pty stays), no bootloader (`machine.bootloader()`
    does nothing useful); code that reads sys.stdin (input(), `mpremote mount`, the
    node's "press a key" escape) does not see the console: the agent's stdin carries
    the shim's commands;
  - Ctrl-C reaches code only while it runs, and Ctrl-C during boot.py also skips main.py
    (a board would go on to main.py; skipping it makes mpremote's Ctrl-C right after a
    reset reliable here, where the node's "press a key" escape cannot see the console);
    console output nobody reads is kept up to 64 KB, then the oldest is dropped.
"""
import argparse
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import tty
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the fake `machine`: tests/mpy_fakes in a checkout, tools/mpy_fakes once installed
DEFAULT_FAKES = next((d for d in (ROOT / "tests" / "mpy_fakes", ROOT / "tools" / "mpy_fakes")
                      if (d / "machine.py").exists()), ROOT / "tests" / "mpy_fakes")
MICROPYTHON = ROOT / ".venv" / "bin" / "micropython"

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
FRIENDLY_BANNER = (b"MicroPython (unix port) on stand-in board; tools/standin.py\r\n"
                   b"Type \"help()\" for more information.\r\n>>> ")
PASTE_WINDOW = 128
MAX_PENDING_OUT = 64 * 1024

FRIENDLY = "friendly"
RAW = "raw"
PASTE = "paste"

# The code the unix port runs: it mounts the node's directory as "/", then executes
# what the shim sends ("<kind> <length>\n<code>"), printing as the board's REPL does.
# It tells the shim B (busy), I (idle) and R (machine.reset) on a control pipe.
AGENT = r'''
import os, sys, time
import micropython
micropython.kbd_intr(3)
root, fakes, ctl_fd, start = sys.argv[-4], sys.argv[-3], int(sys.argv[-2]), sys.argv[-1]
ctl = open(ctl_fd, "wb")
os.umount("/")
os.mount(os.VfsPosix(root), "/")
sys.path[:] = ["", ".frozen", "/lib"]
if fakes:
    os.mount(os.VfsPosix(fakes), "/.standin")
    sys.path.append("/.standin")
os.chdir("/")
out = sys.stdout
g = {"__name__": "__main__"}

def tell(c):
    ctl.write(c)

def _reset():
    tell(b"R")
    sys.exit(0)

def _lightsleep(ms=0):
    time.sleep_ms(ms)

def _deepsleep(ms=0):
    time.sleep_ms(ms)
    _reset()

if fakes:
    try:
        import machine
        machine.reset = _reset
        machine.lightsleep = _lightsleep
        machine.deepsleep = _deepsleep
        cause = {"hard": "HARD_RESET", "raw": "SOFT_RESET", "friendly": "SOFT_RESET"}.get(start)
        if cause and hasattr(machine, "set_reset_cause"):
            machine.set_reset_cause(getattr(machine, cause))
        radio = os.getenv("STANDIN_RADIO")
        if radio:
            # the simulated module (tools/radiosim.py) on the radio UART's pty; its AUX
            # pin reads high (idle): the simulated module is never busy
            uid, aux, path = radio.split(":", 2)
            # "/" is the node's flash: the pty's directory is mounted beside it
            d, name = path.rsplit("/", 1)
            os.mount(os.VfsPosix(d), "/.radio")
            machine.attach(int(uid), "/.radio/" + name)
            aux = int(aux)
            _Pin = machine.Pin

            class _RadioBoardPin(_Pin):
                def __init__(self, id, *a, **k):
                    _Pin.__init__(self, id, *a, **k)
                    if id == aux:
                        self.source = lambda: 1
            machine.Pin = _RadioBoardPin
    except ImportError:
        pass

def run_file(name):
    try:
        os.stat(name)
    except OSError:
        return True
    try:
        f = open(name)
        src = f.read()
        f.close()
        exec(compile(src, name, "exec"), g)
    except KeyboardInterrupt as e:
        sys.print_exception(e, out)
        return False
    except Exception as e:
        sys.print_exception(e, out)
    return True

tell(b"B")
if run_file("boot.py") and start != "raw":
    run_file("main.py")
    out.write("MicroPython (unix port) on stand-in board; tools/standin.py\r\n"
              "Type \"help()\" for more information.\r\n>>> ")
else:
    out.write("raw REPL; CTRL-B to exit\r\n>")
tell(b"I")
inp = sys.stdin.buffer
while True:
    try:
        head = inp.readline()
    except KeyboardInterrupt:
        continue
    if not head:
        break
    kind, n = head.split()
    n = int(n)
    code = b""
    while len(code) < n:
        try:
            code += inp.read(n - len(code))
        except KeyboardInterrupt:
            pass
    err = None
    try:
        tell(b"B")
        exec(compile(code, "<stdin>", "single" if kind == b"line" else "exec"), g)
    except SystemExit:
        raise
    except BaseException as e:
        err = e
    try:
        if kind == b"line":
            if err is not None:
                sys.print_exception(err, out)
            out.write(">>> ")
        else:
            out.write("\x04")
            if err is not None:
                sys.print_exception(err, out)
            out.write("\x04>")
    except KeyboardInterrupt:
        pass
    tell(b"I")
'''


class Repl:
    """The board's REPL input side as a pure state machine (no I/O).

    feed(data) -> list of actions, each a tuple:
      ("out", bytes)            write to the console
      ("exec", code, kind)      run code; kind "raw" / "paste" (replies with 0x04 ...) or
                                "line" (friendly REPL: result printed, then ">>> ")
      ("soft_reboot", mode)     fresh interpreter, then the mode's banner
    Call only while the interpreter is idle: input that arrives while code runs waits,
    as it waits in a board's UART buffer.
    """

    def __init__(self, mode=FRIENDLY):
        self.mode = mode
        self.buf = bytearray()
        self.ctrl_e = 0          # bytes of the raw-paste request seen (0x05 "A" 0x01)
        self.pasted = 0

    def feed(self, data):
        acts = []
        for i in range(len(data)):
            c = data[i:i + 1]
            if self.mode == PASTE:
                self._paste(c, acts)
            elif self.mode == RAW:
                self._raw(c, acts)
            else:
                self._friendly(c, acts)
            if acts and acts[-1][0] in ("exec", "soft_reboot"):
                rest = data[i + 1:]
                if rest:
                    acts.append(("later", rest))   # handled after the interpreter is idle
                return acts
        return acts

    def _friendly(self, c, acts):
        if c == b"\x01":
            self.mode = RAW
            self.buf = bytearray()
            acts.append(("out", b"\r\n" + RAW_BANNER))
        elif c == b"\x02":
            acts.append(("out", b"\r\n" + FRIENDLY_BANNER))
        elif c == b"\x03":
            self.buf = bytearray()
            acts.append(("out", b"\r\n>>> "))
        elif c == b"\x04":
            if self.buf:
                return
            acts.append(("out", b"\r\n"))
            acts.append(("soft_reboot", FRIENDLY))
        elif c in (b"\r", b"\n"):
            line = bytes(self.buf)
            self.buf = bytearray()
            acts.append(("out", b"\r\n"))
            if line.strip():
                acts.append(("exec", line, "line"))
            else:
                acts.append(("out", b">>> "))
        elif c in (b"\x08", b"\x7f"):
            if self.buf:
                self.buf.pop()
                acts.append(("out", b"\x08 \x08"))
        else:
            self.buf += c
            acts.append(("out", c))

    def _raw(self, c, acts):
        if self.ctrl_e:
            want = b"A\x01"[self.ctrl_e - 1:self.ctrl_e]
            if c == want:
                self.ctrl_e += 1
                if self.ctrl_e == 3:
                    self.ctrl_e = 0
                    self.mode = PASTE
                    self.buf = bytearray()
                    self.pasted = 0
                    acts.append(("out", b"R\x01" + PASTE_WINDOW.to_bytes(2, "little")))
                return
            self.ctrl_e = 0
        if c == b"\x05":
            self.ctrl_e = 1
        elif c == b"\x01":
            self.buf = bytearray()
            acts.append(("out", b"\r\n" + RAW_BANNER))
        elif c == b"\x02":
            self.mode = FRIENDLY
            self.buf = bytearray()
            acts.append(("out", b"\r\n" + FRIENDLY_BANNER))
        elif c == b"\x03":
            self.buf = bytearray()
        elif c == b"\x04":
            if not self.buf:
                acts.append(("soft_reboot", RAW))
            else:
                code = bytes(self.buf)
                self.buf = bytearray()
                acts.append(("out", b"OK"))
                acts.append(("exec", code, "raw"))
        else:
            self.buf += c

    def _paste(self, c, acts):
        if c == b"\x04":
            self.mode = RAW
            code = bytes(self.buf)
            self.buf = bytearray()
            acts.append(("out", b"\x04"))
            acts.append(("exec", code, "paste"))
            return
        self.buf += c
        self.pasted += 1
        if self.pasted % PASTE_WINDOW == 0:
            acts.append(("out", b"\x01"))


class StandIn:
    """The shell: the pty, the agent process, the console buffer."""

    def __init__(self, fs_dir, heap="256K", fakes=DEFAULT_FAKES, micropython=None,
                 radio_board=None):
        """radio_board: a board file name (firmware/variants/) whose "lora" UART gets a
        simulated E22 module (tools/radiosim.py); its air is a second pty, `radio_port`,
        for a gateway with `[radio] module = "none"`."""
        self.fs_dir = str(Path(fs_dir).resolve())
        Path(self.fs_dir).mkdir(parents=True, exist_ok=True)
        self.heap = heap
        beside = Path(sys.executable).parent / "micropython"    # an installed venv
        self.exe = str(micropython or next((p for p in (MICROPYTHON, beside) if p.exists()),
                                           "micropython"))
        # The agent and the fake machine are compiled to .mpy first: on a board neither
        # the REPL firmware nor `machine` costs heap, so their source must not either.
        self.cache = tempfile.mkdtemp(prefix="standin-")
        agent_py = Path(self.cache) / "standin_agent.py"
        agent_py.write_text(AGENT)
        _mpy_cross(agent_py, Path(self.cache) / "standin_agent.mpy")
        self.fakes = ""
        if fakes and Path(fakes).is_dir():
            self.fakes = os.path.join(self.cache, "fakes")
            for src in Path(fakes).glob("*.py"):
                _mpy_cross(src, Path(self.fakes) / (src.stem + ".mpy"))
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)     # no echo or line editing on the board's side of the pty
        os.set_blocking(self.master, False)
        self.port = os.ttyname(self.slave)
        self.repl = Repl(FRIENDLY)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.master, selectors.EVENT_READ, "console")
        self.agent = None
        self.busy = True
        self.pending_in = bytearray()
        self.pending_out = bytearray()
        self.interrupt_wanted = False
        self.running = True
        self.radio = None
        self.radio_env = {}
        if radio_board:
            self._open_radio(radio_board)

    # --- the simulated radio ---------------------------------------------------------
    def _open_radio(self, board_name):
        import json

        from tools.radiosim import E22Sim
        variant = ROOT / "firmware" / "variants" / (board_name + ".json")
        lora = json.loads(variant.read_text())["uarts"]["lora"]
        self.radio = E22Sim()
        self.node_master, self.node_slave = os.openpty()   # the node's UART <-> the module
        self.air_master, self.air_slave = os.openpty()     # the module's air <-> the gateway
        for fd in (self.node_slave, self.air_slave):
            tty.setraw(fd)
        for fd in (self.node_master, self.air_master):
            os.set_blocking(fd, False)
        self.radio_port = os.ttyname(self.air_slave)
        self.radio_env = {"STANDIN_RADIO": "%d:%d:%s" % (lora["id"], lora["aux"],
                                                         os.ttyname(self.node_slave))}
        self.sel.register(self.node_master, selectors.EVENT_READ, "radio-node")
        self.sel.register(self.air_master, selectors.EVENT_READ, "radio-air")

    def _radio_io(self, what):
        src = self.node_master if what == "radio-node" else self.air_master
        try:
            data = os.read(src, 4096)
        except (BlockingIOError, OSError):
            return
        if what == "radio-node":
            reply, payload = self.radio.from_node(data)
            out = ((self.node_master, reply), (self.air_master, payload))
        else:
            out = ((self.node_master, self.radio.to_node(data)),)
        for fd, chunk in out:
            if chunk:
                try:
                    os.write(fd, chunk)
                except (BlockingIOError, OSError):
                    pass               # nobody listening (gateway not started): lost on air

    # --- agent ---------------------------------------------------------------------
    def _start_agent(self, start):
        self._stop_agent()
        r, w = os.pipe()
        os.set_blocking(r, False)
        self.agent = subprocess.Popen(
            [self.exe, "-X", "heapsize=%s" % self.heap, "-m", "standin_agent", self.fs_dir,
             self.fakes, str(w), start],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            pass_fds=(w,), cwd=self.fs_dir,
            env=dict(os.environ, MICROPYPATH=self.cache, **self.radio_env))
        os.close(w)
        self.ctl = r
        os.set_blocking(self.agent.stdout.fileno(), False)
        self.sel.register(self.agent.stdout, selectors.EVENT_READ, "agent")
        self.sel.register(r, selectors.EVENT_READ, "ctl")
        self.busy = True
        # Ctrl-C waits for the agent's first B: a SIGINT before MicroPython has set up its
        # handler would be lost (the host process takes it), and the program keeps running
        self.agent_state = b"S"

    def _stop_agent(self):
        a = self.agent
        if a is None:
            return
        self._drain_agent_output()
        for obj in (a.stdout, self.ctl):
            try:
                self.sel.unregister(obj)
            except (KeyError, ValueError):
                pass
        if a.poll() is None:
            a.kill()
        a.wait()
        a.stdout.close()
        try:
            a.stdin.close()
        except OSError:
            pass
        os.close(self.ctl)
        self.agent = None

    def _drain_agent_output(self):
        try:
            while True:
                data = os.read(self.agent.stdout.fileno(), 65536)
                if not data:
                    return
                self._console(data)
        except (BlockingIOError, OSError):
            return

    # --- console -------------------------------------------------------------------
    def _console(self, data):
        self.pending_out += data
        if len(self.pending_out) > MAX_PENDING_OUT:
            del self.pending_out[:len(self.pending_out) - MAX_PENDING_OUT]
        self._flush_out()

    def _flush_out(self):
        while self.pending_out:
            try:
                n = os.write(self.master, self.pending_out)
            except BlockingIOError:
                break
            except OSError:
                break
            del self.pending_out[:n]
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.pending_out else 0)
        self.sel.modify(self.master, events, "console")

    def _send(self, kind, code):
        self.busy = True
        self.agent_state = b"S"        # sent, not yet running
        try:
            self.agent.stdin.write(b"%s %d\n" % (kind.encode(), len(code)) + code)
            self.agent.stdin.flush()
        except OSError:
            pass

    def _handle(self, acts):
        for act in acts:
            if act[0] == "out":
                self._console(act[1])
            elif act[0] == "exec":
                self._send(act[2], act[1])
            elif act[0] == "soft_reboot":
                self._console(b"MPY: soft reboot\r\n")
                self._start_agent("raw" if act[1] == RAW else "friendly")
            elif act[0] == "later":
                self.pending_in[:0] = act[1]

    def _input(self, data):
        for b in data:
            if b == 3 and self.busy:
                self.interrupt_wanted = True
                self.pending_in = bytearray()
            else:
                self.pending_in.append(b)
        self._process()

    def _process(self):
        if self.interrupt_wanted and self.agent_state == b"B" and self.agent is not None:
            self.interrupt_wanted = False
            try:
                self.agent.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass
        while not self.busy and self.pending_in:
            data = bytes(self.pending_in)
            self.pending_in = bytearray()
            self._handle(self.repl.feed(data))

    def _control(self, data):
        for b in data:
            c = bytes([b])
            if c == b"R":
                self._drain_agent_output()
                self.repl = Repl(FRIENDLY)
                self.pending_in = bytearray()
                self.interrupt_wanted = False
                self._start_agent("hard")
                return
            self.agent_state = c
            self.busy = c != b"I"
            if not self.busy:
                self.interrupt_wanted = False
        self._process()

    # --- loop ------------------------------------------------------------------------
    def serve(self):
        self._start_agent("poweron")    # boot.py, main.py, friendly REPL
        while self.running:
            for key, ev in self.sel.select(timeout=0.5):
                what = key.data
                if what == "console":
                    if ev & selectors.EVENT_WRITE:
                        self._flush_out()
                    if ev & selectors.EVENT_READ:
                        try:
                            data = os.read(self.master, 4096)
                        except (BlockingIOError, OSError):
                            data = b""
                        if data:
                            self._input(data)
                elif what == "agent":
                    try:
                        data = os.read(self.agent.stdout.fileno(), 65536)
                    except BlockingIOError:
                        continue
                    if data:
                        self._console(data)
                        continue
                    try:
                        ctl = os.read(self.ctl, 64)
                    except (BlockingIOError, OSError):
                        ctl = b""
                    if ctl:
                        self._control(ctl)
                    else:
                        self._agent_ended()
                    break
                elif what in ("radio-node", "radio-air"):
                    self._radio_io(what)
                elif what == "ctl":
                    try:
                        data = os.read(self.ctl, 64)
                    except BlockingIOError:
                        continue
                    self._drain_agent_output()
                    if data:
                        self._control(data)
                        break             # the agent may have been replaced

    def _agent_ended(self):
        """The interpreter exited by itself (sys.exit, a crash): reboot, as a board would."""
        code = self.agent.wait()
        self._console(b"\r\nstand-in: interpreter exited with status %d; soft reboot\r\n" % code)
        self.repl = Repl(self.repl.mode if self.repl.mode != PASTE else RAW)
        self._console(b"MPY: soft reboot\r\n")
        self._start_agent("raw" if self.repl.mode == RAW else "friendly")

    def close(self):
        self.running = False
        self._stop_agent()
        os.close(self.master)
        os.close(self.slave)
        if self.radio is not None:
            for fd in (self.node_master, self.node_slave, self.air_master, self.air_slave):
                os.close(fd)
        shutil.rmtree(self.cache, ignore_errors=True)


def _mpy_cross(src, dest):
    from tools.flash import _tool
    dest.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([_tool("mpy-cross"), "-o", str(dest), str(src)],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError("mpy-cross refuses %s: %s" % (src, r.stderr.strip()))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tools.standin", description=__doc__.split("\n")[0])
    add_args(p)
    return run(p.parse_args(argv))


def add_args(p):
    p.add_argument("--fs", required=True, help="directory that is the board's flash filesystem")
    p.add_argument("--heap", default="256K", help="MicroPython heap (see the module docstring)")
    p.add_argument("--machine", default=str(DEFAULT_FAKES),
                   help="directory with a fake machine.py (default: the tests' fake)")
    p.add_argument("--link", help="also make this path a symlink to the pty (a stable name)")
    p.add_argument("--radio", action="store_true",
                   help="give the board a simulated E22 LoRa module; its air is a second pty "
                        "for a gateway's [radio] port (module = \"none\")")
    p.add_argument("--board", default="esp32_devkitc",
                   help="board file whose lora UART gets the module (default %(default)s, "
                        "what provision picks for the stand-in)")


def run(a):
    """`stationctl standin` and `python -m tools.standin`."""
    board = StandIn(a.fs, a.heap, a.machine, radio_board=a.board if a.radio else None)
    if a.link:
        try:
            os.unlink(a.link)
        except FileNotFoundError:
            pass
        os.symlink(board.port, a.link)
    print("standin: board on %s (filesystem %s)" % (a.link or board.port, board.fs_dir), flush=True)
    if board.radio is not None:
        print("standin: radio on %s: in site.toml set [radio] port = \"%s\" and module = "
              "\"none\", and list the node in [[nodes]]" % (board.radio_port, board.radio_port),
              flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        board.serve()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        board.close()
        if a.link:
            try:
                os.unlink(a.link)
            except FileNotFoundError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
