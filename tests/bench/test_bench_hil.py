"""`python -m bench hil` (the HIL alarm latency, a figure since it left the scenarios'
pass/fail checks) runs a scenario end to end and reports it against a bare MQTT round
trip measured in the same run. Nothing here depends on how fast this machine is."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.broker
@pytest.mark.mpy
def test_bench_hil_reports_alarm_latency_against_a_baseline():
    r = subprocess.run([sys.executable, "-m", "bench", "hil", "storm", "--hours", "6"],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    fig = json.loads(r.stdout.strip().splitlines()[-1])
    assert fig["baseline_mqtt_rtt_ms_median"] > 0
    storm = fig["scenarios"]["storm"]
    assert storm["passed"] and storm["alarms"] > 0
    assert storm["alarm_latency_wall_ms_max"] > 0 and storm["ratio_vs_mqtt_rtt"] > 0
