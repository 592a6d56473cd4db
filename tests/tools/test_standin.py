"""The stand-in board: real mpremote (its CLI, as a technician types it) against the pty,
code run by the real MicroPython unix port, files in the board's directory."""
import hashlib
import subprocess
import time
from pathlib import Path

import serial

from tools.standin import FRIENDLY, PASTE_WINDOW, RAW, RAW_BANNER, Repl

ROOT = Path(__file__).resolve().parents[2]
MPREMOTE = str(ROOT / ".venv" / "bin" / "mpremote")


def mpremote(port, *args, timeout=30):
    return subprocess.run([MPREMOTE, "connect", port, *args], capture_output=True, text=True,
                          timeout=timeout)


def read_console(port, seconds, until=None):
    with serial.Serial(port, 115200, timeout=0.2, exclusive=True) as s:
        buf = b""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            buf += s.read(4096)
            if until and until in buf:
                break
        return buf


def test_mpremote_cp_exec_sha256_and_files_land_in_the_board_dir(standin, tmp_path):
    src = tmp_path / "hello.py"
    src.write_bytes(b"X = 41 + 1\n")
    r = mpremote(standin.port, "fs", "cp", str(src), ":lib_hello.py", "+", "exec",
                 "import os; os.rename('lib_hello.py', 'hello.py'); import hello; "
                 "print('X is', hello.X, os.getcwd())", "+", "fs", "sha256sum", ":hello.py")
    assert r.returncode == 0, r.stderr
    assert "X is 42 /" in r.stdout
    assert hashlib.sha256(src.read_bytes()).hexdigest() in r.stdout
    assert (standin.fs / "hello.py").read_bytes() == src.read_bytes()
    assert not (standin.fs / "lib_hello.py").exists()


def test_errors_come_back_as_on_a_board(standin):
    r = mpremote(standin.port, "exec", "open('/nope.txt')")
    assert r.returncode == 1 and "OSError" in r.stdout + r.stderr
    r = mpremote(standin.port, "fs", "cat", ":nope.txt")
    assert r.returncode == 1 and "No such file" in r.stdout + r.stderr


def test_globals_survive_between_commands_but_not_a_soft_reset(standin):
    r = mpremote(standin.port, "exec", "y = 5", "+", "exec", "print('y', y)")
    assert "y 5" in r.stdout, r.stderr
    r = mpremote(standin.port, "exec", "z = 1", "+", "soft-reset", "+", "exec",
                 "print('z' in globals())")
    assert r.stdout.strip().endswith("False"), r.stdout


def test_reset_runs_main_and_ctrl_c_interrupts_it(standin):
    (standin.fs / "main.py").write_text(
        "import time\nprint('main running')\nwhile True:\n    time.sleep_ms(50)\n")
    r = mpremote(standin.port, "reset")
    assert r.returncode == 0, r.stderr
    assert b"main running" in read_console(standin.port, 10, b"main running")
    # mpremote's Ctrl-C stops main.py (KeyboardInterrupt), then the raw REPL answers
    r = mpremote(standin.port, "exec", "print('after', 6 * 7)")
    assert r.returncode == 0 and "after 42" in r.stdout, r.stderr


def test_heap_is_bounded(standin):
    r = mpremote(standin.port, "exec", "b = bytearray(400 * 1024)")
    assert r.returncode == 1 and "MemoryError" in r.stdout + r.stderr


# --- the REPL state machine on its own ----------------------------------------------------

def outs(acts):
    return b"".join(a[1] for a in acts if a[0] == "out")


def test_repl_raw_exec_and_soft_reboot():
    r = Repl(FRIENDLY)
    assert outs(r.feed(b"\x01")).endswith(RAW_BANNER) and r.mode == RAW
    acts = r.feed(b"print(1)\x04")
    assert acts == [("out", b"OK"), ("exec", b"print(1)", "raw")]
    assert r.feed(b"\x04") == [("soft_reboot", RAW)]
    acts = r.feed(b"\x02")
    assert r.mode == FRIENDLY and b">>> " in outs(acts)


def test_repl_raw_paste_flow_control():
    r = Repl(RAW)
    assert r.feed(b"\x05A\x01") == [("out", b"R\x01" + PASTE_WINDOW.to_bytes(2, "little"))]
    code = b"x" * (PASTE_WINDOW * 2 + 5)
    acts = r.feed(code)
    assert outs(acts) == b"\x01\x01"               # one per window consumed
    acts = r.feed(b"\x04")
    assert acts == [("out", b"\x04"), ("exec", code, "paste")] and r.mode == RAW


def test_repl_input_after_exec_waits_for_the_interpreter():
    r = Repl(RAW)
    acts = r.feed(b"a=1\x04b=2\x04")
    assert acts[-1] == ("later", b"b=2\x04")
    assert acts[1] == ("exec", b"a=1", "raw")


def test_repl_friendly_line_echo_and_backspace():
    r = Repl(FRIENDLY)
    acts = r.feed(b"1+x\x08\x08")
    assert outs(acts) == b"1+x\x08 \x08\x08 \x08"
    acts = r.feed(b"2\r")
    assert acts[-1] == ("exec", b"12", "line")
