"""The no-hardware technician path: the example site's Modbus gauge started alone, and a
stand-in node with a simulated radio whose readings reach the technician's own gateway."""
import asyncio
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from hil.demo import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def read_register(port, address):
    from pymodbus.client import AsyncModbusTcpClient

    async def go():
        c = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=10)
        await c.connect()
        try:
            r = await c.read_holding_registers(address, count=1, device_id=1)
            return None if r.isError() else r.registers[0]
        finally:
            c.close()
    return asyncio.run(go())


def test_hil_gauge_serves_the_example_sites_device(tmp_path):
    example = tomllib.loads((ROOT / "gateway" / "examples" / "site.toml").read_text())
    dev = example["modbus"]["devices"][0]
    level = next(p for p in dev["points"] if p["chan"] == "water_level.0")
    assert example["modbus"]["buses"][0]["port"] == 5020      # what `hil gauge` defaults to
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "hil", "gauge", "--port", str(port)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = p.stdout.readline()
        assert "127.0.0.1:%d" % port in line, line
        mm = read_register(port, level["address"])
        assert mm is not None and 1500 <= mm <= 3000      # a river level in millimetres
        # a second gauge on the same port is refused with the next step
        r = subprocess.run([sys.executable, "-m", "hil", "gauge", "--port", str(port)],
                           cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "--port" in r.stderr and str(port) in r.stderr
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(10)
    assert p.returncode is not None


FAST_PROFILE = {
    "description": "bench: rain and battery every few seconds",
    "channels": [{"id": "rain.0", "driver": "rain", "mm_per_tip": 0.2},
                 {"id": "battery.0", "driver": "battery"}],
    "rules": [],
    "intervals": {"sample_s": 2, "intensified_s": 2, "report_s": 4, "status_s": 30},
}


def tool(*argv, timeout=120):
    return subprocess.run([sys.executable, "-m", "tools.cli", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def gw(*argv, timeout=60):
    return subprocess.run([sys.executable, "-m", "gateway.cli", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.broker
def test_technician_flashes_provisions_and_sees_a_reading_at_their_gateway(tmp_path, broker):
    """docs/technician.md "No hardware at all": a stand-in node with a simulated radio, flashed and
    provisioned with stationctl, heard by the technician's own stationgw."""
    import json
    site = tmp_path / "site"
    site.mkdir()
    keys = site / "keys.toml"
    assert tool("keygen", "17", "--registry", str(keys)).returncode == 0
    board = subprocess.Popen([sys.executable, "-m", "tools.cli", "standin", "--fs",
                              str(tmp_path / "board"), "--radio"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    gateway = None
    try:
        port = board.stdout.readline().split()[3]
        line = board.stdout.readline()
        assert line.startswith("standin: radio on "), line
        air = line.split()[3].rstrip(":")
        r = tool("flash", "--port", port, "--board", "unix", "--app-only")
        assert r.returncode == 0, r.stderr
        profile = tmp_path / "fast.json"
        profile.write_text(json.dumps(FAST_PROFILE))
        cfg = site / "site.toml"
        cfg.write_text('[site]\nid = "bench"\ngateway_id = "laptop"\n\n'
                       '[storage]\npath = "store.db"\n\n'
                       '[mqtt]\nhost = "127.0.0.1"\nport = %d\n\n'
                       '[radio]\nport = "%s"\nmodule = "none"\nkeys_file = "keys.toml"\n\n'
                       '[[nodes]]\nid = 17\nname = "bench-node"\nchannels = ["rain.0", '
                       '"battery.0"]\n' % (broker.port, air))
        # the gateway first (it knows the key from keygen), then the node boots into it
        log = open(tmp_path / "gw.log", "wb")
        gateway = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", str(cfg)],
                                   cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        r = tool("provision", "17", "--port", port, "--profile", str(profile), "--registry",
                 str(keys), "--timeout", "60")
        assert r.returncode == 0, r.stdout + r.stderr

        def heard():
            r = gw("status", str(cfg), "--json")
            if r.returncode:
                return None
            snap = json.loads(r.stdout)
            # frames from node 17 stored, and readings taken by the broker
            return snap["nodes"].get("17", {}).get("frames") and \
                snap["broker"].get("readings_acked")
        assert wait_until(heard, 60, 0.5), (tmp_path / "gw.log").read_text()[-3000:] + \
            gw("status", str(cfg), "--json").stdout
        text = gw("status", str(cfg)).stdout
        row = next(x for x in text.splitlines() if x.startswith("17 "))
        assert "bench-node" in row and "never" not in row
    finally:
        if gateway is not None:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(20)
        board.send_signal(signal.SIGTERM)
        board.wait(20)
