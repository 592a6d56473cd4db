"""`python -m bench wire` runs and meets the issue's size goals (byte counts, not timings)."""
import json
import subprocess
import sys

from harness import ROOT


def test_bench_wire_prints_table_then_json_and_meets_goals():
    r = subprocess.run([sys.executable, "-m", "bench", "wire"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert "bytes per reading" in r.stdout
    fig = json.loads(lines[-1])
    for k in ("air_bytes_per_reading", "air_json_bytes_per_reading", "air_senml_bytes_per_reading",
              "uplink_bytes_per_reading", "uplink_thingsboard_bytes_per_reading", "frame_bytes_typical"):
        assert k in fig
    assert fig["air_bytes_per_reading"] <= fig["air_json_bytes_per_reading"] / 10
    assert fig["air_bytes_per_reading"] <= fig["air_senml_bytes_per_reading"] / 3
    assert fig["uplink_bytes_per_reading"] <= fig["uplink_thingsboard_bytes_per_reading"] / 4
    assert fig["frame_bytes_typical"] <= 40
    assert fig["storm_max_20min_mm"] >= 50     # the trace really has the documented storm
    # Modbus at 1 s polls (#13): consecutive polls form runs, so a reading costs far less
    # than with one seq per poll once a batch holds several polls
    for b in (5, 10, 60):
        assert fig["modbus_%ds_uplink_bytes_per_reading" % b] < \
            fig["modbus_%ds_per_poll_seq_bytes_per_reading" % b] * 0.7
        assert fig["modbus_%ds_uplink_bytes_per_reading" % b] < \
            fig["modbus_%ds_thingsboard_bytes_per_reading" % b] / 2
    assert fig["modbus_60s_uplink_bytes_per_reading"] <= 4
