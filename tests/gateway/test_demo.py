"""`make run` runs `python -m hil.demo`: a bounded run must show decoded readings from the
radio nodes and the Modbus gauge, and the alarm of node 101, in its live view."""
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


ALARM_LINE = (r"ALARM TRIP node 101 displacement\.0 -> ORANGE rule 1 value \d+\.\d\d mm "
              r"threshold 15\.00 mm")


def _shown(out):
    """Everything the test looks for is in the live view so far."""
    readings = sum(int(n) for n in re.findall(r"batch #\d+ +(\d+) readings", out))
    return (readings >= 10 and re.search(r"batch #\d+ +\d+ readings +.*node 101: .*"
                                         r"displacement\.0=", out)
            and re.search(r"node 9001: water_level\.0=", out) and re.search(ALARM_LINE, out))


@pytest.mark.broker
@pytest.mark.slow
def test_demo_shows_readings_and_an_alarm(tmp_path):
    """Run until the live view has shown what we look for, then stop it as a user does
    (SIGTERM, like Ctrl-C): not a fixed 15 s run that a loaded machine could fill with
    start-up. The --duration is only a bound."""
    errf = open(tmp_path / "demo.err", "w+")
    p = subprocess.Popen([sys.executable, "-m", "hil.demo", "--duration", "240", "--dir",
                          str(tmp_path / "demo")], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=errf, text=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(p.stdout.readline, "")),
                              daemon=True)
    reader.start()
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and p.poll() is None and not _shown("".join(lines)):
            time.sleep(0.1)
        p.send_signal(signal.SIGTERM)
        p.wait(120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    reader.join(60)                         # stdout has one reader: the thread, to its EOF
    errf.seek(0)
    err = errf.read()
    errf.close()
    out = "".join(lines)
    assert p.returncode == 0, out + err
    assert "broker   mosquitto on 127.0.0.1:" in out and "3 simulated nodes" in out
    assert re.search(r"batch #\d+ +\d+ readings +.*node 101: .*displacement\.0=", out), out
    assert re.search(r"node 9001: water_level\.0=", out), out
    # in real units, not the scaled integers (value 1812 threshold 1500)
    assert re.search(ALARM_LINE, out), out
    assert "mosquitto_sub" not in out and "tools.cli monitor --broker mqtt://127.0.0.1:" in out
    seen = re.search(r"seen: (\d+) batches, (\d+) readings, (\d+) alarms", out)
    assert seen and int(seen.group(2)) >= 10 and int(seen.group(3)) >= 1, out
    log = open(tmp_path / "demo" / "gateway.log").read()
    assert "event=stopped" in log and "Traceback" not in log


@pytest.mark.broker
def test_demo_removes_its_temp_site_with_the_keys(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    p = subprocess.run([sys.executable, "-m", "hil.demo", "--duration", "1"], cwd=ROOT,
                       capture_output=True, text=True, timeout=180, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    site = re.search(r"demo site in (\S+)", p.stdout).group(1)
    assert site.startswith(str(tmp_path)) and not os.path.exists(site)
    assert "removed %s" % site in p.stdout
    assert not [x for x in os.listdir(tmp_path) if x.startswith("stationgw-demo-")]


def test_alarm_lines_carry_units_and_each_level_its_own_colour():
    import io
    import threading

    from gateway import alarmtext, batcher
    from gateway.records import Alarm
    from hil.demo import DISP, LiveView

    class Msg:
        def __init__(self, level):
            self.topic = "stations/demo/gw1/alarm"
            self.payload = batcher.encode_alarm("demo", "gw1", Alarm(
                101, 7, 0, 1, level, 0, DISP, 1, 1, 1812, 1500, 1767225600, 0))

    out = io.StringIO()
    view = LiveView.__new__(LiveView)            # no broker: only the formatting
    view.out, view.color, view.alarms, view.lock = out, True, 0, threading.Lock()
    for level in (2, 3):
        view._on_message(None, None, Msg(level))
    yellow, orange = out.getvalue().splitlines()
    assert "value 18.12 mm threshold 15.00 mm" in yellow
    assert alarmtext.ANSI[2] in yellow and alarmtext.ANSI[3] in orange
    assert alarmtext.ANSI[2] != alarmtext.ANSI[3]


def test_a_tangent_alarm_reads_as_an_angle():
    # rule kind 5 (TRIP.md 4.5): value and threshold are tan(alpha) x 1000; a duty
    # officer grades by the angle (45 uniform creep, 85 imminent)
    from gateway import alarmtext
    assert alarmtext.metric_text(5, 0x10, 11430) == "tangent angle 85.0°"
    assert alarmtext.metric_text(5, 0x10, 1000) == "tangent angle 45.0°"
    assert alarmtext.KIND_NAMES[5] == "tangent angle"
