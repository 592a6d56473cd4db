"""The Modbus bridge against real parts: pymodbus servers over TCP and RTU (pty pairs),
and a hand-written RTU device on a pty for silence and CRC errors.

No wall-clock bounds: the tests wait for events (a reading, a state change) with
generous upper limits, and check behaviour by counts; how fast the bridge goes
offline, comes back and keeps its schedule is a figure (`python -m bench modbus`)."""
import asyncio
import dataclasses
import os
import re
import socket
import struct
import tty

import pytest
from pymodbus import FramerType
from pymodbus.framer import FramerRTU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gateway import config as gconfig
from gateway import modbus_decode as mdec
from gateway.modbus import WINDOW, ModbusBridge
from gateway.records import Alarm, Reading
from protocol import channels

WATER = channels.chan_id(3, 0)
TEMP = channels.chan_id(7, 0)

HEAD = """
[site]
id = "t"
gateway_id = "gw"
[storage]
path = "store.db"
[mqtt]
host = "127.0.0.1"
client_id = "x"
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_config(tmp_path, body):
    """The site config, with the sub-second poll_s these tests use to stay short: the
    config refuses polls under 1 s (readings are stamped in whole seconds, SPEC §9.2),
    the bridge itself runs any interval. So the file is parsed with whole-second
    stand-ins and each device's poll_s is put back afterwards."""
    fast = {}

    def mark(m):                    # a whole-second stand-in, swapped back below
        fast[86300 + len(fast)] = float(m.group(1))
        return "poll_s = %d" % (86300 + len(fast) - 1)

    cfg = gconfig.parse(re.sub(r"^poll_s = (0\.\d+)$", mark, HEAD + body, flags=re.M),
                        str(tmp_path / "site.toml"))
    if fast:
        devs = tuple(dataclasses.replace(d, poll_s=fast.get(int(d.poll_s), d.poll_s))
                     for d in cfg.modbus.devices)
        cfg = dataclasses.replace(cfg, modbus=dataclasses.replace(cfg.modbus, devices=devs))
    return cfg


def crc(frame):
    return struct.pack(">H", FramerRTU.compute_CRC(frame))


class Collector:
    """The sink: keeps records and when they arrived, per node."""

    def __init__(self, clock):
        self.records, self.clock = [], clock
        self.seqs = {}

    async def sink(self, records):
        now = self.clock()
        for r in records:
            self.records.append((now, r))

    def alloc_seq(self, node):
        self.seqs[node] = self.seqs.get(node, 0) + 1
        return self.seqs[node]

    def readings(self, node):
        return [(t, r) for t, r in self.records if isinstance(r, Reading) and r.node == node]

    def alarms(self):
        return [r for _t, r in self.records if isinstance(r, Alarm)]


class FakeRtuDevices:
    """Modbus RTU devices behind one pty, answering FC 3 from a register dict.
    mode per device id: "ok", "silent" (no answer), "badcrc" (answer, broken CRC) or
    "every-other" (silent to every other request).
    Keeps when each request arrived and when each answer went out."""

    def __init__(self, loop):
        self.master, slave = os.openpty()
        tty.setraw(self.master)
        self.path = os.ttyname(slave)
        self._slave = slave
        self.loop = loop
        self.buf = b""
        self.modes, self.regs, self.count = {}, {}, {}
        self.requests = []             # (monotonic time, device id)
        self.answered_at = []
        loop.add_reader(self.master, self._readable)

    def _readable(self):
        self.buf += os.read(self.master, 256)
        while len(self.buf) >= 8:      # every request we serve (FC 3) is 8 bytes
            req, self.buf = self.buf[:8], self.buf[8:]
            if crc(req[:6]) != req[6:]:
                self.buf = b""         # lost sync: drop, the master will time out
                return
            dev, fc = req[0], req[1]
            addr, count = struct.unpack(">HH", req[2:6])
            self.requests.append((self.loop.time(), dev))
            mode = self.modes.get(dev, "silent")
            if mode == "every-other":   # loses every first try; the retry gets through
                self.count[dev] = self.count.get(dev, 0) + 1
                mode = "silent" if self.count[dev] % 2 else "ok"
            if mode == "silent" or fc != 3:
                continue
            data = b"".join(struct.pack(">H", self.regs.get((dev, a), 0))
                            for a in range(addr, addr + count))
            body = bytes((dev, 3, len(data))) + data
            tail = crc(body)
            if mode == "badcrc":
                tail = bytes((tail[0] ^ 0xFF, tail[1]))
            os.write(self.master, body + tail)
            self.answered_at.append(self.loop.time())

    def close(self):
        self.loop.remove_reader(self.master)
        os.close(self.master)
        os.close(self._slave)


def pty_link(loop):
    """Two pty slaves joined back to back (what socat does), for a pymodbus RTU server
    and client that each want a device path."""
    ends = []
    for _ in range(2):
        m, s = os.openpty()
        tty.setraw(m)
        ends.append((m, s))
    (m1, s1), (m2, s2) = ends

    def copy(src, dst):
        def cb():
            try:
                os.write(dst, os.read(src, 512))
            except OSError:
                pass
        return cb
    loop.add_reader(m1, copy(m1, m2))
    loop.add_reader(m2, copy(m2, m1))

    def close():
        for m, s in ends:
            loop.remove_reader(m)
            os.close(m)
            os.close(s)
    return os.ttyname(s1), os.ttyname(s2), close


# Upper bound for a condition to come true: generous, because CI is a busy 2-core box;
# a passing run never waits it out (wait_until returns as soon as the condition holds).
WAIT_S = 60


async def wait_until(pred, timeout, step=0.02):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if pred():
            return True
        await asyncio.sleep(step)
    return pred()


async def tcp_server(devices):
    port = free_port()
    server = ModbusTcpServer(devices, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    return server, port


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 300))     # a bound, never a speed claim


# ------------------------------------------------------------------ tests

def test_tcp_device_readings_decoded_with_dedup_keys(tmp_path):
    async def main():
        f32 = mdec.encode_raw("f32", 21.5, "big", "little")
        dev = SimDevice(id=3, simdata=[SimData(0, values=[0] * 4 + [1234] + f32 + [0] * 10,
                                               datatype=DataType.REGISTERS)])
        server, port = await tcp_server(dev)
        cfg = make_config(tmp_path, f"""
[[modbus.buses]]
name = "net"
type = "tcp"
host = "127.0.0.1"
port = {port}
[[modbus.devices]]
name = "gauge"
bus = "net"
node = 9001
device_id = 3
poll_s = 0.1
timeout_s = 5.0
[[modbus.devices.points]]
chan = "water_level.0"
table = "holding"
address = 4
type = "i16"
scale = 0.001
offset = 1.0
[[modbus.devices.points]]
chan = "temperature.0"
table = "holding"
address = 5
type = "f32"
word_order = "little"
""")
        loop = asyncio.get_running_loop()
        col = Collector(loop.time)
        bridge = ModbusBridge(cfg, col.sink, col.alloc_seq)
        task = asyncio.create_task(bridge.run())
        try:
            assert await wait_until(lambda: len(col.readings(9001)) >= 6, WAIT_S)
            await server.async_setValues(3, 3, 4, [2000])
            assert await wait_until(
                lambda: any(r.value == 3000 for _t, r in col.readings(9001)), WAIT_S)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await server.shutdown()
        rs = [r for _t, r in col.readings(9001)]
        assert rs[0] == Reading(9001, 1, 0, WATER, rs[0].t, 2234, None, 0)   # 1.234 m + 1 m
        assert rs[1] == Reading(9001, 1, WINDOW, TEMP, rs[1].t, 215, None, 0)   # 21.5 degC
        keys = [(r.node, r.seq, r.idx) for r in rs]
        assert len(keys) == len(set(keys)), "dedup keys repeat"
        # a channel's consecutive polls: consecutive idx under the window's seq
        assert [r.idx for r in rs[::2]] == list(range(len(rs) // 2))
        assert [r.idx for r in rs[1::2]] == list(range(WINDOW, WINDOW + len(rs) // 2))
        st = bridge.stats()["gauge"]
        assert st["online"] is True and st["timeouts"] == 0 and st["polls_ok"] >= 3
    run(main())


def test_exception_response_is_reported_with_its_code(tmp_path):
    async def main():
        dev = SimDevice(id=1, simdata=[SimData(0, values=[7] * 10,
                                               datatype=DataType.REGISTERS)])
        server, port = await tcp_server(dev)
        cfg = make_config(tmp_path, f"""
[[modbus.buses]]
name = "net"
type = "tcp"
host = "127.0.0.1"
port = {port}
[[modbus.devices]]
name = "gauge"
bus = "net"
node = 9001
device_id = 1
poll_s = 0.1
[[modbus.devices.points]]
chan = "water_level.0"
table = "holding"
address = 2
type = "u16"
[[modbus.devices.points]]
chan = "water_level.1"
table = "holding"
address = 500
type = "u16"
""")
        loop = asyncio.get_running_loop()
        col = Collector(loop.time)
        bridge = ModbusBridge(cfg, col.sink, col.alloc_seq)
        task = asyncio.create_task(bridge.run())
        try:
            assert await wait_until(lambda: len(col.readings(9001)) >= 4, WAIT_S)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await server.shutdown()
        rs = [r for _t, r in col.readings(9001)]
        good = [r for r in rs if r.chan == WATER]
        bad = [r for r in rs if r.chan == channels.chan_id(3, 1)]
        assert good and all(r.value == 7000 and r.fault is None for r in good)   # 7 m
        # address 500 is outside the device: exception 2 (illegal data address)
        assert bad and all(r.value is None and r.fault == mdec.fault_exception(2)
                           for r in bad)
        st = bridge.stats()["gauge"]
        assert st["last_exception_code"] == 2 and st["exceptions"] >= 2
        assert st["online"] is True    # it answers: an exception is not a dead device
    run(main())


# The silent device's timeout also bounds its answers while it is "ok": a loaded box
# that delays one answer past it twice in a row takes the device offline once more and
# fails the test. 2 s of margin for a loopback pty; each silent poll costs that much.
DEAD_TIMEOUT = 2.0


def test_silent_device_goes_offline_recovers_and_others_keep_their_schedule(tmp_path):
    """Bus A (RTU pty): device 1 goes silent then answers again; device 2 on the same bus
    keeps answering. Bus B (TCP): a gauge polled every 0.2 s must not notice anything."""
    async def main():
        loop = asyncio.get_running_loop()
        fake = FakeRtuDevices(loop)
        fake.modes = {1: "ok", 2: "ok"}
        fake.regs = {(1, 0): 111, (2, 0): 222}
        server, port = await tcp_server(
            SimDevice(id=1, simdata=[SimData(0, values=[5] * 4, datatype=DataType.REGISTERS)]))
        cfg = make_config(tmp_path, f"""
[[modbus.buses]]
name = "rs485"
type = "rtu"
port = "{fake.path}"
baudrate = 9600
[[modbus.buses]]
name = "net"
type = "tcp"
host = "127.0.0.1"
port = {port}
[[modbus.devices]]
name = "flaky"
bus = "rs485"
node = 9001
device_id = 1
poll_s = 0.2
timeout_s = {DEAD_TIMEOUT}
retries = 1
retry_backoff_s = 0.05
offline_probe_max_s = 0.5
[[modbus.devices.points]]
chan = "water_level.0"
table = "holding"
address = 0
type = "u16"
[[modbus.devices]]
name = "neighbour"
bus = "rs485"
node = 9002
device_id = 2
poll_s = 0.2
timeout_s = 0.25
[[modbus.devices.points]]
chan = "water_level.0"
table = "holding"
address = 0
type = "u16"
[[modbus.devices]]
name = "other-bus"
bus = "net"
node = 9003
device_id = 1
poll_s = 0.2
timeout_s = 0.25
[[modbus.devices.points]]
chan = "water_level.0"
table = "holding"
address = 0
type = "u16"
""")
        states = []
        col = Collector(loop.time)
        bridge = ModbusBridge(cfg, col.sink, col.alloc_seq,
                              on_state=lambda s: states.append((loop.time(), s)))
        task = asyncio.create_task(bridge.run())
        try:
            assert await wait_until(lambda: len(col.readings(9001)) >= 3, WAIT_S)
            fake.modes[1] = "silent"
            assert await wait_until(lambda: bridge.stats()["flaky"]["online"] is False, WAIT_S)
            # While the flaky device stays silent (it does until we say so), its
            # neighbour on the same bus and the gauge on the other bus keep delivering:
            # neither waits for the dead device. Counted in readings, not in seconds
            # (the schedule's gaps in wall time are a figure for bench/, not a test).
            n_2, n_3 = len(col.readings(9002)), len(col.readings(9003))
            assert await wait_until(lambda: len(col.readings(9002)) >= n_2 + 5
                                    and len(col.readings(9003)) >= n_3 + 5, WAIT_S)
            assert bridge.stats()["flaky"]["online"] is False
            # and the offline device keeps being probed (timeouts go on counting)
            t_0 = bridge.stats()["flaky"]["timeouts"]
            assert await wait_until(lambda: bridge.stats()["flaky"]["timeouts"] >= t_0 + 1,
                                    WAIT_S)
            n_before = len(col.readings(9001))
            fake.modes[1] = "ok"
            assert await wait_until(lambda: bridge.stats()["flaky"]["online"] is True, WAIT_S)
            assert await wait_until(lambda: len(col.readings(9001)) >= n_before + 3, WAIT_S)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await server.shutdown()
            fake.close()

        st = bridge.stats()["flaky"]
        assert st["timeouts"] >= 3 and st["went_offline"] == 1 and st["crc_errors"] == 0
        assert [s.online for _t, s in states if s.device == "flaky"] == [True, False, True]
        assert [s.reason for _t, s in states if s.device == "flaky"][1] == "timeout"
        # RTU inter-frame silence: 3.5 chars at 9600 baud = 4 ms after each answer
        gap = 3.5 * 11 / 9600
        answered = sorted(fake.answered_at)
        for t_req, _dev in fake.requests:
            prior = [a for a in answered if a <= t_req]
            if prior:
                assert t_req - prior[-1] >= gap * 0.9
    run(main())


def test_crc_errors_are_counted_and_take_the_device_offline(tmp_path):
    async def main():
        loop = asyncio.get_running_loop()
        fake = FakeRtuDevices(loop)
        fake.modes = {4: "badcrc"}
        cfg = make_config(tmp_path, f"""
[[modbus.buses]]
name = "rs485"
type = "rtu"
port = "{fake.path}"
baudrate = 38400
[[modbus.devices]]
name = "noisy"
bus = "rs485"
node = 9004
device_id = 4
poll_s = 0.2
timeout_s = 3.0
retries = 1
retry_backoff_s = 0.02
[[modbus.devices.points]]
chan = "water_level.0"
table = "holding"
address = 0
type = "u16"
scale = 0.001
""")
        col = Collector(loop.time)
        states = []
        bridge = ModbusBridge(cfg, col.sink, col.alloc_seq, on_state=states.append)
        assert cfg.modbus.buses[0].inter_frame_gap_s == 0.00175
        task = asyncio.create_task(bridge.run())
        try:
            assert await wait_until(lambda: bridge.stats()["noisy"]["online"] is False, WAIT_S)
            fake.modes[4] = "ok"
            fake.regs[(4, 0)] = 77
            assert await wait_until(lambda: bridge.stats()["noisy"]["online"] is True, WAIT_S)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            fake.close()
        st = bridge.stats()["noisy"]
        # a broken CRC is known only when pymodbus gives up at timeout_s (it drops the
        # frame and waits): 3 s, so that a late answer on a loaded box is not a timeout
        assert st["crc_errors"] >= 2 and st["timeouts"] == 0
        assert states[0].online is False and states[0].reason == "crc error"
        assert [r.value for _t, r in col.readings(9004)][:1] == [77]
    run(main())


def test_rtu_against_a_pymodbus_serial_server(tmp_path):
    async def main():
        loop = asyncio.get_running_loop()
        server_path, client_path, close = pty_link(loop)
        dev = SimDevice(id=7, simdata=[SimData(0, values=[0, 0xFFF6, 0x4060, 0],
                                               datatype=DataType.REGISTERS)])
        server = ModbusSerialServer(dev, framer=FramerType.RTU, port=server_path,
                                    baudrate=19200)
        await server.serve_forever(background=True)
        cfg = make_config(tmp_path, f"""
[[modbus.buses]]
name = "rs485"
type = "rtu"
port = "{client_path}"
baudrate = 19200
parity = "N"
[[modbus.devices]]
name = "radar"
bus = "rs485"
node = 9001
device_id = 7
poll_s = 0.1
[[modbus.devices.points]]
chan = "displacement.0"
table = "holding"
address = 1
type = "i16"
scale = 0.1
[[modbus.devices.points]]
chan = "water_level.0"
table = "input"
address = 2
type = "f32"
""")
        col = Collector(loop.time)
        bridge = ModbusBridge(cfg, col.sink, col.alloc_seq)
        task = asyncio.create_task(bridge.run())
        try:
            assert await wait_until(lambda: len(col.readings(9001)) >= 4, WAIT_S)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await server.shutdown()
            close()
        vals = {r.chan: r.value for _t, r in col.readings(9001)}
        assert vals == {channels.chan_id(2, 0): -100, WATER: 3500}   # -1.0 mm, 3.5 m
    run(main())


def test_trip_on_a_modbus_channel_drives_the_siren_coil(tmp_path):
    pytest.importorskip("protocol.trip", reason="protocol/trip.py (the trip engine) not there yet")

    async def main():
        gauge = SimDevice(id=1, simdata=[SimData(0, values=[1000] * 8,
                                                 datatype=DataType.REGISTERS)])
        relay = SimDevice(id=2, simdata=[SimData(0, values=[0] * 4,
                                                 datatype=DataType.REGISTERS)])
        gs, gport = await tcp_server(gauge)
        rs, rport = await tcp_server(relay)
        cfg = make_config(tmp_path, f"""
[[modbus.buses]]
name = "gauge-net"
type = "tcp"
host = "127.0.0.1"
port = {gport}
[[modbus.buses]]
name = "relay-net"
type = "tcp"
host = "127.0.0.1"
port = {rport}
[[modbus.devices]]
name = "gauge"
bus = "gauge-net"
node = 9001
device_id = 1
poll_s = 0.1
[[modbus.devices.points]]
chan = "water_level.0"
table = "holding"
address = 0
type = "u16"
scale = 0.001
[[modbus.devices.rules]]
id = 1
chan = "water_level.0"
kind = "threshold"
level = "orange"
op = "above"
threshold = 3.5
hysteresis = 0.1
persist_s = 0
hold_s = 0
[[modbus.devices]]
name = "siren-relay"
bus = "relay-net"
node = 9002
device_id = 2
poll_s = 0.5
[[modbus.devices.points]]
chan = "supply.0"
table = "holding"
address = 1
type = "u16"
[modbus.alarm_output]
device = "siren-relay"
address = 0
min_level = "orange"
""")
        loop = asyncio.get_running_loop()
        col = Collector(loop.time)
        bridge = ModbusBridge(cfg, col.sink, col.alloc_seq)
        task = asyncio.create_task(bridge.run())

        async def coil():
            return bool((await rs.async_getValues(2, 1, 0, 1))[0])
        try:
            assert await wait_until(lambda: bridge.siren_stats()["written"] is False, WAIT_S)
            assert not await coil()
            await gs.async_setValues(1, 3, 0, [4200])           # 4.2 m: above 3.5 m
            assert await wait_until(lambda: bridge.siren_stats()["written"] is True, WAIT_S)
            assert await coil(), "siren coil not set on the relay"
            await gs.async_setValues(1, 3, 0, [3000])           # below 3.5 - 0.1 m
            assert await wait_until(lambda: bridge.siren_stats()["written"] is False, WAIT_S)
            assert not await coil(), "siren coil not cleared"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await gs.shutdown()
            await rs.shutdown()
        alarms = col.alarms()
        assert [(a.event, a.level, a.prev_level) for a in alarms] == [(1, 3, 0), (3, 0, 3)]
        assert all(a.node == 9001 and a.chan == WATER and a.rule_id == 1 for a in alarms)
        trip = alarms[0]
        assert trip.value == 4200 and trip.threshold == 3500
        # the alarm has a seq of its own (its key is (node, seq, index)), apart from the
        # window of polls whose reading tripped it
        rs = [r for _t, r in col.readings(9001)]
        assert 4200 in [r.value for r in rs] and trip.seq not in {r.seq for r in rs}
    run(main())


def test_bridge_commits_into_the_store_and_seqs_survive_a_restart(tmp_path):
    """The wiring the daemon uses: sink = Store.commit, seqs from Store.next_seq (both in a
    worker thread so fsync never blocks the event loop)."""
    import sqlite3

    from gateway.store import Store

    async def main():
        dev = SimDevice(id=1, simdata=[SimData(0, values=[4000, 0, 0, 0],
                                               datatype=DataType.REGISTERS)])
        server, port = await tcp_server(dev)
        cfg = make_config(tmp_path, f"""
[[modbus.buses]]
name = "net"
type = "tcp"
host = "127.0.0.1"
port = {port}
[[modbus.devices]]
name = "gauge"
bus = "net"
node = 9001
device_id = 1
poll_s = 0.1
[[modbus.devices.points]]
chan = "water_level.0"
table = "holding"
address = 0
type = "u16"
scale = 0.001
[[modbus.devices.rules]]
id = 1
chan = "water_level.0"
kind = "threshold"
level = "red"
op = "above"
threshold = 3.5
""")
        db = str(tmp_path / "store.db")
        try:
            for _run in range(2):          # a second run is a gateway restart
                store = Store(db)

                async def sink(records, store=store):
                    await asyncio.to_thread(store.commit, records)

                async def alloc(node, store=store):
                    return await asyncio.to_thread(store.next_seq, node)

                bridge = ModbusBridge(cfg, sink, alloc)
                task = asyncio.create_task(bridge.run())
                await wait_until(lambda b=bridge: b.stats()["gauge"]["polls_ok"] >= 3, WAIT_S)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                store.close()
        finally:
            await server.shutdown()
        con = sqlite3.connect(db)
        rows = con.execute("SELECT node, seq, idx, value FROM readings ORDER BY seq, idx").fetchall()
        alarms = con.execute("SELECT node, seq, level FROM alarms").fetchall()
        con.close()
        windows = sorted({r[1] for r in rows})
        alarm_seqs = [a[1] for a in alarms]
        # a restart opens a new window under a new seq: no seq is reused, by readings or alarms
        assert len(rows) >= 6 and len(windows) == 2, "a seq was reused after restart"
        assert not set(windows) & set(alarm_seqs)
        # no gaps either: a poll under way when the bridge is cancelled still commits
        assert sorted(windows + alarm_seqs) == list(range(1, 5))
        for w in windows:
            assert [r[2] for r in rows if r[1] == w] == list(range(sum(r[1] == w for r in rows)))
        assert all(r[0] == 9001 and r[3] == 4000 for r in rows)
        # each run starts a fresh engine: the red trip is raised once per run
        assert [a[2] for a in alarms] == [4, 4]
    run(main())


def test_missing_serial_port_and_refused_tcp_are_offline_not_a_crash(tmp_path):
    async def main():
        cfg = make_config(tmp_path, f"""
[[modbus.buses]]
name = "usb"
type = "rtu"
port = "{tmp_path / 'ttyUSB-unplugged'}"
[[modbus.buses]]
name = "net"
type = "tcp"
host = "127.0.0.1"
port = {free_port()}
[[modbus.devices]]
name = "a"
bus = "usb"
node = 9001
device_id = 1
poll_s = 0.1
timeout_s = 0.2
retries = 1
retry_backoff_s = 0.01
[[modbus.devices.points]]
chan = "water_level.0"
table = "holding"
address = 0
type = "u16"
[[modbus.devices]]
name = "b"
bus = "net"
node = 9002
device_id = 1
poll_s = 0.1
timeout_s = 0.2
retries = 0
[[modbus.devices.points]]
chan = "water_level.0"
table = "holding"
address = 0
type = "u16"
""")
        loop = asyncio.get_running_loop()
        col = Collector(loop.time)
        states = []
        bridge = ModbusBridge(cfg, col.sink, col.alloc_seq, on_state=states.append)
        task = asyncio.create_task(bridge.run())
        try:
            assert await wait_until(lambda: all(s["online"] is False
                                                for s in bridge.stats().values()), WAIT_S)
            # and it goes on trying (two more failed connects each), not a 0.3 s sleep
            n = {k: s["connect_failures"] for k, s in bridge.stats().items()}
            assert await wait_until(lambda: all(s["connect_failures"] >= n[k] + 2
                                                for k, s in bridge.stats().items()), WAIT_S)
            assert not task.done(), "the bridge stopped"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert {(s.device, s.reason) for s in states} == {("a", "connect failed"),
                                                          ("b", "connect failed")}
        assert col.records == []
        assert all(s["connect_failures"] >= 2 and s["timeouts"] == 0
                   for s in bridge.stats().values())
    run(main())


def test_a_lost_reply_is_retried_and_the_device_stays_online(tmp_path):
    async def main():
        loop = asyncio.get_running_loop()
        fake = FakeRtuDevices(loop)
        fake.modes = {5: "every-other"}
        fake.regs = {(5, 0): 1500}
        cfg = make_config(tmp_path, f"""
[[modbus.buses]]
name = "rs485"
type = "rtu"
port = "{fake.path}"
baudrate = 19200
[[modbus.devices]]
name = "lossy"
bus = "rs485"
node = 9005
device_id = 5
poll_s = 0.2
timeout_s = 1.5
retries = 1
retry_backoff_s = 0.05
[[modbus.devices.points]]
chan = "water_level.0"
table = "holding"
address = 0
type = "u16"
scale = 0.001
""")
        col = Collector(loop.time)
        states = []
        bridge = ModbusBridge(cfg, col.sink, col.alloc_seq, on_state=states.append)
        task = asyncio.create_task(bridge.run())
        try:
            assert await wait_until(lambda: len(col.readings(9005)) >= 3, WAIT_S)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            fake.close()
        st = bridge.stats()["lossy"]
        assert [s.online for s in states] == [True], "a retried poll must not go offline"
        assert st["timeouts"] >= 3 and st["went_offline"] == 0
        assert all(r.value == 1500 for _t, r in col.readings(9005))
        # every reading needed its retry: one request lost, one answered, per reading
        n = len(col.readings(9005))
        assert len(fake.requests) >= 2 * n - 1
    run(main())


GAUGE_AND_RELAY = """
[[modbus.buses]]
name = "gauge-net"
type = "tcp"
host = "127.0.0.1"
port = {gport}
[[modbus.buses]]
name = "relay-net"
type = "tcp"
host = "127.0.0.1"
port = {rport}
[[modbus.devices]]
name = "gauge"
bus = "gauge-net"
node = 9001
device_id = 1
poll_s = 0.2
timeout_s = 1.0
retries = 0
offline_probe_max_s = 0.4
[[modbus.devices.points]]
chan = "water_level.0"
table = "holding"
address = 0
type = "u16"
scale = 0.001
[[modbus.devices.rules]]
id = 1
chan = "water_level.0"
kind = "threshold"
level = "red"
op = "above"
threshold = 3.5
hysteresis = 0.1
hold_s = {hold}
[[modbus.devices]]
name = "siren-relay"
bus = "relay-net"
node = 9002
device_id = 2
poll_s = 0.2
timeout_s = 1.0
retries = 0
offline_probe_max_s = 0.4
[[modbus.devices.points]]
chan = "supply.0"
table = "holding"
address = 1
type = "u16"
[modbus.alarm_output]
device = "siren-relay"
address = 0
min_level = "orange"
"""


def relay_device():
    return SimDevice(id=2, simdata=[SimData(0, values=[0] * 4, datatype=DataType.REGISTERS)])


def test_siren_write_waits_for_an_unreachable_relay_and_lands_when_it_is_back(tmp_path):
    pytest.importorskip("protocol.trip", reason="protocol/trip.py (the trip engine) not there yet")

    async def main():
        gs, gport = await tcp_server(SimDevice(id=1, simdata=[
            SimData(0, values=[4000] * 4, datatype=DataType.REGISTERS)]))
        rport = free_port()                       # nothing listens there yet
        cfg = make_config(tmp_path, GAUGE_AND_RELAY.format(gport=gport, rport=rport, hold=0))
        loop = asyncio.get_running_loop()
        col = Collector(loop.time)
        bridge = ModbusBridge(cfg, col.sink, col.alloc_seq)
        task = asyncio.create_task(bridge.run())
        rs = None
        try:
            assert await wait_until(lambda: bridge.siren_stats()["wanted"] is True, WAIT_S)
            assert await wait_until(lambda: bridge.siren_stats()["write_failures"] >= 2, WAIT_S)
            assert bridge.siren_stats()["written"] is None
            rs = ModbusTcpServer(relay_device(), address=("127.0.0.1", rport))
            await rs.serve_forever(background=True)
            assert await wait_until(lambda: bridge.siren_stats()["written"] is True, WAIT_S)
            assert (await rs.async_getValues(2, 1, 0, 1))[0]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await gs.shutdown()
            if rs is not None:
                await rs.shutdown()
        assert [(a.event, a.level) for a in col.alarms()] == [(1, 4)]
    run(main())


def test_a_clear_due_by_hold_time_comes_from_the_ticker_when_the_gauge_falls_silent(
        tmp_path):
    pytest.importorskip("protocol.trip", reason="protocol/trip.py (the trip engine) not there yet")

    async def main():
        gs, gport = await tcp_server(SimDevice(id=1, simdata=[
            SimData(0, values=[4000] * 4, datatype=DataType.REGISTERS)]))
        rs, rport = await tcp_server(relay_device())
        cfg = make_config(tmp_path, GAUGE_AND_RELAY.format(gport=gport, rport=rport, hold=3))
        loop = asyncio.get_running_loop()
        col = Collector(loop.time)
        bridge = ModbusBridge(cfg, col.sink, col.alloc_seq)
        task = asyncio.create_task(bridge.run())
        try:
            assert await wait_until(lambda: bridge.siren_stats()["written"] is True, WAIT_S)
            await gs.async_setValues(1, 3, 0, [1000])     # back to 1 m: clear once held
            n = len(col.readings(9001))
            assert await wait_until(lambda: any(r.value == 1000 for _t, r in
                                                col.readings(9001)[n:]), WAIT_S)
            await gs.shutdown()                            # no more samples from here
            assert col.alarms()[-1].event == 1, "cleared before the hold time"
            assert await wait_until(lambda: bridge.siren_stats()["written"] is False, WAIT_S)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await rs.shutdown()
        assert [(a.event, a.level, a.prev_level) for a in col.alarms()] == [(1, 4, 0), (3, 0, 4)]
        assert bridge.stats()["gauge"]["online"] is False
    run(main())


def test_readings_the_sink_refused_go_with_the_next_delivery(tmp_path):
    async def main():
        server, port = await tcp_server(SimDevice(id=1, simdata=[
            SimData(0, values=[2500] * 4, datatype=DataType.REGISTERS)]))
        cfg = make_config(tmp_path, f"""
[[modbus.buses]]
name = "net"
type = "tcp"
host = "127.0.0.1"
port = {port}
[[modbus.devices]]
name = "gauge"
bus = "net"
node = 9001
device_id = 1
poll_s = 0.1
[[modbus.devices.points]]
chan = "water_level.0"
table = "holding"
address = 0
type = "u16"
""")
        loop = asyncio.get_running_loop()
        col = Collector(loop.time)
        calls = []

        async def flaky_sink(records):     # the store is busy for the first two commits
            calls.append(len(records))
            if len(calls) <= 2:
                raise OSError("database is locked")
            await col.sink(records)

        bridge = ModbusBridge(cfg, flaky_sink, col.alloc_seq)
        task = asyncio.create_task(bridge.run())
        try:
            assert await wait_until(lambda: len(col.readings(9001)) >= 5, WAIT_S)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await server.shutdown()
        assert calls[:3] == [1, 2, 3]
        keys = [(r.seq, r.idx) for _t, r in col.readings(9001)]
        # one window of polls (gateway.modbus.WINDOW): seq 1, the poll's number as idx
        assert keys == [(1, k) for k in range(len(keys))], "readings lost or out of order"
        assert bridge.sink_stats() == {"errors": 2, "unsent": 0, "readings_dropped": 0}
    run(main())
