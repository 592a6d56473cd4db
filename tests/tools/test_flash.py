"""flash: image headers checked per chip, the exact plan in --dry-run (esptool itself is
only asked for --help/version), the application deployed to the stand-in and verified."""
import hashlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools import cli, errors, flash

ROOT = Path(__file__).resolve().parents[2]
ESPTOOL = str(ROOT / ".venv" / "bin" / "esptool")


def esp_image(chip_id, size=4096):
    """An ESP image header (magic 0xE9, 3 segments, extended header with the chip id)."""
    head = struct.pack("<BBBBI", 0xE9, 3, 2, 0x20, 0x40080000)
    ext = struct.pack("<B3sHBHH", 0xEE, b"\0\0\0", chip_id, 0, 0, 0xFFFF) + b"\0" * 4 + b"\x01"
    return (head + ext).ljust(size, b"\xff")


def uf2_image(family, blocks=4):
    out = b""
    for i in range(blocks):
        out += struct.pack("<IIIIIIII", flash.UF2_MAGIC0, flash.UF2_MAGIC1, 0x2000,
                           0x10000000 + 256 * i, 256, i, blocks, family)
        out += bytes(476) + struct.pack("<I", flash.UF2_MAGIC_END)
    return out


def test_pinned_esptool_has_the_commands_the_plan_uses():
    v = subprocess.run([ESPTOOL, "version"], capture_output=True, text=True, timeout=60)
    assert v.returncode == 0 and "5." in v.stdout
    h = subprocess.run([ESPTOOL, "--help"], capture_output=True, text=True, timeout=60)
    assert "write-flash" in h.stdout and "erase-flash" in h.stdout
    assert "esp32s3" in h.stdout and "esp32c3" in h.stdout


@pytest.mark.parametrize("board,chip_id,offset", [("esp32", 0, "0x1000"), ("esp32s3", 9, "0x0")])
def test_dry_run_plan_esp(tmp_path, capsys, board, chip_id, offset):
    img = tmp_path / "mp.bin"
    img.write_bytes(esp_image(chip_id))
    assert cli.main(["flash", "--port", "/dev/ttyUSB9", "--board", board, "--image", str(img),
                     "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert ("--chip %s --port /dev/ttyUSB9 --baud 460800 write-flash -z %s %s"
            % (board, offset, img)) in out
    assert hashlib.sha256(img.read_bytes()).hexdigest() in out
    # every application file with its hash, protocol first, main.py (a stub) last
    files = [line.split()[0] for line in out.splitlines() if "sha256" in line and "from " in line]
    assert files[0].startswith("protocol/") and files[-1] == "main.py"
    assert "firmware/nodeconfig.mpy" in files and "firmware/variants/rp2040_pico.json" in files
    assert "firmware/manifest.mpy" not in files


def test_dry_run_plan_rp2040_names_the_bootsel_copy(tmp_path, capsys):
    img = tmp_path / "pico.uf2"
    img.write_bytes(uf2_image(flash.RP2040_FAMILY))
    assert cli.main(["flash", "--port", "/dev/ttyACM9", "--board", "rp2040", "--image", str(img),
                     "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "copy to the BOOTSEL drive" in out and "pico.uf2" in out


def test_dry_run_erase_is_explicit(tmp_path, capsys):
    img = tmp_path / "mp.bin"
    img.write_bytes(esp_image(0))
    cli.main(["flash", "--port", "/dev/ttyUSB9", "--board", "esp32", "--image", str(img),
              "--dry-run", "--erase"])
    out = capsys.readouterr().out
    assert out.index("erase-flash") < out.index("write-flash")


def test_app_deployed_to_standin_and_verified(flashed):
    fs = flashed.fs
    assert (fs / "firmware" / "nodeconfig.mpy").read_bytes()[:1] == b"M"
    assert (fs / "firmware" / "variants" / "esp32_devkitc.json").read_bytes() == \
        (ROOT / "firmware" / "variants" / "esp32_devkitc.json").read_bytes()
    assert (fs / "main.py").read_bytes() == flash.MAIN_STUB
    assert not list(fs.rglob("*.tmp"))
    for dest, data, _ in flash.compile_app(fs.parent / "build"):
        assert (fs / dest).read_bytes() == data, dest


def test_a_corrupted_copy_never_replaces_the_good_file(standin, monkeypatch):
    from tools.boardlink import BoardLink
    (standin.fs / "keep.txt").write_bytes(b"good")
    link = BoardLink.open(standin.port)
    try:
        real = link.t.fs_writefile
        monkeypatch.setattr(link.t, "fs_writefile",
                            lambda p, d, **kw: real(p, d[:-1] + b"X", **kw))
        with pytest.raises(errors.ToolError) as e:
            link.put("keep.txt", b"new content")
    finally:
        link.close()
    assert e.value.code == errors.VERIFY_FAILED and "the old keep.txt is kept" in e.value.message
    assert (standin.fs / "keep.txt").read_bytes() == b"good"


def test_rp2040_uf2_lands_on_the_bootsel_drive(standin, tmp_path, capsys):
    drive = tmp_path / "RPI-RP2"
    drive.mkdir()
    (drive / "INFO_UF2.TXT").write_text("UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\n"
                                        "Board-ID: RPI-RP2\n")
    img = tmp_path / "pico.uf2"
    img.write_bytes(uf2_image(flash.RP2040_FAMILY))
    # the port that comes back after the copy is the stand-in: not an RP2040
    rc = cli.main(["flash", "--port", standin.port, "--board", "rp2040", "--image", str(img),
                   "--bootsel", str(drive)])
    assert (drive / "pico.uf2").read_bytes() == img.read_bytes()
    assert rc == errors.WRONG_BOARD
    assert "MicroPython unix port (the stand-in board), not a rp2040" in capsys.readouterr().err


def test_ctrl_c_mid_copy_removes_the_tmp_file_and_says_how_to_resume(standin, tmp_path):
    # Ctrl-C once printed "interrupted", left a .tmp file, and the board never answered again
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "tools.cli", "flash", "--port", standin.port, "--board", "unix",
           "--app-only"]
    fw = standin.fs / "firmware"
    # The Ctrl-C must land mid-copy: the copier is frozen (SIGSTOP) as soon as firmware/
    # is under way and checked to be still copying (main.py, the last file, not there).
    # A copier that got to the end first (a stalled test on a busy box) proves nothing:
    # its files are wiped and the copy runs again, so the verdict does not hang on speed.
    for _attempt in range(5):
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and p.poll() is None \
                and not (fw.exists() and any(fw.iterdir())):
            time.sleep(0.01)                       # protocol/ is done, firmware/ under way
        p.send_signal(signal.SIGSTOP)
        if p.poll() is None and not (standin.fs / "main.py").exists():
            break
        p.send_signal(signal.SIGCONT)
        assert p.wait(timeout=120) == 0, p.stderr.read()
        p.stdout.close()
        p.stderr.close()
        shutil.rmtree(fw)
        (standin.fs / "main.py").unlink()
    else:
        pytest.fail("the copy finished before it could be interrupted, 5 times")
    p.send_signal(signal.SIGINT)
    p.send_signal(signal.SIGCONT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == errors.INTERRUPTED, err
    assert "run the same command again to resume" in err and "files already on the board are " \
        "skipped" in err
    assert list(standin.fs.rglob("*.tmp")) == []
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "were there already" in r.stdout
