"""The firmware's Modbus RTU master, cross-checked against a real pymodbus RTU server
on a pty pair, and against hand-written misbehaving devices on a pty (silent, bad CRC,
truncated, wrong unit) that pymodbus cannot be made to imitate."""
import os
import struct
import threading

import pytest
from fake_hw import HostClock
from hypothesis import given, settings
from hypothesis import strategies as st
from modbus_sim import RtuServer
from pymodbus.framer import FramerRTU

from firmware import faults, halsetup
from firmware.drivers.modbus_rtu import ModbusMaster, crc16
from firmware.drivers.rs485_sensor import Rs485Sensor
from firmware.hal import Hal, Output
from protocol import channels

HOLDING = [1000 + i for i in range(20)]
INPUT = [2000 + i for i in range(10)]
WATER = channels.chan_id(channels.kind_by_name("water_level"))
CRACK = channels.chan_id(channels.kind_by_name("displacement"))


@pytest.fixture
def host_hal(fake_machine):
    return Hal(machine=fake_machine, clock=HostClock())


@pytest.fixture
def master_on_pty(fake_machine, host_hal, pty_pair):
    """(ModbusMaster on the pty master fd with a DE pin, slave path, DE fake pin)."""
    fd, slave = pty_pair
    fake_machine.attach(2, fd)
    uart = halsetup.uart(host_hal, 2, 19200)
    de = Output(halsetup.pin_out(host_hal, 4), active=1)
    # generous: a loaded CI box may be slow to schedule the device's thread; only the
    # silent-device test waits the timeout out, and it sets its own
    m = ModbusMaster(uart, host_hal, de=de, baudrate=19200, timeout_ms=1500, retries=1)
    return m, slave, fake_machine.pin(4)


@pytest.fixture
def server(master_on_pty):
    _, slave, _ = master_on_pty
    s = RtuServer(slave, HOLDING, INPUT)
    yield s
    s.close()


def test_crc16_known_vectors():
    # a read of 2 holding registers from unit 1 at 0 is 01 03 00 00 00 02 C4 0B on the wire
    c = crc16(bytes([1, 3, 0, 0, 0, 2]))
    assert bytes([c & 0xFF, c >> 8]) == b"\xc4\x0b"
    assert crc16(b"123456789") == 0x4B37  # CRC-16/MODBUS check value


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=256))
def test_crc16_agrees_with_pymodbus(data):
    wire = struct.pack(">H", FramerRTU.compute_CRC(data))  # pymodbus returns it byte-swapped
    c = crc16(data)
    assert bytes([c & 0xFF, c >> 8]) == wire


def test_reads_holding_and_input_registers_from_pymodbus(master_on_pty, server):
    m, _, de = master_on_pty
    out = [0] * 20
    assert m.read_holding(1, 0, 20, out) == faults.OK
    assert out == HOLDING
    assert m.read_input(1, 3, 4, out) == faults.OK
    assert out[:4] == INPUT[3:7]
    server.set_holding(5, [0xBEEF])
    assert m.read_holding(1, 5, 1, out) == faults.OK and out[0] == 0xBEEF
    assert m.requests == 3 and m.no_response == m.bad_crc == 0
    # DE went high for each request and is low again, so the bus is free for replies
    assert de.writes.count(1) == 3 and de.value() == 0


def test_illegal_address_is_exception_code_2_not_retried(master_on_pty, server):
    m, _, _ = master_on_pty
    out = [0] * 4
    fault = m.read_holding(1, 100, 4, out)
    assert faults.kind(fault) == faults.MODBUS_EXCEPTION and faults.detail(fault) == 2
    assert m.requests == 1 and m.exceptions == 1
    assert out == [0] * 4  # nothing made up


def test_bad_requests_are_refused_before_the_bus(master_on_pty):
    m, _, _ = master_on_pty
    with pytest.raises(ValueError, match="1..247"):
        m.read_holding(0, 0, 1, [0])
    with pytest.raises(ValueError, match="1..125"):
        m.read_holding(1, 0, 126, [0] * 126)
    with pytest.raises(ValueError, match="out holds 1"):
        m.read_holding(1, 0, 2, [0])
    assert m.requests == 0


def test_silent_device_is_no_response_after_timeout_and_retry(master_on_pty, host_hal):
    m, slave, _ = master_on_pty
    m.timeout_ms = 150
    listener = os.open(slave, os.O_RDWR | os.O_NOCTTY)
    try:
        out = [7]
        assert m.read_holding(3, 0, 1, out) == faults.NO_RESPONSE
        assert out == [7] and m.requests == 2 and m.no_response == 2
        seen = os.read(listener, 64)
        req = bytes([3, 3, 0, 0, 0, 1])
        c = crc16(req)
        assert seen == 2 * (req + bytes([c & 0xFF, c >> 8]))
    finally:
        os.close(listener)


class RawDevice:
    """A hand-written device on the pty slave: answers each 8-byte request with reply(req)."""

    def __init__(self, slave, reply):
        self.fd = os.open(slave, os.O_RDWR | os.O_NOCTTY)
        self.reply = reply
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        import select
        buf = b""
        while not self.stop:
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if not r:
                continue
            buf += os.read(self.fd, 64)
            while len(buf) >= 8:
                req, buf = buf[:8], buf[8:]
                os.write(self.fd, self.reply(req))

    def close(self):
        self.stop = True
        self.thread.join(2)
        os.close(self.fd)


def frame(body):
    c = crc16(body)
    return body + bytes([c & 0xFF, c >> 8])


@pytest.mark.parametrize("reply, fault, counter", [
    (lambda q: frame(bytes([q[0], 3, 2, 0x12, 0x34]))[:-1] + b"\x00", faults.BAD_CRC, "bad_crc"),
    (lambda q: frame(bytes([q[0], 3, 2, 0x12, 0x34]))[:4], faults.BAD_RESPONSE, "bad_response"),
    (lambda q: frame(bytes([9, 3, 2, 0x12, 0x34])), faults.BAD_RESPONSE, "bad_response"),
    (lambda q: frame(bytes([q[0], 3, 4, 0, 1, 0, 2])), faults.BAD_RESPONSE, "bad_response"),
])
def test_misbehaving_devices_give_faults_and_are_retried(master_on_pty, reply, fault, counter):
    m, slave, _ = master_on_pty
    m.timeout_ms = 400  # a truncated reply is only judged when the timeout runs out
    dev = RawDevice(slave, reply)
    try:
        out = [0]
        assert m.read_holding(1, 0, 1, out) == fault
        assert out == [0] and m.requests == 2 and getattr(m, counter) == 2
    finally:
        dev.close()


def test_recovers_after_a_corrupted_reply(master_on_pty):
    m, slave, _ = master_on_pty
    n = {"i": 0}

    def flaky(q):
        n["i"] += 1
        good = frame(bytes([q[0], 3, 2, 0x01, 0x02]))
        return good[:-1] + bytes([good[-1] ^ 0xFF]) if n["i"] == 1 else good

    dev = RawDevice(slave, flaky)
    try:
        out = [0]
        assert m.read_holding(1, 0, 1, out) == faults.OK and out == [0x0102]
        assert m.bad_crc == 1 and m.requests == 2
    finally:
        dev.close()


def test_exception_from_a_raw_device(master_on_pty):
    m, slave, _ = master_on_pty
    dev = RawDevice(slave, lambda q: frame(bytes([q[0], 0x84, 4])))
    try:
        fault = m.read_input(1, 0, 1, [0])
        assert fault == faults.modbus_exception(4) and faults.name(fault) == "modbus_exception(4)"
    finally:
        dev.close()


# --- configured RS485 sensors against pymodbus ----------------------------------------

def sensor_server(master_on_pty, holding):
    _, slave, _ = master_on_pty
    return RtuServer(slave, holding, [0])


def test_qdy30a_preset_reads_decimals_and_value_in_one_request(master_on_pty):
    m, _, _ = master_on_pty
    regs = [1, 3, 0, 2, 1502, 0, 2000]  # address, baud, unit, decimals=2, value=15.02 m
    srv = sensor_server(master_on_pty, regs)
    try:
        s = Rs485Sensor(m, WATER, {"preset": "qdy30a", "unit": 1})
        assert s.read() == (15020, faults.OK)  # 15.020 m in mm
        assert m.requests == 1
        srv.set_holding(3, [3])
        srv.set_holding(4, [0xFFFF & -250])   # int16 -0.250 m
        assert s.read() == (-250, faults.OK)
        srv.set_holding(3, [9])                # a decimals value no device means
        assert s.read() == (None, faults.SENSOR_ERROR)
    finally:
        srv.close()


def test_sensor_types_word_order_ranges_and_invalid_values(master_on_pty):
    m, _, _ = master_on_pty
    f_hi, f_lo = struct.unpack(">HH", struct.pack(">f", 12.3456))
    regs = [0x0001, 0xE240, f_hi, f_lo, 0xE240, 0x0001, 32767] + [0] * 23 + [1]  # 30: decimals
    srv = sensor_server(master_on_pty, regs)
    try:
        i32 = Rs485Sensor(m, CRACK, {"unit": 1, "value_reg": 0, "type": "int32", "decimals": 3})
        assert i32.read() == (12346, faults.OK)       # 123.456 mm -> 0.01 mm
        f32 = Rs485Sensor(m, CRACK, {"unit": 1, "value_reg": 2, "type": "float32", "decimals": 0})
        assert f32.read() == (1235, faults.OK)
        little = Rs485Sensor(m, CRACK, {"unit": 1, "value_reg": 4, "type": "uint32",
                                        "word_order": "little", "decimals": 3})
        assert little.read() == (12346, faults.OK)
        err = Rs485Sensor(m, CRACK, {"unit": 1, "value_reg": 6, "decimals": 0, "invalid": [32767]})
        assert err.read() == (None, faults.SENSOR_ERROR)
        bounded = Rs485Sensor(m, CRACK, {"unit": 1, "value_reg": 0, "type": "int32", "decimals": 3,
                                         "max": 10000})
        assert bounded.read() == (None, faults.OVER_RANGE)
        cm = Rs485Sensor(m, WATER, {"unit": 1, "value_reg": 7, "decimals_reg": 30, "unit_exp": -2,
                                    "min": 1})
        assert cm.read() == (None, faults.UNDER_RANGE)  # 0.0 cm below the configured minimum
        before = m.requests
        srv.set_holding(7, [1234])                       # 123.4 cm = 1.234 m
        assert cm.read() == (1234, faults.OK)
        assert m.requests == before + 2                  # decimals too far away: its own read
        gone = Rs485Sensor(m, CRACK, {"unit": 1, "value_reg": 200, "decimals": 0})
        assert gone.read() == (None, faults.modbus_exception(2))
    finally:
        srv.close()


@pytest.mark.parametrize("cfg, key", [
    ({"value_reg": 4, "decimals": 1}, "'unit'"),
    ({"unit": 1, "value_reg": 4}, "'decimals'"),
    ({"unit": 1, "value_reg": 4, "decimals": 1, "decimals_reg": 3}, "'decimals'"),
    ({"unit": 1, "value_reg": 4, "decimals": 1, "type": "bcd"}, "'type'"),
    ({"unit": 1, "value_reg": 4, "decimals": 1, "function": 6}, "'function'"),
    ({"unit": 1, "preset": "acme"}, "'preset'"),
    ({"unit": 1, "value_reg": 4, "decimals": 1, "colour": "red"}, "'colour'"),
])
def test_sensor_config_errors_name_the_key(master_on_pty, cfg, key):
    m, _, _ = master_on_pty
    with pytest.raises(ValueError, match=key):
        Rs485Sensor(m, CRACK, cfg)


def test_echoing_transceiver_is_skipped_when_configured(fake_machine, host_hal, pty_pair):
    fd, slave = pty_pair
    fake_machine.attach(5, fd)
    m = ModbusMaster(halsetup.uart(host_hal, 5, 19200), host_hal, baudrate=19200, timeout_ms=1500,
                     retries=0, echo=True)
    # a transceiver whose receiver stays on hears our own request before the reply
    dev = RawDevice(slave, lambda q: q + frame(bytes([q[0], 4, 2, 0x00, 0x2A])))
    try:
        out = [0]
        assert m.read_input(1, 7, 1, out) == faults.OK and out == [42]
    finally:
        dev.close()


def test_de_is_held_until_the_last_stop_bit(fake_machine, clock, hal):
    """DE must not drop while the UART still shifts out the request's CRC."""
    char_us = 11 * 1000000 // 9600
    uart = halsetup.uart(hal, 6, 9600)
    sent_at = {}

    def busy_until_sent():
        return clock.us >= sent_at["end"]

    def device(data):
        sent_at["end"] = clock.us + len(data) * char_us  # the wire is slower than write()
        body = bytes([data[0], 3, 2, 0, 9])
        uart.feed(frame(body))

    uart.on_write = device
    uart.txdone = busy_until_sent

    class DePin:
        def __init__(self):
            self.off_at = []

        def on(self):
            pass

        def off(self):
            self.off_at.append(clock.us)

    de = DePin()
    m = ModbusMaster(uart, hal, de=de, baudrate=9600, timeout_ms=100)
    out = [0]
    assert m.read_holding(1, 0, 1, out) == faults.OK and out == [9]
    assert de.off_at[-1] >= sent_at["end"] + char_us


@pytest.mark.parametrize("idle_min", [1, 10, 17, 30])
def test_no_long_wait_after_an_idle_bus(fake_machine, clock, hal, idle_min):
    """ticks_us wraps every ~18 min: the 3.5-character gap must not turn into minutes."""
    uart = halsetup.uart(hal, 7, 9600)
    uart.on_write = lambda q: uart.feed(frame(bytes([q[0], 3, 2, 0, 1])))
    m = ModbusMaster(uart, hal, baudrate=9600, timeout_ms=100)
    out = [0]
    assert m.read_holding(1, 0, 1, out) == faults.OK
    clock.advance_ms(idle_min * 60 * 1000)
    t0 = clock.us
    assert m.read_holding(1, 0, 1, out) == faults.OK
    assert clock.us - t0 < 20000  # a few character times, not minutes
