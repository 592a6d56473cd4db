"""Fault codes a driver read returns next to its value.

A read is (value, fault). fault OK means value is a scaled int in the channel's unit
(protocol/channels.py); any other fault comes with value None, never a made-up
number, so a broken sensor can neither trip nor hide an alarm.

A Modbus exception keeps the device's exception code in the high byte
(MODBUS_EXCEPTION | code << 8), so the code survives to the status report."""
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

OK = const(0)
OPEN_CIRCUIT = const(1)      # sensor wire or wiper disconnected
OVER_RANGE = const(2)        # above the calibrated or electrical range
UNDER_RANGE = const(3)       # below the calibrated or electrical range
STUCK = const(4)             # the raw signal has stopped moving (or a switch stays closed)
NO_RESPONSE = const(5)       # a bus device did not answer in time
BAD_CRC = const(6)           # a reply arrived with a wrong CRC
MODBUS_EXCEPTION = const(7)  # the device answered with an exception; code in bits 8..15
BROKEN_LOOP = const(8)       # 4-20 mA loop current below 3.8 mA
BAD_RESPONSE = const(9)      # a reply of the wrong address, function or length, or truncated
SUPPLY_LOW = const(10)       # excitation or reference too low to measure against
SENSOR_ERROR = const(11)     # the device reported its own error value
NOT_AVAILABLE = const(12)    # the board has no such hardware

NAMES = ("ok", "open_circuit", "over_range", "under_range", "stuck", "no_response",
         "bad_crc", "modbus_exception", "broken_loop", "bad_response", "supply_low",
         "sensor_error", "not_available")


def modbus_exception(code):
    return MODBUS_EXCEPTION | ((code & 0xFF) << 8)


def kind(fault):
    """The fault without its detail byte: compare this against the constants."""
    return fault & 0xFF


def detail(fault):
    """The Modbus exception code carried by a MODBUS_EXCEPTION fault, else 0."""
    return fault >> 8


def name(fault):
    k = fault & 0xFF
    text = NAMES[k] if k < len(NAMES) else "fault_%d" % k
    if fault >> 8:
        return "%s(%d)" % (text, fault >> 8)
    return text
