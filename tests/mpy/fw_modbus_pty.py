# The firmware's Modbus RTU master on the MicroPython unix port, talking over a real
# pty to a pymodbus RTU server (tests/firmware/test_modbus_mpy.py starts it).
# argv: <device pty> <silent pty>. Prints a JSON line.
import json
import sys

import machine

from firmware import faults, halsetup
from firmware.drivers.modbus_rtu import ModbusMaster
from firmware.hal import Hal, Output

machine.attach(2, sys.argv[-2])
machine.attach(3, sys.argv[-1])
hal = Hal()  # the fake machine from tests/mpy_fakes, real time from the port's time module
bus = ModbusMaster(halsetup.uart(hal, 2, 19200), hal, de=Output(halsetup.pin_out(hal, 4)), baudrate=19200,
                   timeout_ms=2000, retries=1)
silent = ModbusMaster(halsetup.uart(hal, 3, 19200), hal, baudrate=19200, timeout_ms=100, retries=0)
out = [0] * 10
res = {}
res["holding"] = [bus.read_holding(1, 0, 10, out), list(out)]
res["input"] = [bus.read_input(1, 2, 3, out), out[:3]]
f = bus.read_holding(1, 100, 2, out)
res["exception"] = [faults.kind(f), faults.detail(f)]
res["silent"] = silent.read_holding(1, 0, 1, out)
res["de_low"] = machine.pin(4).value()
print(json.dumps(res))
