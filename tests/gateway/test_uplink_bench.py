"""`python -m bench gateway` runs end to end and prints a table, then the JSON figures.
No timing is asserted here (figures belong to the bench, not to a pass/fail test)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_gateway_small_run_prints_table_then_json():
    r = subprocess.run([sys.executable, "-m", "bench", "gateway", "--readings", "6000",
                        "--drain", "12000", "--baseline", "300", "--alarm-every-ms", "20"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert any(line.startswith("backlog drained") for line in lines)
    fig = json.loads(lines[-1])
    for k in ("readings_per_s", "baseline_readings_per_s", "drain_readings", "drain_s",
              "alarm_p50_ms", "alarm_p99_ms", "cpu_s_per_million"):
        assert fig[k] is not None, k
    assert fig["drain_readings"] == 12000 and fig["throughput_readings"] == 6000
    assert fig["alarms"] == fig["alarms_sent"] > 0          # every alarm reached the subscriber


def test_bench_dispatcher_names_what_exists():
    r = subprocess.run([sys.executable, "-m", "bench", "no-such-bench"], capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "gateway" in r.stderr and "no-such-bench" in r.stderr
