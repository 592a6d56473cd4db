"""Status inputs: battery/supply voltage through a divider, and board temperature.

Battery: value in mV (channel kinds battery/supply, 0.001 V). A reading below the
ADC floor means the divider is disconnected (the node is running, so it has some
supply): OPEN_CIRCUIT, not 0 V.

Temperature: value in 0.1 degC. Sources, from the board file: "esp32" (the die sensor
through the hal; on the classic ESP32 it is uncalibrated and reads the die, several
degrees above ambient), "rp2040_adc4" (the RP2040's internal sensor on ADC input 4,
T = 27 - (V - 0.706) / 0.001721 per the RP2040 datasheet), or "none"."""
from firmware import faults


class Battery:
    def __init__(self, filt, divider):
        r_top, r_bottom = divider
        self._filt = filt
        self._ratio = (r_top + r_bottom) / r_bottom

    def read(self):
        f = self._filt
        uv = f.read_uv()
        if f.clipped < 0:
            return None, faults.OPEN_CIRCUIT
        if f.clipped > 0:
            return None, faults.OVER_RANGE
        return int(uv * self._ratio / 1000 + 0.5), faults.OK


class BoardTemperature:
    def __init__(self, source, hal=None, filt=None):
        """source "esp32" needs hal; "rp2040_adc4" needs an AdcFilter on ADC channel 4."""
        if source not in ("esp32", "rp2040_adc4", "none"):
            raise ValueError("temperature source %r not allowed: use esp32, rp2040_adc4 or none" % (source,))
        self._source = source
        self._hal = hal
        self._filt = filt

    def read(self):
        if self._source == "esp32":
            c = self._hal.mcu_temperature_c()
            if c is None:
                return None, faults.NOT_AVAILABLE
        elif self._source == "rp2040_adc4":
            v = self._filt.read_uv() / 1000000
            c = 27 - (v - 0.706) / 0.001721
        else:
            return None, faults.NOT_AVAILABLE
        if c < -60 or c > 150:  # outside any silicon's rating: a broken sensor
            return None, faults.SENSOR_ERROR
        return int(c * 10 + (0.5 if c >= 0 else -0.5)), faults.OK
