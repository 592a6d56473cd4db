# Hardware-layer checks under the MicroPython unix port (run by
# tests/firmware/test_drivers_mpy.py, compiled with mpy-cross as on a board, with
# tests/mpy_fakes first on MICROPYPATH so `import machine` is the fake).
# argv[-1] is the repo root (board files). Modules are imported in the order a node
# boots: the board builds the hardware and is unloaded, then the drivers run.
# Prints one line per failed check and a JSON summary as the last line.
import gc
import json
import sys

import machine
import micropython

from firmware import faults, halsetup
from firmware.hal import Hal, Output

assert machine.__file__.endswith("machine.py"), "the fake machine is not first on the path"
ROOT = sys.argv[-1]
failures = []
checks = [0]


def check(name, got, want):
    checks[0] += 1
    if got != want:
        failures.append(name)
        print("FAIL %s: got %r, want %r" % (name, got, want))


def no_alloc(name, fn):
    """fn() must not touch the heap: the same rule as an IRQ handler."""
    checks[0] += 1
    micropython.heap_lock()
    try:
        fn()
        err = None
    except MemoryError as e:
        err = e
    finally:
        micropython.heap_unlock()
    if err is not None:
        failures.append(name)
        print("FAIL %s allocates: %r" % (name, err))


clock = machine.FakeClock(start_ms=5000)
machine.use_clock(clock)
hal = Hal(machine=machine, clock=clock, root=ROOT)

# --- boot: boards load from data and build the hardware; then the board is unloaded -----
gc.collect()
mem_boot = gc.mem_alloc()
from firmware import board  # noqa: E402

for name in ("esp32s3_devkitc", "rp2040_pico", "esp32_devkitc"):
    b = board.load(hal, name)
    check(name + " mcu", b.name, name)
    siren = b.output(hal, "siren")
    check(name + " siren off", siren.is_on(), False)
rain_pin = b.input_pin(hal, "rain")
adc_dw, adc_exc = b.adc(hal, "drawwire"), b.adc(hal, "excitation")
adc_loop, adc_bat = b.adc(hal, "loop420"), b.adc(hal, "battery")
rs485 = b.uart(hal, "rs485")
lora_uart = b.uart(hal, "lora", baudrate=19200)
gc.collect()
mem_with_board = gc.mem_alloc()
b = siren = board = None
sys.modules["firmware.board"].unload()
gc.collect()
freed_by_unload = mem_with_board - gc.mem_alloc()
check("board unload frees its code", freed_by_unload > 4000, True)

from firmware.drivers.adc_filter import AdcFilter  # noqa: E402
from firmware.drivers.drawwire import DrawWire  # noqa: E402
from firmware.drivers.loop420 import Loop420  # noqa: E402
from firmware.drivers.rain import RainGauge  # noqa: E402
from firmware.drivers.supply import Battery, BoardTemperature  # noqa: E402

# --- rain: the IRQ path allocates nothing --------------------------------------------------
gauge = RainGauge(rain_pin, hal, mm_per_tip=0.2)
fake_rain = machine.pin(27)


def bounce_burst():
    for _ in range(5):
        fake_rain.drive(0)
        fake_rain.drive(1)


bounce_burst()   # first call outside the lock: warms up the fake's own lookups
clock.advance_ms(1000)
no_alloc("rain irq", bounce_burst)
check("rain tips", gauge.read(), (4, faults.OK))
clock.advance_ms(100)
bounce_burst()   # within the 250 ms lockout of the last tip
check("rain debounce", gauge.read(), (0, faults.OK))

# --- ADC paths -----------------------------------------------------------------------------
wiper = AdcFilter(adc_dw, hal)
exc = AdcFilter(adc_exc, hal)
machine.adc(34).set_uv(1650000)
machine.adc(39).set_uv(1650000)
wiper.read_uv()
no_alloc("adc filter", wiper.read_uv)
dw = DrawWire(wiper, ((100000, 0), (900000, 50000)), excitation=exc, divider=(10000, 10000))
check("drawwire", dw.read(), (25000, faults.OK))
machine.adc(34).set_uv(0)
check("drawwire open", dw.read(), (None, faults.OPEN_CIRCUIT))

loop = Loop420(AdcFilter(adc_loop, hal), 100, 0, 10000)
machine.adc(35).set_uv(1200000)
check("loop 12 mA", loop.read(), (5000, faults.OK))
machine.adc(35).set_uv(300000)
check("loop broken", loop.read(), (None, faults.BROKEN_LOOP))
machine.adc(35).set_uv(2100000)
check("loop over", loop.read(), (None, faults.OVER_RANGE))

bat = Battery(AdcFilter(adc_bat, hal), (220000, 33000))
machine.adc(36).set_uv(1652000)
check("battery", bat.read(), (12665, faults.OK))
check("temperature none", BoardTemperature("esp32", hal=hal).read(), (None, faults.NOT_AVAILABLE))

from firmware.drivers.modbus_rtu import ModbusMaster, crc16  # noqa: E402
from firmware.drivers.rs485_sensor import Rs485Sensor  # noqa: E402

check("crc16", crc16(b"123456789"), 0x4B37)
frame = bytearray(b"\x01\x03\x00\x00\x00\x02")
no_alloc("crc16", lambda: crc16(frame))


# --- Modbus master against an in-memory device -------------------------------------------
def device(req):
    if crc16(req, 6) != req[6] | (req[7] << 8):
        return
    start = (req[2] << 8) | req[3]
    count = (req[4] << 8) | req[5]
    if start + count > 8:
        body = bytes([req[0], req[1] | 0x80, 2])
    else:
        regs = bytearray()
        for i in range(count):
            v = [1, 3, 0, 2, 1502, 0, 0, 0][start + i]
            regs.append(v >> 8)
            regs.append(v & 0xFF)
        body = bytes([req[0], req[1], 2 * count]) + bytes(regs)
    c = crc16(body)
    rs485.feed(body + bytes([c & 0xFF, c >> 8]))


rs485.on_write = device
de = Output(halsetup.pin_out(hal, 4))
mb = ModbusMaster(rs485, hal, de=de, timeout_ms=100)
out = [0] * 8
check("modbus holding", (mb.read_holding(1, 0, 5, out), out[:5]), (faults.OK, [1, 3, 0, 2, 1502]))
check("modbus exception", mb.read_holding(1, 6, 4, out), faults.modbus_exception(2))
sensor = Rs485Sensor(mb, 3 << 3, {"preset": "qdy30a", "unit": 1})
check("qdy30a", sensor.read(), (15020, faults.OK))
rs485.on_write = None
check("modbus silent", mb.read_holding(1, 0, 1, out), faults.NO_RESPONSE)
no_alloc("crc16 after use", lambda: crc16(frame))

# a node holds only what it uses: drop the bus modules before the radio checks
rs485.on_write = None
mb = sensor = device = ModbusMaster = Rs485Sensor = None
for _name in ("modbus_rtu", "rs485_sensor"):
    sys.modules.pop("firmware.drivers." + _name, None)
    delattr(sys.modules["firmware.drivers"], _name)
gc.collect()

# --- Ebyte: config over UART at 9600, sub-packet refusal, fixed prefix ---------------------
from firmware.radio import ebyte_config  # noqa: E402
from firmware.radio.ebyte import EbyteRadio  # noqa: E402
from firmware.radio.loopback import LoopbackRadio  # noqa: E402,F401  (must load on a device)

m0 = halsetup.pin_out(hal, 21)
m1 = halsetup.pin_out(hal, 22)
aux = halsetup.pin_in(hal, 23)
aux.source = lambda: 1
regs = bytearray(b"\x00\x00\x00\x62\x00\x17\x03")


def module(cmd):
    if lora_uart.baudrate != 9600 or m1.value() != 1:
        return
    if cmd[:3] == b"\xc1\x00\x07":
        lora_uart.feed(b"\xc1\x00\x07" + bytes(regs))
    elif cmd[0] == 0xC0:
        regs[:] = cmd[3:10]
        lora_uart.feed(b"\xc1" + cmd[1:])


lora_uart.on_write = module
radio = EbyteRadio(lora_uart, m0, m1, aux, hal, model="e22", baudrate=19200, sub_packet=64,
                   fixed=True, dest=(2, 0x17))
check("e22 apply", ebyte_config.apply(radio), True)
check("e22 regs", bytes(regs), b"\x00\x00\x00\x82\x80\x17\x43")
check("e22 read", ebyte_config.read_config(radio)["sub_packet"], 64)
check("uart back to data baud", lora_uart.baudrate, 19200)
lora_uart.on_write = None
lora_uart.take_tx()
check("send 61", radio.send(bytes(61)), True)
check("fixed prefix", lora_uart.take_tx()[:3], b"\x00\x02\x17")
check("refuse 62", radio.send(bytes(62)), False)

gc.collect()
print(json.dumps({"ok": not failures, "checks": checks[0], "failures": failures,
                  "board_unload_freed": freed_by_unload, "mem_free": gc.mem_free(),
                  "mem_alloc": gc.mem_alloc(), "mem_boot": mem_boot}))
