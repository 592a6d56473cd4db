"""A session with a MicroPython board over its USB serial console, on mpremote's own
transport (mpremote.transport_serial.SerialTransport): open the port with clear errors,
identify the chip, write files atomically and verify them by SHA-256 read back,
reset, and read the console.

    with BoardLink.open("/dev/ttyUSB0") as b:
        b.identify()                        # ("esp32", "Generic ESP32 module with ESP32")
        b.put("config.json", data)          # to config.json.tmp, rename, hash check
        b.reset(); b.wait_for(rb"node 17 boot", 30)
"""
import contextlib
import errno
import hashlib
import io
import os
import re
import time

import serial

from tools.errors import (
    BOARD_ERROR,
    NO_ANSWER,
    NO_SUCH_PORT,
    PORT_BUSY,
    VERIFY_FAILED,
    WRONG_BOARD,
    ToolError,
)

# sys.platform and a word of sys.implementation._machine, per --board
CHIPS = {
    "esp32": ("esp32", "ESP32"),
    "esp32s3": ("esp32", "ESP32S3"),
    "esp32c3": ("esp32", "ESP32C3"),
    "rp2040": ("rp2", "RP2040"),
    "unix": ("linux", ""),
}
STANDIN_PLATFORM = "linux"


def check_port(port):
    """Fail early, in words, when the port is missing or held by another program."""
    if not os.path.exists(port):
        hint = _ports_hint()
        raise ToolError(NO_SUCH_PORT, "no such port %s: is the board plugged in (try another "
                        "USB cable: some only charge)?%s" % (port, hint))
    try:
        s = serial.Serial(port, 115200, exclusive=True, timeout=0)
    except serial.SerialException as e:
        text = str(e)
        if "exclusively lock" in text or getattr(e, "errno", None) in (errno.EBUSY, errno.EAGAIN):
            raise ToolError(PORT_BUSY, "port %s is busy: another program holds it (a serial "
                            "monitor, mpremote, Thonny, the gateway?). Close it and retry"
                            % port) from None
        if getattr(e, "errno", None) == errno.EACCES or "Permission denied" in text:
            raise ToolError(PORT_BUSY, "no permission to open %s: add yourself to the "
                            "'dialout' group (sudo usermod -aG dialout $USER), log in again"
                            % port) from None
        if getattr(e, "errno", None) == errno.ENOENT:
            raise ToolError(NO_SUCH_PORT, "no such port %s%s" % (port, _ports_hint())) from None
        raise ToolError(NO_SUCH_PORT, "cannot open %s: %s" % (port, text)) from None
    s.close()


def _ports_hint():
    try:
        from serial.tools import list_ports
        ports = sorted(p.device for p in list_ports.comports())
    except Exception:
        ports = []
    return (" Ports here: %s" % ", ".join(ports)) if ports else " No serial ports found."


def check_chip(board, platform, machine, port):
    """WRONG_BOARD unless the running MicroPython is for `board`. The stand-in (unix
    port) is accepted only as board 'unix'."""
    want_platform, want_word = CHIPS[board]
    m = machine.upper().replace("-", "")
    if platform == STANDIN_PLATFORM and board != "unix":
        raise ToolError(WRONG_BOARD, "wrong board: %s is the MicroPython unix port (the "
                        "stand-in board), not a %s: use --board unix for the stand-in, or the "
                        "port of the real board" % (port, board))
    ok = platform == want_platform and want_word in m
    if board == "esp32" and ("ESP32S" in m or "ESP32C" in m):
        ok = False
    if not ok:
        raise ToolError(WRONG_BOARD, "wrong board: %s runs MicroPython for %r (%s), not %s: "
                        "check --board and that this is the board you mean"
                        % (port, platform, machine, board))


READ_TIMEOUT_S = 30.0


class BoardLink:
    def __init__(self, port, transport):
        self.port = port
        self.t = transport

    @classmethod
    def open(cls, port, enter_repl=True):
        check_port(port)
        from mpremote.transport import TransportError
        from mpremote.transport_serial import SerialTransport
        try:
            # a read timeout, so that mpremote's own timeouts also work on a pty. Long:
            # mpremote gives up raw-paste mode for good when the 2-byte answer to its probe
            # is later than this, and then misreads that late answer as a failed exec
            # ("could not exec command (response: b'R\x01')": seen with the stand-in
            # board on a loaded 2-core CI box, at 1 s and again at 5 s). A board answers in
            # milliseconds and pyserial returns as soon as the bytes are there; this only
            # sets how long a dead link takes to report.
            t = SerialTransport(port, baudrate=115200, timeout=READ_TIMEOUT_S)
        except TransportError as e:
            raise ToolError(PORT_BUSY, "cannot open %s: %s" % (port, e)) from None
        link = cls(port, t)
        if enter_repl:
            link.enter()
        return link

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            if self.t.in_raw_repl:
                self.t.exit_raw_repl()
        except OSError:
            pass
        try:
            self.t.close()
        except OSError:
            pass

    def enter(self):
        """Stop whatever runs (Ctrl-C), raw REPL, soft reset: the node app is stopped."""
        from mpremote.transport import TransportError
        quiet = io.StringIO()     # mpremote prints what it got when this fails
        try:
            with contextlib.redirect_stdout(quiet):
                try:
                    self.t.enter_raw_repl(soft_reset=True, timeout_overall=READ_TIMEOUT_S)
                except TransportError:
                    # a Ctrl-C that landed in boot.py lets main.py start: interrupt that too
                    self.t.enter_raw_repl(soft_reset=True, timeout_overall=READ_TIMEOUT_S)
        except TransportError:
            raise ToolError(NO_ANSWER, "the board on %s does not answer at the MicroPython "
                            "REPL: is MicroPython on it (stationctl flash)? If it is in its "
                            "bootloader or stuck, press its reset button and retry"
                            % self.port) from None

    # --- code ---------------------------------------------------------------------------
    # importing the node's config checks takes seconds on a slow board (mpremote waits 10 s;
    # an emulated Pico on a busy machine took longer)
    EXEC_TIMEOUT_S = max(60, READ_TIMEOUT_S)

    def exec(self, code):
        from mpremote.transport import TransportError
        try:
            # the wait between two characters of the answer: mpremote's default (10 s)
            # is shorter than a busy CI box can stall a stand-in or an emulated board
            out, err = self.t.exec_raw(code, timeout=self.EXEC_TIMEOUT_S)
        except TransportError as e:
            raise ToolError(NO_ANSWER, "the board on %s stopped answering: %s"
                            % (self.port, e)) from None
        if err:
            raise ToolError(BOARD_ERROR, "on the board: %s" % err.decode(errors="replace").strip())
        return out

    def eval(self, expr):
        import ast
        return ast.literal_eval(self.exec("print(repr(%s))" % expr).decode().strip())

    def identify(self):
        """(sys.platform, sys.implementation._machine) of the running MicroPython."""
        return tuple(self.eval("(__import__('sys').platform, "
                               "getattr(__import__('sys').implementation, '_machine', ''))"))

    # --- files ----------------------------------------------------------------------------
    def mkdirs(self, path):
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            self.exec("import os\ntry:\n os.mkdir(%r)\nexcept OSError:\n pass" % d)

    def exists(self, path):
        out = self.exec("import os\ntry:\n os.stat(%r)\n print(1)\nexcept OSError:\n print(0)"
                        % path)
        return out.strip() == b"1"

    def read(self, path):
        """File bytes, or None if there is no such file."""
        try:
            return self.t.fs_readfile(path)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return None
            raise ToolError(BOARD_ERROR, "reading %s on the board: %s" % (path, e)) from None

    def sha256_or_none(self, path):
        """The file's SHA-256, or None if there is no such file."""
        out = self.exec("import hashlib, binascii\ntry:\n f = open(%r, 'rb')\nexcept OSError:"
                        "\n print('-')\nelse:\n h = hashlib.sha256()\n while True:\n  b = "
                        "f.read(512)\n  if not b:\n   break\n  h.update(b)\n f.close()\n "
                        "print(binascii.hexlify(h.digest()).decode())" % path).strip()
        return None if out == b"-" else bytes.fromhex(out.decode())

    def sha256(self, path):
        try:
            return self.t.fs_hashfile(path, "sha256")
        except OSError as e:
            raise ToolError(VERIFY_FAILED, "%s is not on the board after writing it (%s)"
                            % (path, e)) from None

    def put(self, path, data, progress=None):
        """Write to <path>.tmp, verify it, rename over <path>, verify again. A broken copy
        (cable pulled, full flash) never replaces a good file."""
        want = hashlib.sha256(data).digest()
        tmp = path + ".tmp"
        self.mkdirs(path)
        cb = (lambda done, total: progress(done)) if progress else None
        try:
            self.t.fs_writefile(tmp, data, progress_callback=cb)
        except OSError as e:
            raise ToolError(VERIFY_FAILED, "writing %s on the board failed: %s (flash full? "
                            "check `mpremote df`)" % (tmp, e)) from None
        if self.sha256(tmp) != want:
            raise ToolError(VERIFY_FAILED, "%s: the copy on the board differs from the file "
                            "sent (SHA-256): the old %s is kept; check the cable and retry"
                            % (tmp, path))
        # littlefs renames over an existing file; FAT refuses, so remove first there
        self.exec("import os\ntry:\n os.rename(%r, %r)\nexcept OSError:\n os.remove(%r)\n"
                  " os.rename(%r, %r)" % (tmp, path, path, tmp, path))
        got = self.sha256(path)
        if got != want:
            raise ToolError(VERIFY_FAILED, "%s on the board has SHA-256 %s, expected %s: "
                            "flash again" % (path, got.hex()[:16], want.hex()[:16]))
        return want

    def abandon(self, tmp):
        """After Ctrl-C anywhere in put(): interrupt what runs on the board (a write may be
        half way), enter the raw REPL afresh and remove `tmp` if it is there. True if the
        board answered."""
        import time
        try:
            ser = self.t.serial
            ser.write(b"\r\x03\x03")
            time.sleep(0.2)
            ser.reset_input_buffer()
            self.t.in_raw_repl = False
            self.t.enter_raw_repl(soft_reset=False)
            self.t.exec("import os\ntry:\n os.remove(%r)\nexcept OSError:\n pass" % tmp)
            return True
        except Exception:
            return False

    # --- console ----------------------------------------------------------------------------
    def reset(self):
        """Hard reset; afterwards the console shows the boot (read it with wait_for)."""
        try:
            self.t.exec_raw_no_follow("import machine\nmachine.reset()")
        except Exception:   # the port may vanish at once (native USB): that is a reset too
            pass
        self.t.in_raw_repl = False

    def wait_for(self, patterns, timeout, echo=None):
        """Read the console until one of the compiled regexes matches a line; returns
        (index, match, text so far). Native-USB boards drop off the bus while they
        reset: the port is reopened when it comes back."""
        try:
            return self._wait_for(patterns, timeout, echo)
        finally:
            # the short poll below must not stay: mpremote's raw-paste probe would read
            # with it and misread a late answer (see open())
            self.t.serial.timeout = READ_TIMEOUT_S

    def _wait_for(self, patterns, timeout, echo):
        buf = b""
        end = time.monotonic() + timeout
        ser = self.t.serial
        while time.monotonic() < end:
            try:
                ser.timeout = 0.2
                data = ser.read(512)
            except (serial.SerialException, OSError):
                data = b""
                ser = self._reopen(end)
                if ser is None:
                    break
                continue
            if not data:
                continue
            buf += data
            if echo:
                echo(data)
            for line in re.split(rb"\r?\n", buf):
                for i, p in enumerate(patterns):
                    m = p.search(line)
                    if m:
                        return i, m, buf
        return None, None, buf

    def _reopen(self, end):
        try:
            self.t.serial.close()
        except OSError:
            pass
        while time.monotonic() < end:
            time.sleep(0.3)
            if not os.path.exists(self.port):
                continue
            try:
                self.t.serial.open()
                return self.t.serial
            except (serial.SerialException, OSError):
                continue
        return None
