"""Oversampled, outlier-proof ADC reads, and the ADC quirks they account for.

read_uv() takes `samples` conversions into a preallocated array, sorts it in place
and averages the middle half (a trimmed mean). The median half ignores single spikes
(EMI on long sensor cables, RP2040 DNL outliers) like a median filter would, and the
averaging keeps the sub-LSB resolution that the natural noise dithers in.

Quirks handled here and in the board files (docs/firmware.md has the detail):

* ESP32 near 0 V: the SAR reads 0 for inputs below roughly 100 mV and its calibrated
  linear range at 11 dB is about 150-2450 mV (ESP32-S3: up to ~3100 mV). A reading
  below the board's floor_mv or above its ceiling_mv is marked clipped (-1 / +1) so
  drivers report a fault (open circuit, broken loop, over range) rather than trust a
  number from the non-linear ends. read_uv() on esp32 applies the eFuse calibration.
* ESP32 attenuation: chosen per input in the board file (0/2.5/6/11 dB); dividers and
  shunts are sized so the working range sits inside the linear range.
* RP2040 DNL (erratum RP2040-E11): codes around 512, 1536, 2560 and 3584 are several
  LSB wide/narrow, so a single conversion near them is off by up to ~10 LSB (~8 mV).
  Oversampling with the board's own noise spreads conversions over neighbouring codes
  and the trimmed mean drops the outliers; the two-point calibration of each sensor
  absorbs the remaining gain and offset. It cannot recover lost codes: for better than
  ~0.3 % of full scale on a Pico use an external ADC.
* Mains hum: spacing_us spreads the samples over a 20 ms mains period when sensor
  cables run near power lines, so the hum averages out.

No allocation per read: the sample buffer is allocated once."""
import array


class AdcFilter:
    def __init__(self, channel, hal=None, samples=16, spacing_us=0):
        if samples < 4:
            raise ValueError("AdcFilter: samples=%r: need at least 4 to trim outliers" % (samples,))
        self.channel = channel
        self._hal = hal
        self._n = samples
        self._buf = array.array("i", bytes(4 * samples))
        self._spacing_us = spacing_us
        self.clipped = 0  # -1 below the linear floor, +1 above the ceiling, 0 inside

    def read_uv(self):
        buf = self._buf
        n = self._n
        read = self.channel.read_uv
        for i in range(n):
            buf[i] = read()
            if self._spacing_us and self._hal is not None:
                self._hal.sleep_us(self._spacing_us)
        # insertion sort: n is small and this allocates nothing
        for i in range(1, n):
            v = buf[i]
            j = i - 1
            while j >= 0 and buf[j] > v:
                buf[j + 1] = buf[j]
                j -= 1
            buf[j + 1] = v
        median = buf[n // 2]
        lo = n // 4
        hi = n - lo
        total = 0
        for i in range(lo, hi):
            total += buf[i]
        uv = total // (hi - lo)
        ch = self.channel
        if median < ch.floor_uv:
            self.clipped = -1
        elif median > ch.ceiling_uv:
            self.clipped = 1
        else:
            self.clipped = 0
        return uv


class StuckCheck:
    """Flags a signal that repeats the exact same raw value `limit` reads in a row.

    Real analog inputs carry noise, so an oversampled mean that never moves by even
    1 uV means a frozen converter, a dead multiplexer or a device that returns a
    cached value. Off (limit 0) by default: a quiet Modbus sensor with coarse
    resolution legitimately repeats itself."""

    def __init__(self, limit=0):
        self.limit = limit
        self._last = None
        self._count = 0

    def update(self, raw):
        """True when the signal counts as stuck after this read."""
        if not self.limit:
            return False
        if raw == self._last:
            self._count += 1
        else:
            self._last = raw
            self._count = 1
        return self._count >= self.limit
