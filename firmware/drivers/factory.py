"""Builds the node's sensor drivers from its config channels and its board file.

    sources = build_sources(hal, board, cfg.channels)    # {chan id: driver}
    value, fault = sources[chan].read()

Each channel is (chan, driver name, params) as firmware/nodeconfig.py parses them.
The board file supplies everything about wiring (pins, ADC attenuation and range,
dividers, shunt, UART); the channel params supply everything about the sensor:

    rain         mm_per_tip (0.1/0.2/0.5/1.0), debounce_ms, stuck_reads
    drawwire     cal [[ratio, value], [ratio, value]] with ratio the wiper's fraction
                 of the excitation (0..1, or ppm above 1), margin_permille, excitation_mv,
                 min_excitation_mv, samples, stuck_reads
    loop420      value_4ma, value_20ma (channel units), samples, stuck_reads
    battery,
    supply       samples (the board's battery divider input)
    temperature  (the board's die sensor)
    rs485        the keys of drivers/rs485_sensor.py; every rs485 channel shares one
                 Modbus master on the board's RS485 UART

A driver name the caller handles itself (e.g. the HIL rig's "fake") goes in `extra`
as name -> callable(chan, params). Bad params raise ValueError naming the channel,
the key and what is allowed, before any driver starts, or, with on_error, give that
channel a stand-in while the rest are built. Boot-only code: drop the module after
use like firmware.board."""
from protocol import channels

_PARAMS = {
    "rain": ("mm_per_tip", "debounce_ms", "stuck_reads"),
    "drawwire": ("cal", "margin_permille", "excitation_mv", "min_excitation_mv", "samples",
                 "stuck_reads"),
    "loop420": ("value_4ma", "value_20ma", "samples", "stuck_reads"),
    "battery": ("samples",),
    "supply": ("samples",),
    "temperature": (),
}


def _err(chan, drv, key, msg):
    raise ValueError("channel %s (%s): key '%s': %s" % (channels.label(chan), drv, key, msg))


def _check_keys(chan, drv, params):
    allowed = _PARAMS[drv]
    for k in params:
        if k not in allowed:
            _err(chan, drv, k, "unknown: allowed %s" % (", ".join(allowed) or "no parameters"))


def _ppm_cal(chan, cal):
    """Calibration points as (wiper ratio in ppm, value). A ratio up to 1 is a fraction
    of the excitation (0.1); above 1 it is already in ppm (100000)."""
    ok = isinstance(cal, (list, tuple)) and len(cal) == 2
    out = []
    for point in cal if ok else ():
        if not (isinstance(point, (list, tuple)) and len(point) == 2 and
                isinstance(point[0], (int, float)) and 0 <= point[0] <= 1000000 and
                isinstance(point[1], int)):
            ok = False
            break
        r = point[0]
        out.append((int(r * 1000000 + 0.5) if r <= 1 else int(r), point[1]))
    if not ok:
        _err(chan, "drawwire", "cal", "%r: allowed [[ratio, value], [ratio, value]] with ratio "
             "a fraction 0..1 of the excitation (or ppm) and value an integer in channel units"
             % (cal,))
    return out


class _Builder:
    def __init__(self, hal, board, rain_wake=None):
        self.hal = hal
        self.board = board
        self.master = None
        self.rain_wake = rain_wake

    def filt(self, role, params):
        from firmware.drivers.adc_filter import AdcFilter
        return AdcFilter(self.board.adc(self.hal, role), self.hal, samples=params.get("samples", 16))

    def build(self, chan, drv, params):
        if drv == "rs485":
            return self.rs485(chan, params)
        b, hal = self.board, self.hal
        if drv == "rain":
            from firmware.drivers.rain import RainGauge
            return RainGauge(b.input_pin(hal, "rain"), hal, mm_per_tip=params.get("mm_per_tip", 0.2),
                             debounce_ms=params.get("debounce_ms", 250),
                             stuck_reads=params.get("stuck_reads", 2), wake=self.rain_wake)
        if drv == "drawwire":
            from firmware.drivers.drawwire import DrawWire
            exc = None
            divider = (0, 1)
            if b.has("adc", "excitation"):
                exc = self.filt("excitation", params)
                divider = tuple(b.spec("adc", "excitation").get("divider", (0, 1)))
            return DrawWire(self.filt("drawwire", params), _ppm_cal(chan, params["cal"]),
                            excitation=exc, divider=divider,
                            excitation_mv=params.get("excitation_mv", 3300),
                            min_excitation_mv=params.get("min_excitation_mv", 2500),
                            margin_permille=params.get("margin_permille", 20),
                            stuck_reads=params.get("stuck_reads", 0))
        if drv == "loop420":
            from firmware.drivers.loop420 import Loop420
            shunt = b.spec("adc", "loop420").get("shunt_ohm")
            if shunt is None:
                _err(chan, drv, "shunt_ohm", "the board file gives no adc.loop420.shunt_ohm")
            return Loop420(self.filt("loop420", params), shunt, params["value_4ma"],
                           params["value_20ma"], stuck_reads=params.get("stuck_reads", 0))
        if drv in ("battery", "supply"):
            from firmware.drivers.supply import Battery
            spec = b.spec("adc", "battery")
            return Battery(self.filt("battery", params), tuple(spec.get("divider", (0, 1))))
        from firmware.drivers.supply import BoardTemperature
        source = b.data.get("temperature", {}).get("source", "none")
        if source == "rp2040_adc4":
            from firmware import halsetup
            from firmware.drivers.adc_filter import AdcFilter
            ch = halsetup.adc(hal, b.mcu, {"channel": 4, "floor_mv": 0, "ceiling_mv": 3300})
            return BoardTemperature(source, filt=AdcFilter(ch, hal))
        return BoardTemperature(source, hal=hal)

    def rs485(self, chan, params):
        from firmware.drivers.rs485_sensor import Rs485Sensor
        if self.master is None:
            from firmware import halsetup
            from firmware.drivers.modbus_rtu import ModbusMaster
            from firmware.hal import Output
            b, hal = self.board, self.hal
            spec = b.spec("uarts", "rs485")
            de = Output(halsetup.pin_out(hal, spec["de"]), 1)
            self.master = ModbusMaster(b.uart(hal, "rs485"), hal, de=de,
                                       baudrate=spec.get("baudrate", 9600))
        return Rs485Sensor(self.master, chan, params)


def _validate(chan, drv, params):
    if drv == "rs485":
        from firmware.drivers.rs485_sensor import Rs485Sensor
        try:
            Rs485Sensor(None, chan, params)  # checks the whole map; touches no hardware
        except ValueError as e:
            raise ValueError("channel %s (rs485): %s" % (channels.label(chan), e))
        return
    if drv not in _PARAMS:
        _err(chan, drv, "driver", "unknown: allowed %s, rs485" % ", ".join(sorted(_PARAMS)))
    _check_keys(chan, drv, params)
    if drv == "drawwire":
        if "cal" not in params:
            _err(chan, drv, "cal", "missing: two calibration points are needed")
        _ppm_cal(chan, params["cal"])
    elif drv == "loop420":
        for k in ("value_4ma", "value_20ma"):
            if not isinstance(params.get(k), int):
                _err(chan, drv, k, "%r: allowed an integer in channel units" % (params.get(k),))
    elif drv == "rain":
        from firmware.drivers.rain import tenths_per_tip
        try:
            tenths_per_tip(params.get("mm_per_tip", 0.2))
        except ValueError as e:
            _err(chan, drv, "mm_per_tip", str(e))


def build_sources(hal, board, chans, extra=None, source=None, on_error=None, rain_wake=None):
    """{chan: driver} for config channels [(chan, driver name, params), ...].

    Every channel is checked before any pin, ADC or UART is set up; `source` (the
    config file's name) starts every error message. Without on_error the first bad
    channel raises ValueError. With on_error(chan, driver, error) -> stand-in, a bad
    channel (bad params, or a role the board lacks) gets the stand-in (e.g. a source
    that reports NOT_AVAILABLE) and the others are built: one broken sensor must not
    silence the station. `rain_wake` (e.g. machine.SLEEP on esp32) lets the rain pin wake
    the chip from light sleep."""
    stand_in = {}
    for chan, drv, params in chans:
        if extra and drv in extra:
            continue
        try:
            _validate(chan, drv, params)
        except ValueError as e:
            if source:
                e = ValueError("%s: %s" % (source, e))
            if on_error is None:
                raise e
            stand_in[chan] = on_error(chan, drv, e)
    builder = _Builder(hal, board, rain_wake)
    out = {}
    for chan, drv, params in chans:
        if chan in stand_in:
            out[chan] = stand_in[chan]
        elif extra and drv in extra:
            out[chan] = extra[drv](chan, params)
        else:
            try:
                out[chan] = builder.build(chan, drv, params)
            except (ValueError, KeyError) as e:  # the board lacks what the channel needs
                if on_error is None:
                    raise
                out[chan] = on_error(chan, drv, e)
    return out
