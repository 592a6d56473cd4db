"""Every scenario that needs no hardware, end to end: the real firmware on the
MicroPython unix port (256 KB heap, compiled .mpy), the simulated medium, the real
gateway daemon, a real Mosquitto, the independent subscriber (`python -m hil run`).

Each runs its full simulated length with seed 1 (the scenario files' defaults): the
whole set simulates about 330 h (with the drains) and takes about 1 min of wall time
on 2 cores here (gateway-crash-loop's 50 daemon restarts cost most, ~10 s). Every run
is bounded by a timeout and killed with its whole process group on expiry."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hil import scenario as scen

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 600          # a hang guard: gateway-crash-loop restarts the daemon 50 times, 3-5x slower under load


def run_hil(*args, timeout=TIMEOUT_S, env=None):
    """`python -m hil ...` in its own process group: on a timeout the whole site
    (broker, gateway, nodes) is killed with it, nothing is left running."""
    e = dict(os.environ, PYTHONPATH=str(ROOT))
    e.update(env or {})
    p = subprocess.Popen([sys.executable, "-m", "hil", *args], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=e, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def figures(r):
    lines = r.stdout.strip().splitlines()
    assert lines, r.stderr[-2000:]
    return json.loads(lines[-1])


HUB_ARGS = {"gateway-crash-loop": ("--hub", "3", "--hub-subscription", "shared"),
            "uplink-outage": ("--hub", "2")}     # exclusive: see hub/ingest.py


@pytest.mark.broker
@pytest.mark.mpy
@pytest.mark.slow
@pytest.mark.parametrize("name", scen.names())
def test_scenario_passes(name):
    # the monitoring centre's hub (hub/) subscribes beside the rig's subscriber and is
    # killed with -9 mid-batch; shared-subscription workers where the broker stays up
    r = run_hil("run", name, "--quiet", *HUB_ARGS.get(name, ("--hub", "1")))
    f = figures(r)
    h = f["hub"]
    assert h["readings"] == h["expected"] and h["missing"] == h["extra"] == 0, h
    assert h["content_differs"] == 0 and h["alarms"] == h["subscriber_alarms"], h
    assert r.returncode == 0 and f["passed"], r.stdout[-4000:] + r.stderr[-2000:]
    for k in ("scenario", "sent", "delivered", "lost", "duplicated", "alarms",
              "alarm_latency_wall_ms_max", "red_lead_time_s", "false_reds",
              "airtime_s_per_node_day", "passed"):
        assert k in f
    assert f["scenario"] == name
    # a node cut between packing a record and writing it to flash loses that record
    # legitimately (still RAM): it is neither delivered nor "lost"
    assert f["sent"] > 0
    assert f["delivered"] == f["sent"] - f["lost"] - f["packed_lost_in_ram_at_power_cut"]
    sc = scen.load(name)
    if not any(a["do"] == "node_power_cuts" for a in sc.actions):
        assert f["packed_lost_in_ram_at_power_cut"] == 0
    assert f["lost"] == 0 and f["conflicts"] == 0 and f["false_reds"] == 0
    if sc.failure_s is not None:
        assert f["red_lead_time_s"] >= 1800
    else:
        assert f["red_lead_time_s"] is None
    if sc.expect.get("alarm_latency"):
        # the latency itself is a figure (python -m bench hil), not a pass/fail
        assert f["alarms"] > 0 and f["alarm_latency_wall_ms_max"] is not None
    if name == "forged-frames":
        assert f["gateway_counters"]["3"] > 0 and f["unknown_readings"] == 0
    if name == "radio-dead-zone":
        assert f["medium"]["dead_zone"] > 0
    if name == "gateway-crash-loop":
        assert f["gw_kills"] == 50
    if name == "node-power-cuts":
        assert f["node_kills"] == 50


@pytest.mark.broker
@pytest.mark.mpy
def test_the_rig_fails_when_the_chain_loses_readings():
    """Check the checker: with a wrong key for node 101 at the gateway, every frame of
    that node is rejected, so its readings never arrive: the run must fail, say so, and
    count the rejections."""
    r = run_hil("run", "calm-day", "--hours", "3", "--quiet", "--sabotage", "wrong-key")
    f = figures(r)
    assert r.returncode == 1 and f["passed"] is False
    assert f["lost"] > 0 and "nothing lost" in f["failed_checks"]
    assert f["gateway_counters"]["3"] > 0           # frames_rejected (bad MIC)


def test_list_names_every_scenario():
    r = run_hil("list", timeout=30)
    assert r.returncode == 0
    for name in scen.names():
        assert name in r.stdout


def test_unknown_scenario_is_a_clear_error():
    r = run_hil("run", "no-such-scenario", timeout=30)
    assert r.returncode == 2
    assert "python -m hil list" in r.stderr


def test_real_board_tier_says_it_did_not_run():
    r = run_hil("board", "storm", timeout=30, env={"HIL_PORT": ""})
    assert r.returncode == 3
    assert "real-board tier NOT RUN: set HIL_PORT" in r.stdout + r.stderr
    r = run_hil("board", "storm", timeout=30, env={"HIL_PORT": "/dev/no-such-board"})
    assert r.returncode == 3 and "does not exist" in r.stdout


STANDIN = "exec:%s" % (ROOT / ".venv" / "bin" / "micropython")


@pytest.mark.broker
@pytest.mark.mpy
def test_stand_in_board_runs_a_scenario_through_the_raw_repl():
    """The board tier's own code (raw REPL control, software test inputs) on the unix
    port as a stand-in board: storm's node 101 is the "board"."""
    r = run_hil("board", "storm", "--hours", "4", env={"HIL_PORT": STANDIN})
    f = figures(r)
    assert r.returncode == 0 and f["passed"], r.stdout[-3000:] + r.stderr[-2000:]
    assert "ran on exec:" in r.stdout and f["alarms"] > 0 and f["lost"] == 0


def test_board_tier_does_not_cut_power_it_cannot_cut():
    r = run_hil("board", "node-power-cuts", timeout=30, env={"HIL_PORT": STANDIN})
    assert r.returncode == 3 and "NOT RUN" in r.stdout
