"""Modbus bridge timing, wall clock: how soon a silent device is declared offline and
back online, and whether a gauge on another bus keeps its poll schedule meanwhile.
These were once second-bounds inside tests/gateway/test_modbus_bridge.py; on a busy
CI box they measured the machine, so they are figures here.

Real parts: pymodbus TCP servers; the "flaky" device sits behind a loopback relay
that forwards to its server while alive and swallows requests while silent.

    python -m bench modbus [--seconds 6]

Baseline (same run): the gauge's poll gaps while the flaky device answers."""
import argparse
import asyncio
import json
import socket
import statistics

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gateway import config as gconfig
from gateway.modbus import ModbusBridge
from gateway.records import Reading

POLL_S = 0.2
TIMEOUT_S = 0.6
RETRIES = 1
BACKOFF_S = 0.05
PROBE_MAX_S = 0.5

SITE = """
[site]
id = "bench"
gateway_id = "gw"
[storage]
path = "store.db"
[mqtt]
host = "127.0.0.1"
client_id = "x"
[[modbus.buses]]
name = "flaky-net"
type = "tcp"
host = "127.0.0.1"
port = {relay}
[[modbus.buses]]
name = "gauge-net"
type = "tcp"
host = "127.0.0.1"
port = {gauge}
[[modbus.devices]]
name = "flaky"
bus = "flaky-net"
node = 9001
device_id = 1
poll_s = {poll}
timeout_s = {timeout}
retries = {retries}
retry_backoff_s = {backoff}
offline_probe_max_s = {probe}
[[modbus.devices.points]]
chan = "water_level.0"
table = "holding"
address = 0
type = "u16"
[[modbus.devices]]
name = "gauge"
bus = "gauge-net"
node = 9002
device_id = 1
poll_s = {poll}
timeout_s = 2.0
[[modbus.devices.points]]
chan = "water_level.0"
table = "holding"
address = 0
type = "u16"
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def server():
    port = free_port()
    s = ModbusTcpServer(SimDevice(id=1, simdata=[SimData(0, values=[7] * 4,
                                                         datatype=DataType.REGISTERS)]),
                        address=("127.0.0.1", port))
    await s.serve_forever(background=True)
    return s, port


class Relay:
    """Loopback TCP relay to a server; while `silent`, requests go nowhere."""

    def __init__(self, target_port):
        self.target_port, self.silent, self.port = target_port, False, free_port()

    async def start(self):
        self.srv = await asyncio.start_server(self._conn, "127.0.0.1", self.port)

    async def _conn(self, r, w):
        tr, tw = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def up():
            while data := await r.read(512):
                if not self.silent:
                    tw.write(data)

        async def down():
            while data := await tr.read(512):
                w.write(data)
        try:
            await asyncio.gather(up(), down())
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass                          # a side closed, or the bench is over
        finally:
            w.close()
            tw.close()

    def close(self):
        self.srv.close()


def gaps(times):
    return [b - a for a, b in zip(times, times[1:])]


async def measure(seconds):
    flaky_srv, flaky_port = await server()
    gauge_srv, gauge_port = await server()
    relay = Relay(flaky_port)
    await relay.start()
    cfg = gconfig.parse(SITE.format(relay=relay.port, gauge=gauge_port, poll=POLL_S,
                                    timeout=TIMEOUT_S, retries=RETRIES, backoff=BACKOFF_S,
                                    probe=PROBE_MAX_S), "bench-modbus.toml")
    loop = asyncio.get_running_loop()
    got = []                              # (t, node)
    states = []                           # (t, device, online)

    async def sink(records):
        now = loop.time()
        got.extend((now, r.node) for r in records if isinstance(r, Reading))
    seqs = {}

    def alloc(node):
        seqs[node] = seqs.get(node, 0) + 1
        return seqs[node]
    bridge = ModbusBridge(cfg, sink, alloc,
                          on_state=lambda s: states.append((loop.time(), s.device, s.online)))
    task = asyncio.create_task(bridge.run())
    try:
        t0 = loop.time()
        await asyncio.sleep(seconds)                       # baseline: both answer
        t_silent = loop.time()
        relay.silent = True
        while not any(d == "flaky" and not on for _t, d, on in states):
            await asyncio.sleep(0.01)
        t_off = next(t for t, d, on in states if d == "flaky" and not on)
        await asyncio.sleep(seconds)                       # dead neighbour
        t_back_from = loop.time()
        relay.silent = False
        while not any(d == "flaky" and on and t > t_back_from for t, d, on in states):
            await asyncio.sleep(0.01)
        t_on = next(t for t, d, on in states if d == "flaky" and on and t > t_back_from)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        relay.close()
        await flaky_srv.shutdown()
        await gauge_srv.shutdown()
    gauge = [t for t, n in got if n == 9002]
    base = gaps([t for t in gauge if t0 <= t <= t_silent])
    dead = gaps([t for t in gauge if t_silent <= t <= t_back_from])
    return {
        "poll_s": POLL_S, "timeout_s": TIMEOUT_S, "retries": RETRIES,
        "offline_after_s": round(t_off - t_silent, 3),
        "offline_nominal_s": round(POLL_S + (RETRIES + 1) * TIMEOUT_S + BACKOFF_S, 3),
        "online_after_s": round(t_on - t_back_from, 3),
        "online_nominal_max_s": round(PROBE_MAX_S + TIMEOUT_S, 3),
        "baseline_gauge_gap_s_median": round(statistics.median(base), 3),
        "baseline_gauge_gap_s_max": round(max(base), 3),
        "dead_neighbour_gauge_gap_s_median": round(statistics.median(dead), 3),
        "dead_neighbour_gauge_gap_s_max": round(max(dead), 3),
        "gauge_gap_max_ratio_vs_baseline": round(max(dead) / max(base), 2),
    }


def main(argv=()):
    ap = argparse.ArgumentParser(prog="python -m bench modbus")
    ap.add_argument("--seconds", type=float, default=6.0, help="length of each phase")
    a = ap.parse_args(list(argv))
    res = asyncio.run(measure(a.seconds))
    print("Modbus bridge, wall clock (poll %.1f s, timeout %.1f s, %d retry)"
          % (POLL_S, TIMEOUT_S, RETRIES))
    print("  silent device offline after  %6.3f s  (nominal %.3f s)"
          % (res["offline_after_s"], res["offline_nominal_s"]))
    print("  back online after            %6.3f s  (nominal at most %.3f s)"
          % (res["online_after_s"], res["online_nominal_max_s"]))
    print("  gauge on the other bus: gap median %.3f s, max %.3f s with the dead neighbour;"
          % (res["dead_neighbour_gauge_gap_s_median"], res["dead_neighbour_gauge_gap_s_max"]))
    print("    baseline (neighbour answering) median %.3f s, max %.3f s: max ratio %.2fx"
          % (res["baseline_gauge_gap_s_median"], res["baseline_gauge_gap_s_max"],
             res["gauge_gap_max_ratio_vs_baseline"]))
    print(json.dumps(res))
    return 0
