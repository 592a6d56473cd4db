"""An RS485 Modbus sensor described by configuration: radar or pressure level gauges,
crack meters, tilt meters.

Config (a dict, e.g. from the node's config file):
  unit          device address 1..247
  function      3 (holding, default) or 4 (input registers)
  value_reg     register of the measured value (0-based wire address)
  type          int16 (default), uint16, int32, uint32, float32
  word_order    "big" (high word first, default) or "little" for 32-bit types
  decimals      fixed number of decimal places of the raw value, or
  decimals_reg  register holding the decimal places (read with the value)
  unit_exp      the sensor's unit as a power of ten of the channel's unit
                (sensor in cm on a water-level channel in m: -2; mm on a
                displacement channel in mm: 0)
  min, max      valid range in channel units (scaled ints); outside -> fault
  invalid       raw values the device sends for "no measurement" (e.g. [32767])
  preset        a name from PRESETS whose keys fill in what the config leaves out

The value comes back as a scaled int in the channel's unit (protocol/channels.py).
Value and decimals registers are fetched in one transaction when they lie within
16 registers of each other (one radio-quiet bus exchange instead of two)."""
import array

from firmware import faults
from firmware.drivers.adc_filter import StuckCheck
from firmware.drivers.scaling import pow10_scale
from protocol import channels

TYPES = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}

# Register maps known well enough to name. QDY30A-type pressure level transmitters
# (NOTES-domain S17): decimals at 0x0003, value at 0x0004, holding registers; that the
# value is int16 is an assumption to check against the device's sheet.
PRESETS = {
    "qdy30a": {"function": 3, "value_reg": 4, "decimals_reg": 3, "type": "int16"},
}

_KEYS = ("unit", "function", "value_reg", "type", "word_order", "decimals", "decimals_reg",
         "unit_exp", "min", "max", "invalid", "preset", "stuck_reads", "chan")


def _err(key, msg):
    raise ValueError("rs485 sensor config key '%s': %s" % (key, msg))


class Rs485Sensor:
    def __init__(self, master, chan, config):
        cfg = {}
        preset = config.get("preset")
        if preset is not None:
            if preset not in PRESETS:
                _err("preset", "%r unknown: allowed %s" % (preset, ", ".join(sorted(PRESETS))))
            for k in PRESETS[preset]:
                cfg[k] = PRESETS[preset][k]
        for k in config:
            if k not in _KEYS:
                _err(k, "unknown key: allowed %s" % ", ".join(_KEYS))
            cfg[k] = config[k]
        unit = cfg.get("unit")
        if not isinstance(unit, int) or not 1 <= unit <= 247:
            _err("unit", "%r: allowed 1..247" % (unit,))
        fn = cfg.get("function", 3)
        if fn not in (3, 4):
            _err("function", "%r: allowed 3 (holding) or 4 (input)" % (fn,))
        reg = cfg.get("value_reg")
        if not isinstance(reg, int) or not 0 <= reg <= 0xFFFE:
            _err("value_reg", "%r: allowed 0..65534" % (reg,))
        typ = cfg.get("type", "int16")
        if typ not in TYPES:
            _err("type", "%r: allowed %s" % (typ, ", ".join(sorted(TYPES))))
        order = cfg.get("word_order", "big")
        if order not in ("big", "little"):
            _err("word_order", "%r: allowed big, little" % (order,))
        dec = cfg.get("decimals")
        dreg = cfg.get("decimals_reg")
        if (dec is None) == (dreg is None):
            _err("decimals", "give exactly one of decimals (fixed) or decimals_reg")
        if dec is not None and not (isinstance(dec, int) and 0 <= dec <= 6):
            _err("decimals", "%r: allowed 0..6" % (dec,))
        if dreg is not None and not (isinstance(dreg, int) and 0 <= dreg <= 0xFFFF):
            _err("decimals_reg", "%r: allowed 0..65535" % (dreg,))
        self.chan = chan
        self._exp = channels.info(chan)[2]
        self._master = master
        self._unit = unit
        self._fn = fn
        self._reg = reg
        self._type = typ
        self._width = TYPES[typ]
        self._little = order == "little"
        self._dec = dec
        self._dreg = dreg
        self._unit_exp = cfg.get("unit_exp", 0)
        self._min = cfg.get("min")
        self._max = cfg.get("max")
        self._invalid = tuple(cfg.get("invalid", ()))
        self._stuck = StuckCheck(cfg.get("stuck_reads", 0))
        self._regs = array.array("H", bytes(32))
        if dreg is not None and abs(dreg - reg) < 16 - self._width:
            self._first = min(reg, dreg)
            self._count = max(reg + self._width, dreg + 1) - self._first
        else:
            self._first = reg
            self._count = self._width
        self.last_raw = None
        self.last_decimals = dec

    def _raw(self, at):
        r = self._regs
        if self._width == 1:
            v = r[at]
            if self._type == "int16" and v & 0x8000:
                v -= 0x10000
            return v
        hi, lo = (r[at + 1], r[at]) if self._little else (r[at], r[at + 1])
        if self._type == "float32":
            import struct
            return struct.unpack(">f", bytes((hi >> 8, hi & 0xFF, lo >> 8, lo & 0xFF)))[0]
        v = (hi << 16) | lo
        if self._type == "int32" and v & 0x80000000:
            v -= 0x100000000
        return v

    def read(self):
        m = self._master
        fault = m.read(self._unit, self._fn, self._first, self._count, self._regs)
        if fault:
            return None, fault
        raw = self._raw(self._reg - self._first)
        dec = self._dec
        if self._dreg is not None:
            at = self._dreg - self._first
            if 0 <= at < self._count:
                dec = self._regs[at]
            else:
                fault = m.read(self._unit, self._fn, self._dreg, 1, self._regs)
                if fault:
                    return None, fault
                dec = self._regs[0]
            if dec > 6:
                return None, faults.SENSOR_ERROR
        self.last_raw = raw
        self.last_decimals = dec
        if raw in self._invalid:
            return None, faults.SENSOR_ERROR
        if self._stuck.update(raw):
            return None, faults.STUCK
        shift = self._unit_exp - dec - self._exp
        if self._type == "float32":
            if raw != raw or raw in (float("inf"), float("-inf")):
                return None, faults.SENSOR_ERROR
            x = raw * 10 ** shift
            value = int(x + 0.5) if x >= 0 else -int(-x + 0.5)
        else:
            value = pow10_scale(raw, shift)
        if self._min is not None and value < self._min:
            return None, faults.UNDER_RANGE
        if self._max is not None and value > self._max:
            return None, faults.OVER_RANGE
        return value, faults.OK
