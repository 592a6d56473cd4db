"""4-20 mA transmitter (pressure/level) read as the voltage across a shunt resistor.

Loop current below 3.8 mA is a broken loop (cut cable, dead transmitter or supply)
and above 20.5 mA is over range, following the NAMUR NE 43 signal levels; between
3.8 and 4 mA the transmitter is still measuring slightly below its zero, so the value
is scaled (and may be a little below value_4ma) rather than invented or clamped.

value_4ma / value_20ma are in the channel's unit (water level: mm, as 0.001 m).
The shunt must put 3.8 mA above the ADC floor and 20.5 mA below its ceiling, or
the faults could not be told apart from clipping: the constructor checks it."""
from firmware import faults
from firmware.drivers.adc_filter import StuckCheck
from firmware.drivers.scaling import line

BROKEN_BELOW_UA = 3800
OVER_ABOVE_UA = 20500


class Loop420:
    def __init__(self, filt, shunt_ohm, value_4ma, value_20ma, stuck_reads=0):
        ch = filt.channel
        if ch.floor_uv / shunt_ohm >= BROKEN_BELOW_UA:
            raise ValueError("loop420: shunt %r ohm puts 3.8 mA below the ADC floor (%d mV): "
                             "use a larger shunt" % (shunt_ohm, ch.floor_uv // 1000))
        if ch.ceiling_uv / shunt_ohm <= OVER_ABOVE_UA:
            raise ValueError("loop420: shunt %r ohm puts 20.5 mA above the ADC ceiling (%d mV): "
                             "use a smaller shunt or more attenuation" % (shunt_ohm, ch.ceiling_uv // 1000))
        self._filt = filt
        self._shunt = shunt_ohm
        self._v4 = value_4ma
        self._v20 = value_20ma
        self._stuck = StuckCheck(stuck_reads)
        self.last_ua = None

    def read(self):
        f = self._filt
        uv = f.read_uv()
        ua = int(uv / self._shunt + 0.5)
        self.last_ua = ua
        if f.clipped < 0 or ua < BROKEN_BELOW_UA:
            return None, faults.BROKEN_LOOP
        if f.clipped > 0 or ua > OVER_ABOVE_UA:
            return None, faults.OVER_RANGE
        if self._stuck.update(uv):
            return None, faults.STUCK
        return line(ua, 4000, self._v4, 20000, self._v20), faults.OK
