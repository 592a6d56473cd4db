"""Draw-wire (string-pot) crack meter on the ADC, ratiometric to its excitation.

The potentiometer is excited from a rail and its wiper goes to an ADC input with a
pull-down (100 k) so a cut cable reads 0 V. Measuring the wiper as a fraction of the
excitation (ratiometric) cancels slow drift of the rail with battery and temperature.
On boards whose ADC reference is the excitation rail itself (Pico: 3V3 feeds
ADC_VREF) no excitation input is needed and excitation_mv is the nominal rail.

Two-point calibration: cal = ((ppm1, value1), (ppm2, value2)) maps the wiper/excitation
ratio in parts per million to the channel unit (displacement: 0.01 mm). Size the end
resistors so the wire's whole travel keeps the wiper inside the ADC's linear range;
then a wiper below the floor can only be a broken wire (OPEN_CIRCUIT), and a ratio
beyond the calibrated span by more than margin (fraction of the span, per mille) is
OVER_RANGE / UNDER_RANGE rather than an extrapolated number."""
from firmware import faults
from firmware.drivers.adc_filter import StuckCheck
from firmware.drivers.scaling import div_round, line


class DrawWire:
    def __init__(self, wiper, cal, excitation=None, divider=(0, 1), excitation_mv=3300,
                 min_excitation_mv=2500, margin_permille=20, stuck_reads=0):
        """wiper, excitation: AdcFilter objects (excitation may be None).
        divider: (r_top, r_bottom) in front of the excitation input."""
        (p1, v1), (p2, v2) = cal
        if p1 == p2:
            raise ValueError("drawwire cal: the two calibration points have the same ratio %r: "
                             "take them at two different wire extensions" % (p1,))
        self._wiper = wiper
        self._exc = excitation
        self._div_num = divider[0] + divider[1]
        self._div_den = divider[1]
        self._exc_uv = excitation_mv * 1000
        self._min_exc_uv = min_excitation_mv * 1000
        self._cal = (p1, v1, p2, v2)
        lo, hi = min(p1, p2), max(p1, p2)
        margin = (hi - lo) * margin_permille // 1000
        self._lo = lo - margin
        self._hi = hi + margin
        self._stuck = StuckCheck(stuck_reads)
        self.last_ppm = None

    def excitation_uv(self):
        """(uv, fault) of the excitation rail."""
        if self._exc is None:
            return self._exc_uv, faults.OK
        uv = self._exc.read_uv()
        if self._exc.clipped > 0:
            return None, faults.OVER_RANGE
        uv = uv * self._div_num // self._div_den
        if self._exc.clipped < 0 or uv < self._min_exc_uv:
            return None, faults.SUPPLY_LOW
        return uv, faults.OK

    def read(self):
        exc, fault = self.excitation_uv()
        if fault:
            return None, fault
        w = self._wiper
        uv = w.read_uv()
        if w.clipped < 0:
            return None, faults.OPEN_CIRCUIT
        if w.clipped > 0:
            return None, faults.OVER_RANGE
        ppm = div_round(uv * 1000000, exc)
        self.last_ppm = ppm
        if self._stuck.update(uv):
            return None, faults.STUCK
        if ppm < self._lo:
            return None, faults.UNDER_RANGE
        if ppm > self._hi:
            return None, faults.OVER_RANGE
        p1, v1, p2, v2 = self._cal
        return line(ppm, p1, v1, p2, v2), faults.OK
