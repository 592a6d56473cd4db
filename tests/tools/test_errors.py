"""Every field failure the issue lists, each with its own exit code and a message that
says what is wrong and what to do."""
import json

import pytest
import serial

from protocol import frame as fr
from protocol import readings
from protocol.mic import Hmac
from tools import cli, errors, flash, provision
from tools.boardlink import check_chip
from tools.errors import ToolError

from .test_flash import esp_image, uf2_image


def err_of(capsys):
    return capsys.readouterr().err


# --- no such port ---------------------------------------------------------------------

@pytest.mark.parametrize("cmd", [["selftest"], ["flash", "--board", "esp32", "--app-only"]])
def test_no_such_port(cmd, capsys):
    rc = cli.main([cmd[0], "--port", "/dev/ttyNOPE7", *cmd[1:]])
    assert rc == errors.NO_SUCH_PORT
    e = err_of(capsys)
    assert "no such port /dev/ttyNOPE7" in e and "plugged in" in e


# --- port busy -------------------------------------------------------------------------

def test_port_busy(standin, capsys):
    with serial.Serial(standin.port, 115200, exclusive=True):
        rc = cli.main(["selftest", "--port", standin.port])
    assert rc == errors.PORT_BUSY
    e = err_of(capsys)
    assert "port %s is busy" % standin.port in e and "Close it and retry" in e


# --- wrong board -------------------------------------------------------------------------

def test_wrong_board_standin_is_not_an_esp32(standin, capsys):
    rc = cli.main(["flash", "--port", standin.port, "--board", "esp32", "--app-only"])
    assert rc == errors.WRONG_BOARD
    e = err_of(capsys)
    assert "wrong board" in e and "not a esp32" in e and "--board unix" in e
    assert not (standin.fs / "protocol").exists()          # nothing copied


@pytest.mark.parametrize("board,platform,machine", [
    ("esp32", "esp32", "Generic ESP32S3 module with ESP32S3"),
    ("esp32s3", "esp32", "Generic ESP32 module with ESP32"),
    ("rp2040", "esp32", "Generic ESP32 module with ESP32"),
    ("esp32", "rp2", "Raspberry Pi Pico with RP2040"),
])
def test_wrong_board_by_identity(board, platform, machine):
    with pytest.raises(ToolError) as e:
        check_chip(board, platform, machine, "/dev/ttyUSB0")
    assert e.value.code == errors.WRONG_BOARD
    assert "wrong board" in e.value.message and machine in e.value.message


def test_right_board_by_identity_passes():
    check_chip("esp32s3", "esp32", "Generic ESP32S3 module with ESP32S3", "p")
    check_chip("rp2040", "rp2", "Raspberry Pi Pico with RP2040", "p")
    check_chip("esp32", "esp32", "Generic ESP32 module with ESP32", "p")


def test_wrong_board_from_esptool_and_bootsel(tmp_path):
    e = flash.esptool_failure("A fatal error occurred: This chip is ESP32-S3, not ESP32. "
                              "Wrong chip argument?\n", "/dev/ttyUSB0", 2)
    assert e.code == errors.WRONG_BOARD and "This chip is ESP32-S3, not ESP32" in e.message
    drive = tmp_path / "RP2350"
    drive.mkdir()
    (drive / "INFO_UF2.TXT").write_text("Board-ID: RP2350\n")
    img = tmp_path / "pico.uf2"
    img.write_bytes(uf2_image(flash.RP2040_FAMILY))
    rc = cli.main(["flash", "--port", "/dev/ttyNOPE", "--board", "rp2040", "--image", str(img),
                   "--bootsel", str(drive)])
    assert rc == errors.WRONG_BOARD
    assert not (drive / "pico.uf2").exists()


def test_wrong_board_for_the_pin_map():
    variant = provision.load_variant("rp2040_pico")
    with pytest.raises(ToolError) as e:
        provision._check_variant_chip(variant, "esp32", "Generic ESP32 module with ESP32", "p")
    assert e.value.code == errors.WRONG_BOARD and "rp2040_pico is for rp2040" in e.value.message


# --- board not in bootloader -----------------------------------------------------------------

def test_rp2040_not_in_bootloader(tmp_path, capsys):
    img = tmp_path / "pico.uf2"
    img.write_bytes(uf2_image(flash.RP2040_FAMILY))
    empty = tmp_path / "not-a-drive"
    empty.mkdir()
    rc = cli.main(["flash", "--port", "/dev/ttyNOPE", "--board", "rp2040", "--image", str(img),
                   "--bootsel", str(empty)])
    assert rc == errors.NOT_IN_BOOTLOADER
    e = err_of(capsys)
    assert "not in its bootloader" in e and "hold BOOTSEL" in e and "RPI-RP2" in e


def test_esp32_not_in_bootloader():
    e = flash.esptool_failure("Connecting......\nA fatal error occurred: Failed to connect to "
                              "ESP32: No serial data received.\n", "/dev/ttyUSB0", 2)
    assert e.code == errors.NOT_IN_BOOTLOADER
    assert "did not enter its bootloader" in e.message and "hold BOOT" in e.message


# --- image for another chip -------------------------------------------------------------------

@pytest.mark.parametrize("board,data,words", [
    ("esp32", esp_image(9), ["image for ESP32-S3, not ESP32"]),
    ("esp32s3", esp_image(0), ["image for ESP32, not ESP32-S3"]),
    ("esp32", uf2_image(flash.RP2040_FAMILY), ["not an ESP32 firmware image", "UF2"]),
    ("rp2040", esp_image(0), ["not a UF2 file", "ESP32 .bin"]),
    ("rp2040", uf2_image(0xE48BFF59), ["UF2 for RP2350 (ARM), not RP2040"]),
    ("rp2040", uf2_image(0xC47E5767), ["UF2 for ESP32-S3, not RP2040"]),
])
def test_image_for_another_chip(tmp_path, capsys, board, data, words):
    img = tmp_path / "fw.img"
    img.write_bytes(data)
    rc = cli.main(["flash", "--port", "/dev/ttyUSB9", "--board", board, "--image", str(img),
                   "--dry-run"])
    assert rc == errors.WRONG_CHIP_IMAGE
    e = err_of(capsys)
    for w in words:
        assert w in e
    assert "micropython.org" in e


# --- node id not in the registry -------------------------------------------------------------

def test_node_not_in_registry_before_touching_the_board(registry, capsys):
    rc = cli.main(["provision", "--port", "/dev/ttyNOPE", "99", "--registry", registry,
                   "--profile", "rain"])
    assert rc == errors.NODE_NOT_IN_REGISTRY
    e = err_of(capsys)
    assert "node 99 is not in the registry" in e and "(it has: 17)" in e
    assert "stationctl keygen 99 --registry %s" % registry in e


def test_missing_registry_file(tmp_path, capsys):
    rc = cli.main(["provision", "--port", "/dev/ttyNOPE", "5", "--registry",
                   str(tmp_path / "none.toml"), "--profile", "rain"])
    assert rc == errors.NODE_NOT_IN_REGISTRY and "no such keys file" in err_of(capsys)


# --- key mismatch ------------------------------------------------------------------------------

def test_key_mismatch(registry, capsys):
    payload = readings.encode([readings.Block(0x18, 60, 60, [2950, 3010])])
    raw = fr.encode(Hmac(bytes(range(7, 39))), fr.READINGS, 17, 5, 1000, payload)
    rc = cli.main(["decode", raw.hex(), "--registry", registry])
    assert rc == errors.KEY_MISMATCH
    e = err_of(capsys)
    assert "key mismatch" in e and "the gateway rejects this node's frames" in e
    assert "stationctl provision --port PORT 17 --registry %s" % registry in e


# --- config invalid ---------------------------------------------------------------------------

@pytest.mark.parametrize("change,key", [
    ({"intervals": {"sample_s": 0}}, "key 'intervals.sample_s'"),
    ({"channels": [{"id": "rain.0", "driver": "wind"}]}, "key 'channels[0].driver'"),
    ({"channels": [{"id": "rain.9", "driver": "rain"}]}, "key 'channels[0].id'"),
    ({"rules": [[1, 0x18, 1, 3, 1, 3000, 100, 2, 600]]}, "key 'rules[0].chan'"),
    ({"key": "00" * 32}, "key 'key': a profile must not set it"),
    ({"colour": "red"}, "key 'colour': unknown"),
])
def test_config_invalid_names_the_key(tmp_path, registry, capsys, change, key):
    prof = {k: v for k, v in provision.PROFILES["rain"].items() if k != "description"}
    prof.update(change)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(prof))
    rc = cli.main(["provision", "--port", "/dev/ttyNOPE", "17", "--registry", registry,
                   "--profile", str(p), "--dry-run"])
    assert rc == errors.CONFIG_INVALID
    e = err_of(capsys)
    assert key in e and "bad.json" in e


def test_board_lacking_the_driver_input(registry, capsys):
    rc = cli.main(["provision", "--port", "/dev/ttyNOPE", "17", "--registry", registry,
                   "--profile", "landslide", "--board", "nosuchboard", "--dry-run"])
    assert rc == errors.CONFIG_INVALID
    assert "--board nosuchboard: no such board file" in err_of(capsys)


def test_exit_codes_are_distinct():
    codes = [v for k, v in vars(errors).items() if k.isupper() and isinstance(v, int)]
    assert len(codes) == len(set(codes)) and 0 not in codes and 1 not in codes


def test_esptool_failure_output_is_streamed_and_explained(capfd):
    import argparse
    import sys
    fake = [sys.executable, "-c", "import sys; sys.stdout.write('Connecting....\\nA fatal error "
            "occurred: Failed to connect to ESP32: No serial data received.\\n'); sys.exit(2)"]
    with pytest.raises(ToolError) as e:
        flash._flash_esp(argparse.Namespace(port="/dev/ttyUSB0"), [fake])
    assert e.value.code == errors.NOT_IN_BOOTLOADER
    assert "Failed to connect to ESP32" in capfd.readouterr().err   # the technician saw it
