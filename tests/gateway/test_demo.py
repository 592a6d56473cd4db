"""`make run` runs `python -m hil.demo`: a bounded run must show decoded readings from the
radio nodes and the Modbus gauge, and the alarm of node 101, in its live view."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.broker
@pytest.mark.slow
def test_demo_shows_readings_and_an_alarm(tmp_path):
    p = subprocess.run([sys.executable, "-m", "hil.demo", "--duration", "15", "--dir",
                        str(tmp_path / "demo")], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    assert "broker   mosquitto on 127.0.0.1:" in out and "3 simulated nodes" in out
    assert re.search(r"batch #\d+ +\d+ readings +.*node 101: .*displacement\.0=", out), out
    assert re.search(r"node 9001: water_level\.0=", out), out
    assert re.search(r"ALARM TRIP node 101 displacement\.0 -> ORANGE", out), out
    seen = re.search(r"seen: (\d+) batches, (\d+) readings, (\d+) alarms", out)
    assert seen and int(seen.group(2)) >= 10 and int(seen.group(3)) >= 1, out
    log = open(tmp_path / "demo" / "gateway.log").read()
    assert "event=stopped" in log and "Traceback" not in log
