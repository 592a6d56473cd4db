"""`stationctl flash`: MicroPython image, then the node application, verified.

    stationctl flash --port /dev/ttyUSB0 --board esp32 --image ESP32_GENERIC-v1.26.bin
    stationctl flash --port /dev/ttyACM0 --board rp2040 --image RPI_PICO-v1.26.uf2
    stationctl flash --port /dev/ttyUSB0 --board esp32 --app-only      # update the app
    ... --dry-run                                                       # the plan, nothing done

1. The image. Its header is checked against --board before anything is written: an
   ESP32 image starts with magic 0xE9 and names its chip in the extended header (byte
   12: 0 ESP32, 9 ESP32-S3, 5 ESP32-C3); a UF2 is 512-byte blocks with the UF2 magic
   numbers and a family id (0xE48BFF56 for RP2040). ESP32 boards are written with
   esptool at the chip's bootloader offset (MicroPython's own instructions: 0x1000 on
   the ESP32, 0x0 on the ESP32-S3 and -C3); esptool resets the board into its ROM
   bootloader by itself. An RP2040 takes the UF2 copied onto its BOOTSEL drive (a
   mounted drive with INFO_UF2.TXT, "Board-ID: RPI-RP2"); if the board runs MicroPython
   it is asked to enter the bootloader (machine.bootloader()) first.
2. The application. protocol/ and firmware/ are compiled to .mpy with mpy-cross
   (the board then loads bytecode instead of compiling source in its small heap);
   boot.py goes to the root as source, main.py as a two-line stub that runs
   firmware/main.mpy (a board compiles main.py in its heap at every boot); the board
   files go to firmware/variants/. Each file is copied with mpremote's transport to NAME.tmp,
   checked by SHA-256 read back from the board, renamed over NAME, and checked again.
   The board's filesystem (config.json, the frame log) is left alone: `--erase` wipes
   it with the image (then provision the node again; unsent frames are lost).
"""
import hashlib
import os
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tools.errors import (
    INTERRUPTED,
    MISSING_TOOL,
    NO_ANSWER,
    NO_SUCH_PORT,
    NOT_IN_BOOTLOADER,
    WRONG_BOARD,
    WRONG_CHIP_IMAGE,
    ToolError,
)
from tools.progress import Progress

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"

# esptool chip name, bootloader offset, ESP image chip id
ESP_CHIPS = {"esp32": ("esp32", 0x1000, 0x0000),
             "esp32s3": ("esp32s3", 0x0, 0x0009),
             "esp32c3": ("esp32c3", 0x0, 0x0005)}
ESP_CHIP_NAMES = {0x0000: "ESP32", 0x0002: "ESP32-S2", 0x0005: "ESP32-C3", 0x0009: "ESP32-S3",
                  0x000C: "ESP32-C2", 0x000D: "ESP32-C6", 0x0010: "ESP32-H2", 0x0012: "ESP32-P4"}
ESP_IMAGE_MAGIC = 0xE9

UF2_MAGIC0 = 0x0A324655
UF2_MAGIC1 = 0x9E5D5157
UF2_MAGIC_END = 0x0AB16F30
UF2_FLAG_FAMILY = 0x00002000
UF2_FAMILIES = {0xE48BFF56: "RP2040", 0xE48BFF59: "RP2350 (ARM)", 0xE48BFF5A: "RP2350 (RISC-V)",
                0xE48BFF57: "RP2350 (absolute)", 0xE48BFF58: "RP2350 (data)",
                0xC47E5767: "ESP32-S3", 0xBFDD4EAE: "ESP32-S2", 0x68ED2B88: "SAMD21",
                0x55114460: "SAMD51"}
RP2040_FAMILY = 0xE48BFF56
BOOTSEL_BOARD_ID = "RPI-RP2"

# files that are not deployed: the build manifest, the mip package description
NOT_DEPLOYED = ("firmware/manifest.py",)
ROOT_SOURCES = {"firmware/boot.py": "boot.py"}
# The board runs main.py from source, compiling it in its heap: ~10 KB of source would
# cost tens of KB at boot. So firmware/main.py goes over as bytecode and main.py is
# this stub (the same entry point: firmware.main.main()).
MAIN_STUB = b"""# stationctl flash: the node application is firmware/main.mpy
from firmware import main
main.main()
"""


def _tool(name):
    # the checkout's .venv, then beside this Python (an installed, not activated venv)
    for exe in (VENV_BIN / name, Path(sys.executable).parent / name):
        if exe.exists():
            return str(exe)
    found = shutil.which(name)
    if not found:
        raise ToolError(MISSING_TOOL, "%s is not installed: run `make setup` (or "
                        "pip install -r requirements.txt)" % name)
    return found


# --- images ----------------------------------------------------------------------------

def check_esp_image(data, board, name="image"):
    if len(data) < 24 or data[0] != ESP_IMAGE_MAGIC:
        raise ToolError(WRONG_CHIP_IMAGE, "%s is not an ESP32 firmware image (no 0xE9 magic at "
                        "byte 0%s): download the .bin for %s from micropython.org"
                        % (name, ", it is a UF2 for an RP2040-style board" if data[:4] ==
                           struct.pack("<I", UF2_MAGIC0) else "", board))
    chip_id = struct.unpack_from("<H", data, 12)[0]
    want = ESP_CHIPS[board][2]
    if chip_id != want:
        raise ToolError(WRONG_CHIP_IMAGE, "%s is an image for %s, not %s (chip id %d in its "
                        "header): download the %s build from micropython.org"
                        % (name, ESP_CHIP_NAMES.get(chip_id, "chip id %d" % chip_id),
                           ESP_CHIP_NAMES[want], chip_id, ESP_CHIP_NAMES[want]))


def uf2_families(data):
    """Family ids of a UF2 file; ValueError if it is not UF2."""
    if len(data) < 512 or len(data) % 512:
        raise ValueError("size %d is not a multiple of 512-byte UF2 blocks" % len(data))
    fams = set()
    for off in range(0, len(data), 512):
        m0, m1, flags = struct.unpack_from("<III", data, off)
        fam = struct.unpack_from("<I", data, off + 28)[0]
        end = struct.unpack_from("<I", data, off + 508)[0]
        if m0 != UF2_MAGIC0 or m1 != UF2_MAGIC1 or end != UF2_MAGIC_END:
            raise ValueError("block %d has no UF2 magic numbers" % (off // 512))
        if flags & UF2_FLAG_FAMILY:
            fams.add(fam)
    return fams


def check_uf2_image(data, name="image"):
    try:
        fams = uf2_families(data)
    except ValueError as e:
        extra = " (it looks like an ESP32 .bin)" if data[:1] == bytes([ESP_IMAGE_MAGIC]) else ""
        raise ToolError(WRONG_CHIP_IMAGE, "%s is not a UF2 file%s: %s. Download the .uf2 for "
                        "the Raspberry Pi Pico (RPI_PICO) from micropython.org"
                        % (name, extra, e)) from None
    if fams != {RP2040_FAMILY}:
        names = ", ".join(UF2_FAMILIES.get(f, "0x%08X" % f) for f in sorted(fams)) or "none"
        raise ToolError(WRONG_CHIP_IMAGE, "%s is a UF2 for %s, not RP2040 (family 0x%08X): "
                        "download the RPI_PICO build from micropython.org"
                        % (name, names, RP2040_FAMILY))


def check_image(path, board):
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ToolError(WRONG_CHIP_IMAGE, "--image %s: cannot read it: %s" % (path, e.strerror)) from None
    if board in ESP_CHIPS:
        check_esp_image(data, board, path)
    elif board == "rp2040":
        check_uf2_image(data, path)
    return data


def esptool_command(port, board, image, baud=460800, erase=False):
    chip, offset, _ = ESP_CHIPS[board]
    base = [_tool("esptool"), "--chip", chip, "--port", port, "--baud", str(baud)]
    cmds = []
    if erase:
        cmds.append(base + ["erase-flash"])
    cmds.append(base + ["write-flash", "-z", "0x%x" % offset, str(image)])
    return cmds


def find_bootsel(explicit=None):
    """The mounted BOOTSEL drive: (path, board id) or (None, None)."""
    cands = [explicit] if explicit else []
    if not explicit:
        try:
            with open("/proc/mounts") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) > 1:
                        cands.append(parts[1].replace("\\040", " "))
        except OSError:
            pass
    for d in cands:
        info = Path(d) / "INFO_UF2.TXT"
        if info.is_file():
            board_id = None
            for line in info.read_text(errors="replace").splitlines():
                if line.startswith("Board-ID:"):
                    board_id = line.split(":", 1)[1].strip()
            return d, board_id
    return None, None


# --- the application --------------------------------------------------------------------

def app_files():
    """(source path relative to the repo, destination on the board, compile?) in order:
    protocol first, then firmware, then the board files, boot.py and main.py last so a
    board half-updated never runs a new main.py against old modules."""
    out = []
    for pkg in ("protocol", "firmware"):
        for src in sorted((ROOT / pkg).rglob("*.py")):
            rel = src.relative_to(ROOT).as_posix()
            if rel in NOT_DEPLOYED or rel in ROOT_SOURCES or "__pycache__" in rel:
                continue
            out.append((rel, rel[:-3] + ".mpy", True))
    for src in sorted((ROOT / "firmware" / "variants").glob("*.json")):
        rel = src.relative_to(ROOT).as_posix()
        out.append((rel, rel, False))
    for rel, dest in ROOT_SOURCES.items():
        if (ROOT / rel).exists():
            out.append((rel, dest, False))
    if (ROOT / "firmware" / "main.py").exists():
        out.append(("<stub>", "main.py", False))
    return out


# How the app is compiled for a board, here and wherever tests and benches measure what
# a board runs (tests/harness.py, bench/node.py). -O3 leaves out the line-number tables:
# tracebacks still name every function but read "line 1", and a stock-image node keeps
# ~3 KB more heap (its bytecode lives there). The frozen image (firmware/manifest.py,
# opt=3) is built the same way.
MPY_CROSS_OPTS = ("-O3",)


def mpy_source_name(rel):
    """The source name a module's .mpy carries (mpy-cross -s): its dotted module name,
    "firmware.app" for firmware/app.py. A traceback names the module all the same, and
    on a stock-image node that name is interned anyway when the module is imported, so
    the source name costs no qstr of its own (a path would: ~40 more names and ~700 B of
    the node's heap, docs/firmware-memory.md)."""
    parts = Path(rel).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def compile_app(build_dir):
    """[(dest, bytes, source)] with .mpy files compiled by mpy-cross."""
    mpy_cross = _tool("mpy-cross")
    out = []
    for rel, dest, compiled in app_files():
        if compiled:
            target = Path(build_dir) / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            r = subprocess.run([mpy_cross, *MPY_CROSS_OPTS, "-o", str(target), "-s", mpy_source_name(rel), rel], cwd=ROOT,
                               capture_output=True, text=True)
            if r.returncode:
                raise ToolError(MISSING_TOOL, "mpy-cross refuses %s: %s" % (rel, r.stderr.strip()))
            data = target.read_bytes()
        elif rel == "<stub>":
            data = MAIN_STUB
        else:
            data = (ROOT / rel).read_bytes()
        out.append((dest, data, rel))
    return out


def mpy_version(files):
    for dest, data, _ in files:
        if dest.endswith(".mpy") and len(data) > 2 and data[0] == ord("M"):
            return data[1]
    return None


def deploy(link, files, out=sys.stdout):
    """Copy every file (tmp, verify, rename, verify) with a progress bar. Returns
    [(dest, sha256 hex)].

    Ctrl-C finishes the file being copied first (at most a second or two), then stops:
    a transfer cut in the middle leaves a NAME.tmp behind and the board in the middle of
    a raw-REPL command, where it may not answer the next tool. A second Ctrl-C stops at
    once (the board is then interrupted and the .tmp removed if it answers)."""
    total = sum(len(d) for _, d, _ in files)
    bar = Progress("copying", total)
    done = 0
    result = []
    skipped = 0
    stop = []

    def finish_current_file(signum, frame):
        if stop:
            raise KeyboardInterrupt
        stop.append(True)
        print("\nstopping after this file (Ctrl-C again to stop at once)", file=sys.stderr)

    main_thread = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGINT, finish_current_file) if main_thread else None
    try:
        for dest, data, _ in files:
            if stop:
                break
            base = done
            want = hashlib.sha256(data).digest()
            try:
                if link.sha256_or_none(dest) == want:
                    skipped += 1                          # already there: a resumed flash
                else:
                    link.put(dest, data,
                             progress=lambda n, b=base, d=dest: bar.update(b + n, d))
            except KeyboardInterrupt:                     # the second Ctrl-C
                link.abandon(dest + ".tmp")
                stop.append(dest)
                break
            done += len(data)
            bar.update(done, dest)
            result.append((dest, want.hex()))
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, old)
        bar.finish()
    if stop:
        raise ToolError(INTERRUPTED, "interrupted on %s after %d of %d files (each copied "
                        "one verified%s). The node application is incomplete: run the same "
                        "command again to resume; files already on the board are skipped"
                        % (link.port, len(result), len(files),
                           "; %s.tmp removed" % stop[-1] if isinstance(stop[-1], str) else ""))
    print("%d files on the board, each checked by SHA-256 read back%s" % (
        len(result), " (%d were there already)" % skipped if skipped else ""), file=out)
    return result


# --- the command -----------------------------------------------------------------------------

def plan_text(args, files, image_data=None, cmds=None, bootsel=None):
    lines = ["plan: flash %s on %s" % (args.board, args.port)]
    step = 1
    if image_data is not None:
        lines.append("%d. MicroPython image %s (%d bytes, sha256 %s)" % (
            step, args.image, len(image_data), hashlib.sha256(image_data).hexdigest()))
        if cmds:
            for c in cmds:
                lines.append("   " + shlex.join(c))
        else:
            lines.append("   copy to the BOOTSEL drive %s/%s (wait for it to reboot)" % (
                bootsel or "<RPI-RP2 drive>", Path(args.image).name))
        step += 1
    mpy = _tool("mpy-cross")
    lines.append("%d. compile protocol/ and firmware/ with %s" % (step, mpy))
    lines.append("%d. copy %d files with mpremote's transport (to NAME.tmp, SHA-256 read back, "
                 "rename to NAME, SHA-256 read back):" % (step + 1, len(files)))
    for dest, data, src in files:
        lines.append("   %-40s %7d B  sha256 %s  (from %s)" % (
            dest, len(data), hashlib.sha256(data).hexdigest(), src))
    lines.append("   (by hand: mpremote connect %s fs cp FILE :NAME.tmp + exec "
                 "\"import os; os.rename('NAME.tmp', 'NAME')\" + fs sha256sum :NAME)" % args.port)
    lines.append("%d. reset the board" % (step + 2))
    return "\n".join(lines)


def _flash_esp(args, cmds):
    for c in cmds:
        print("$ " + shlex.join(c), file=sys.stderr)
        # esptool draws its own progress bar: pass it through live, keep a copy to
        # explain a failure
        p = subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        seen = bytearray()
        while True:
            chunk = os.read(p.stdout.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
            sys.stderr.buffer.write(chunk)
            sys.stderr.flush()
        code = p.wait()
        if code:
            raise esptool_failure(seen.decode(errors="replace"), args.port, code)


def esptool_failure(text, port, code):
    """The ToolError for esptool's output when it failed."""
    if "Wrong --chip" in text or "This chip is" in text:
        return ToolError(WRONG_BOARD, "wrong board: esptool says %s: check --board"
                         % _line_with(text, "This chip is"))
    if "Failed to connect" in text or "No serial data received" in text:
        return ToolError(NOT_IN_BOOTLOADER, "the board on %s did not enter its bootloader: "
                         "hold BOOT, press and release EN/RESET, release BOOT, then run the "
                         "same command again" % port)
    if "could not open port" in text or "No such file or directory" in text:
        return ToolError(NO_SUCH_PORT, "no such port %s: is the board plugged in?" % port)
    return ToolError(NO_ANSWER, "esptool failed (exit %d): see its output above" % code)


def _line_with(text, word):
    for line in text.splitlines():
        if word in line:
            return line.strip()
    return text.strip().splitlines()[-1] if text.strip() else "?"


def _flash_uf2(args, data):
    drive, board_id = find_bootsel(args.bootsel)
    if drive is None and os.path.exists(args.port):
        # MicroPython running: ask it to enter the bootloader, then look again
        from tools.boardlink import BoardLink
        with BoardLink.open(args.port) as link:
            link.t.exec_raw_no_follow("import machine\nmachine.bootloader()")
        end = time.monotonic() + 15
        while drive is None and time.monotonic() < end:
            time.sleep(0.5)
            drive, board_id = find_bootsel(args.bootsel)
    if drive is None:
        raise ToolError(NOT_IN_BOOTLOADER, "the RP2040 is not in its bootloader: unplug it, hold "
                        "BOOTSEL, plug it in, release BOOTSEL; a drive named RPI-RP2 must appear "
                        "(give its mount point with --bootsel if it is not found)")
    if board_id != BOOTSEL_BOARD_ID:
        raise ToolError(WRONG_BOARD, "wrong board: the BOOTSEL drive %s says Board-ID %r, not %r "
                        "(an RP2350 needs its own image): check --board" % (drive, board_id,
                                                                           BOOTSEL_BOARD_ID))
    target = Path(drive) / Path(args.image).name
    bar = Progress("writing UF2", len(data))
    with open(target, "wb") as f:
        for off in range(0, len(data), 64 * 1024):
            f.write(data[off:off + 64 * 1024])
            bar.update(off + 64 * 1024)
        f.flush()
        os.fsync(f.fileno())
    bar.finish()
    end = time.monotonic() + 30
    while not os.path.exists(args.port) and time.monotonic() < end:
        time.sleep(0.5)
    if not os.path.exists(args.port):
        raise ToolError(NO_ANSWER, "the RP2040 took the image but %s did not come back in 30 s: "
                        "check the port name (ls /dev/ttyACM*)" % args.port)
    time.sleep(1.0)


def run(args):
    image_data = cmds = None
    if not args.app_only:
        if args.board == "unix":
            raise ToolError(WRONG_BOARD, "--board unix is the stand-in board: it has no image "
                            "to flash; add --app-only")
        if not args.image:
            raise ToolError(WRONG_CHIP_IMAGE, "give --image FILE (the MicroPython build for %s "
                            "from micropython.org), or --app-only if MicroPython is already "
                            "on the board" % args.board)
        image_data = check_image(args.image, args.board)
        if args.board in ESP_CHIPS:
            cmds = esptool_command(args.port, args.board, args.image, args.baud,
                                   getattr(args, "erase", False))
    with tempfile.TemporaryDirectory(prefix="stationctl-mpy-") as build:
        files = compile_app(build)
        if args.dry_run:
            print(plan_text(args, files, image_data, cmds,
                            find_bootsel(args.bootsel)[0] if args.board == "rp2040" else None))
            return 0
        from tools.boardlink import BoardLink, check_chip, check_port
        if image_data is not None:
            if cmds:
                check_port(args.port)
                _flash_esp(args, cmds)
                time.sleep(1.0)
            else:
                _flash_uf2(args, image_data)
        with BoardLink.open(args.port) as link:
            platform, machine = link.identify()
            check_chip(args.board, platform, machine, args.port)
            board_mpy = link.eval("getattr(__import__('sys').implementation, '_mpy', 0) & 0xff")
            ours = mpy_version(files)
            if board_mpy and ours and board_mpy != ours:
                raise ToolError(WRONG_CHIP_IMAGE, "the board's MicroPython loads .mpy version %d, "
                                "these files are version %d (mpy-cross %s): flash a matching "
                                "MicroPython image (--image) first" % (board_mpy, ours, "1.29"))
            print("board on %s: %s (%s)" % (args.port, machine, platform))
            deploy(link, files)
            link.reset()
    print("done: the node application is on the board. Next: stationctl provision --port %s "
          "NODE_ID --registry keys.toml --profile PROFILE" % args.port)
    return 0
