"""The rig's Modbus gauge (hil/procs.py ModbusGauge): a real pymodbus TCP server on
loopback that serves the world's value, and goes silent on demand."""
import time

from pymodbus.client import ModbusTcpClient

from hil import world as W
from hil.procs import ModbusGauge


def read(port):
    c = ModbusTcpClient("127.0.0.1", port=port, timeout=10, retries=0)
    try:
        if not c.connect():
            return None
        return c.read_holding_registers(ModbusGauge.REGISTER, count=1, device_id=1).registers[0]
    finally:
        c.close()


def eventually(fn, want, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = fn()
        if got == want:
            return got
        time.sleep(0.01)
    return fn()


def test_gauge_serves_the_value_then_goes_silent_then_answers_again():
    g = ModbusGauge().serve()
    try:
        g.set(1234)
        assert eventually(lambda: read(g.port), 1234) == 1234
        g.set(-5)                                      # i16 on the wire
        assert eventually(lambda: read(g.port), 0xFFFB) == 0xFFFB
        g.silence()
        assert read(g.port) is None                    # connection refused
        g.set(2000)
        g.serve()
        assert eventually(lambda: read(g.port), 2000) == 2000
        assert {1234, -5, 2000} <= g.served
    finally:
        g.close()


def test_silent_fault_window():
    s = W.Sensor(W.Steady(1500), [W.Silent(3600, 7200)])
    assert not s.silent(3599) and s.silent(3600) and not s.silent(7200)
    assert s.sample(5000) == 1500                      # the world goes on; the device is mute
