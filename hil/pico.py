"""An emulated Raspberry Pi Pico on this machine, as a bench board looks to its tools.

    with EmulatedPico() as pico:          # boots the pinned stock MicroPython image
        pico.usb_port                      # a pty: mpremote, stationctl flash/provision/monitor
        pico.uart_port                     # a pty: UART0, the LoRa module's side of the wires
        pico.adc(0, mv=1650)               # GP26 at 1.65 V
        pico.pin(10, 0)                    # drive GP10 low (None: release it to its pull)
        pico.cut(); pico.power_on()        # power cut at a random instruction, cold boot

The chip is rp2040js under Node (tools/rp2/emu/pico.mjs, the emulator gaps it closes are
described there); this module owns the ptys and bridges them to the Node process over
its stdin/stdout, since Node has no pty of its own. Flash lives in the Node process and
survives watchdog resets, machine.reset() and power cuts; `save()` writes it to a file
and `flash=` loads one. The image and boot ROM are the committed ones in
tools/rp2/images/ (RECORD.json holds their SHA-256)."""
import hashlib
import json
import os
import select
import shutil
import struct
import subprocess
import threading
import time
import tty
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RP2 = ROOT / "tools" / "rp2"
IMAGES = RP2 / "images"
EMU = RP2 / "emu"
CLK_HZ = 125_000_000


def images():
    return json.loads((IMAGES / "RECORD.json").read_text())


def image_path(kind="stock"):
    return IMAGES / images()["images"][kind]["file"]


def app_sources():
    """{path: SHA-256} of the frozen app's inputs: the .py files under firmware/ and
    protocol/ (what firmware/manifest.py freezes, the manifest included)."""
    out = {}
    for top in ("firmware", "protocol"):
        for p in sorted((ROOT / top).rglob("*.py")):
            if "__pycache__" not in p.parts:
                out[p.relative_to(ROOT).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def app_digest():
    """One SHA-256 over the frozen app's inputs, path and content of each in order."""
    h = hashlib.sha256()
    for rel in app_sources():
        h.update(rel.encode() + b"\0" + (ROOT / rel).read_bytes() + b"\0")
    return h.hexdigest()


REBUILD = "make rp2-frozen"


def frozen_stale():
    """Why the committed image with the app frozen no longer matches firmware/ and
    protocol/ in this tree (which files differ, and the command that rebuilds it), or
    None when it is current."""
    entry = images()["images"].get("station", {})
    if entry.get("app_digest") == app_digest():
        return None
    built = entry.get("app_sources")
    if built is None:
        which = "the record lists no files, so which ones changed is unknown"
    else:
        now = app_sources()
        diff = sorted(set(built) ^ set(now) | {k for k in built if k in now and built[k] != now[k]})
        which = "%d differ: %s%s" % (len(diff), ", ".join(diff[:6]),
                                     ", ..." if len(diff) > 6 else "")
    return ("the frozen image %s was built from other firmware/ and protocol/ sources than "
            "this tree's (%s); rebuild it with `%s` (tools/rp2/build.py, 5-8 min on 2 "
            "cores) and commit tools/rp2/images/" % (entry.get("file", "(none)"), which, REBUILD))


def unavailable():
    """Why the emulated Pico cannot run here, or None."""
    if not shutil.which("node"):
        return "Node.js is not installed (the emulated Pico runs rp2040js under Node): run `make setup`"
    if not (EMU / "node_modules" / "rp2040js" / "package.json").exists():
        return "rp2040js is not installed in tools/rp2/emu: run `make setup`"
    return None


def _raw_pty():
    m, s = os.openpty()
    tty.setraw(m)
    tty.setraw(s)
    os.set_blocking(m, False)
    return m, s


class EmulatedPico:
    def __init__(self, image="stock", flash=None, speed=1.0, log=None):
        self.image = image_path(image) if image in ("stock", "station") else Path(image)
        self.flash = flash
        self.speed = speed
        self.log = log                      # callable(str) for emulator log lines
        self.events = []
        self.cond = threading.Condition()
        self.uart_tx = bytearray()          # everything UART0 sent (also on the pty)
        self.usb_out = bytearray()
        self.proc = None
        self._id = 0
        self.on_uart = None                 # callable(bytes): UART0 TX, besides the pty
        self.dropped = 0                    # bytes no one read off a pty

    # -- life ------------------------------------------------------------------------
    def start(self):
        why = unavailable()
        if why:
            raise RuntimeError(why)
        self._usb_m, self._usb_s = _raw_pty()
        self._uart_m, self._uart_s = _raw_pty()
        self.usb_port = os.ttyname(self._usb_s)
        self.uart_port = os.ttyname(self._uart_s)
        cmd = ["node", str(EMU / "pico.mjs"), "--image", str(self.image),
               "--bootrom", str(IMAGES / images()["bootrom"]["file"]), "--speed", str(self.speed)]
        if self.flash:
            cmd += ["--flash", str(self.flash)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     cwd=str(EMU))
        self._out = self.proc.stdout.fileno()
        os.set_blocking(self._out, False)
        self._wlock = threading.Lock()
        self._stop = False
        self._t = threading.Thread(target=self._pump, daemon=True, name="pico-bridge")
        self._t.start()
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._stop = True
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self._t.join(timeout=3)
            self.proc.stdout.close()
            for fd in (self._usb_m, self._usb_s, self._uart_m, self._uart_s):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self.proc = None

    # -- the bridge --------------------------------------------------------------------
    def _send(self, kind, payload):
        with self._wlock:
            self.proc.stdin.write(kind + struct.pack("<I", len(payload)) + payload)
            self.proc.stdin.flush()

    def _pump(self):
        buf = b""
        fds = [self._out, self._usb_m, self._uart_m]
        while not self._stop:
            try:
                r, _, _ = select.select(fds, [], [], 0.1)
            except (OSError, ValueError):
                return
            for fd in r:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if fd == self._out:
                    if not data:
                        with self.cond:
                            self.events.append({"ev": "exit"})
                            self.cond.notify_all()
                        return
                    buf += data
                    while len(buf) >= 5:
                        n = struct.unpack_from("<I", buf, 1)[0]
                        if len(buf) < 5 + n:
                            break
                        kind, payload, buf = buf[:1], buf[5:5 + n], buf[5 + n:]
                        self._frame(kind, payload)
                elif data and fd == self._usb_m:
                    self._send(b"u", data)
                elif data and fd == self._uart_m:
                    self._send(b"a", data)

    def _write_all(self, fd, data):
        """Into a pty master; what does not fit while nobody reads the port is dropped (as
        a USB CDC or UART line with nothing listening), never blocking the emulator."""
        deadline = time.monotonic() + 0.2
        while data:
            try:
                n = os.write(fd, data)
                data = data[n:]
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.dropped += len(data)
                    return
                select.select([], [fd], [], 0.02)

    def _frame(self, kind, payload):
        if kind == b"u":
            self.usb_out += payload
            self._write_all(self._usb_m, payload)
        elif kind == b"a":
            self.uart_tx += payload
            self._write_all(self._uart_m, payload)
            if self.on_uart:
                self.on_uart(bytes(payload))
        elif kind == b"e":
            ev = json.loads(payload)
            if ev.get("ev") == "log" and self.log:
                self.log("%s: %s" % (ev.get("tag"), ev.get("msg")))
            with self.cond:
                self.events.append(ev)
                self.cond.notify_all()

    # -- commands ----------------------------------------------------------------------
    def command(self, op, timeout=60.0, **kw):
        self._id += 1
        cid = self._id
        self._send(b"c", json.dumps(dict(kw, op=op, id=cid)).encode())
        return self.wait_event(lambda e: e.get("ev") == "reply" and e.get("id") == cid, timeout)

    def wait_event(self, pred, timeout=60.0, start=0):
        """The first event from index `start` on that satisfies pred; TimeoutError if none."""
        deadline = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.events):
                    if pred(self.events[i]):
                        return self.events[i]
                    if self.events[i].get("ev") == "exit":
                        raise RuntimeError("the emulator exited (rc %s)" % self.proc.poll())
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no such event from the emulated Pico within %.0f s" % timeout)
                self.cond.wait(left)

    def mark(self):
        """An index into events: wait_event(..., start=mark) looks only at later ones."""
        with self.cond:
            return len(self.events)

    def pin(self, pin, value):
        """Drive a GPIO input from outside (0/1), or release it (None) to its pull."""
        return self.command("pin", pin=pin, value=value)

    def adc(self, ch, mv=None, code=None):
        """Set ADC input ch (0-3 = GP26-29) to mv millivolts (3.3 V reference) or a 12-bit code."""
        if mv is not None:
            return self.command("adc", ch=ch, mv=mv)["code"]
        return self.command("adc", ch=ch, value=code)["code"]

    def watch(self, *pins):
        """Report these pins' output level changes as {"ev": "pin"} events."""
        self.command("watch", pins=list(pins))

    def output(self, pin):
        """A pin's output level now (None while it is not an output)."""
        return self.command("read_pin", pin=pin)["value"]

    def cut(self, within=200_000, timeout=30.0):
        """Cut the power at a random instruction among the next `within`; flash stays."""
        m = self.mark()
        self.command("cut", within=within)
        return self.wait_event(lambda e: e.get("ev") == "off", timeout, start=m)

    def power_on(self):
        m = self.mark()
        self.command("power_on")
        return self.wait_event(lambda e: e.get("ev") == "boot", 10, start=m)

    def stats(self):
        return self.command("stats")

    def save(self, path):
        self.command("save", path=str(path))
