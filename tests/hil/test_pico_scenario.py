"""One emulated RP2040 among unix-port nodes: `python -m hil.pico_board storm-hour`.

Node 101 of hil/scenarios/storm-hour.toml runs on MicroPython's real rp2 port on the
emulated Pico (hil/pico.py), deployed with mpremote and stepped over its raw REPL like a
bench board (hil/board.py); nodes 102 and 103 run on the unix port. The gateway, the
broker and the subscriber are the real ones. The run passes only if every check of the
scenario passes for every node (nothing lost, alarms first on air and delivered, dedup
keys, reading times) and the Pico's own readings and alarm are among what the subscriber
got. The image is the one with the app frozen in when it is current, else the stock one
with the app copied as .mpy (slower; the run says which and why).

Cost: about 40-60 s of wall time on 2 idle cores with the frozen image (~460 Pico steps
over the REPL, most of them the strobe's flashes after the blue trip); bounded by
TIMEOUT_S, the whole site killed with its process group on expiry. Skips only without
Node or rp2040js (the emulated Pico tier NOT RUN)."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hil.pico import unavailable

pytestmark = [pytest.mark.rp2, pytest.mark.broker, pytest.mark.mpy]

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 600
PICO_NODE = "101"


def run_pico_board(*args):
    p = subprocess.Popen([sys.executable, "-m", "hil.pico_board", *args], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), start_new_session=True)
    try:
        out, err = p.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise
    return p.returncode, out, err


def test_emulated_pico_among_unix_nodes_in_a_storm_hour():
    why = unavailable()
    if why:
        pytest.skip("emulated Pico tier NOT RUN: " + why)
    rc, out, err = run_pico_board("storm-hour")
    tail = out[-4000:] + "\n" + "\n".join(ln for ln in err.splitlines()
                                          if "invalid SIO" not in ln)[-2000:]
    lines = out.strip().splitlines()
    assert lines and lines[-1].startswith("{"), tail
    f = json.loads(lines[-1])
    assert "node %s ran on /dev/" % PICO_NODE in out, tail     # on the emulated board
    assert rc == 0 and f["passed"], tail
    assert f["lost"] == 0 and f["conflicts"] == 0 and f["node_crashes"] == 0, tail
    # the Pico's frames and its alarm reached the subscriber like the other nodes'
    readings, alarms = f["delivered_by_node"][PICO_NODE]
    assert readings > 0 and alarms > 0, f["delivered_by_node"]
    assert f["max_level"].get(PICO_NODE, 0) >= 1
    assert all(n[0] > 0 for n in f["delivered_by_node"].values()), f["delivered_by_node"]
    assert f["alarms_delivered"] == f["alarms"] and f["alarm_not_first_on_air"] == 0
