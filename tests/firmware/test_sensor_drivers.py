"""Sensor drivers on fake pins and ADCs: values in channel units, and every fault
state yields a fault with no value."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import faults, halsetup
from firmware.drivers.adc_filter import AdcFilter, StuckCheck
from firmware.drivers.drawwire import DrawWire
from firmware.drivers.loop420 import Loop420
from firmware.drivers.rain import RainGauge, tenths_per_tip
from firmware.drivers.scaling import div_round, line, pow10_scale
from firmware.drivers.supply import Battery, BoardTemperature

ESP32_ADC = {"atten": "11db", "floor_mv": 150, "ceiling_mv": 2450}


def esp32_adc(hal, fake_machine, pin, samples=8):
    spec = dict(ESP32_ADC, pin=pin)
    filt = AdcFilter(halsetup.adc(hal, "esp32", spec), hal, samples=samples)
    return filt, fake_machine.adc(pin)


# --- adc_filter -------------------------------------------------------------------

def test_filter_ignores_spikes_and_keeps_sub_lsb_resolution(hal, fake_machine):
    filt, adc = esp32_adc(hal, fake_machine, 34, samples=16)
    # 16 samples: noise around 1.0 V plus three EMI spikes in both directions
    adc.set_uv(*([999000, 1001000] * 6 + [3100000, 0, 3100000, 1000000]))
    assert abs(filt.read_uv() - 1000000) <= 1000
    assert filt.clipped == 0
    assert adc.reads == 16


def test_filter_flags_the_esp32_dead_zone_and_the_top(hal, fake_machine):
    filt, adc = esp32_adc(hal, fake_machine, 34)
    adc.set_uv(0, 40000, 90000, 0)  # below ~100 mV an ESP32 reads 0: value unknowable
    filt.read_uv()
    assert filt.clipped == -1
    adc.set_uv(2600000)
    filt.read_uv()
    assert filt.clipped == 1


def test_rp2040_dnl_spike_codes_do_not_move_the_result(hal, fake_machine):
    # one conversion in four lands on a wide DNL code 8 LSB off (RP2040-E11)
    ch = halsetup.adc(hal, "rp2040", {"pin": 26, "floor_mv": 30, "ceiling_mv": 3270})
    filt = AdcFilter(ch, hal, samples=16)
    lsb = 3300000 / 4095
    good = int(2560 * lsb)
    fake_machine.adc(26).set_uv(good, good, good, int(good + 8 * lsb))
    assert abs(filt.read_uv() - good) < 2 * lsb


def test_filter_needs_enough_samples_to_trim(hal, fake_machine):
    with pytest.raises(ValueError, match="at least 4"):
        esp32_adc(hal, fake_machine, 34, samples=2)


def test_stuck_check_counts_identical_reads_and_is_off_by_default():
    s = StuckCheck(3)
    assert [s.update(x) for x in (5, 5, 5, 6, 6)] == [False, False, True, False, False]
    assert not any(StuckCheck().update(1) for _ in range(10))


# --- draw-wire --------------------------------------------------------------------

CAL = ((100000, 0), (900000, 50000))  # 10 % of excitation = 0 mm, 90 % = 500.00 mm


def drawwire(hal, fake_machine, **kw):
    wiper, wadc = esp32_adc(hal, fake_machine, 34)
    exc, eadc = esp32_adc(hal, fake_machine, 39)
    dw = DrawWire(wiper, CAL, excitation=exc, divider=(10000, 10000), **kw)
    return dw, wadc, eadc


def test_drawwire_two_point_calibration(hal, fake_machine):
    dw, wadc, eadc = drawwire(hal, fake_machine)
    eadc.set_uv(1650000)  # 3.3 V rail through 1:2
    wadc.set_uv(330000)   # 10 %
    assert dw.read() == (0, faults.OK)
    wadc.set_uv(1650000)  # 50 %
    assert dw.read() == (25000, faults.OK)  # 250.00 mm
    wadc.set_uv(2310000)  # 70 %
    assert dw.read() == (37500, faults.OK)


def test_drawwire_is_ratiometric_to_its_excitation(hal, fake_machine):
    dw, wadc, eadc = drawwire(hal, fake_machine)
    eadc.set_uv(1650000)
    wadc.set_uv(1650000)
    v33 = dw.read()
    eadc.set_uv(1500000)  # rail sags to 3.0 V: the wiper sags with it
    wadc.set_uv(1500000)
    assert dw.read() == v33 == (25000, faults.OK)


def test_drawwire_without_excitation_input_uses_nominal_rail(hal, fake_machine):
    ch = halsetup.adc(hal, "rp2040", {"pin": 26, "floor_mv": 30, "ceiling_mv": 3270})
    dw = DrawWire(AdcFilter(ch, hal), CAL, excitation=None, excitation_mv=3300)
    fake_machine.adc(26).set_uv(1650000)
    value, fault = dw.read()
    assert fault == faults.OK and abs(value - 25000) <= 40  # within one LSB of travel


@pytest.mark.parametrize("wiper_uv, exc_uv, fault", [
    (0, 1650000, faults.OPEN_CIRCUIT),        # wire cut: pull-down takes the wiper to 0 V
    (2600000, 1650000, faults.OVER_RANGE),    # above the ADC's linear range
    (3000, 1650000, faults.OPEN_CIRCUIT),
    (200000, 1650000, faults.UNDER_RANGE),    # ~6 %: below the calibrated travel
    (2440000, 1300000, faults.OVER_RANGE),    # 94 % of a 2.6 V rail: past the 90 % end stop
    (1650000, 1000000, faults.SUPPLY_LOW),    # rail at 2.0 V: cannot measure against it
    (1650000, 0, faults.SUPPLY_LOW),
    (1650000, 2600000, faults.OVER_RANGE),
])
def test_drawwire_faults_come_without_a_value(hal, fake_machine, wiper_uv, exc_uv, fault):
    dw, wadc, eadc = drawwire(hal, fake_machine)
    wadc.set_uv(wiper_uv)
    eadc.set_uv(exc_uv)
    assert dw.read() == (None, fault)


def test_drawwire_stuck_signal_is_a_fault(hal, fake_machine):
    dw, wadc, eadc = drawwire(hal, fake_machine, stuck_reads=3)
    eadc.set_uv(1650000)
    wadc.set_uv(1650000)
    assert dw.read()[1] == faults.OK
    assert dw.read()[1] == faults.OK
    assert dw.read() == (None, faults.STUCK)
    wadc.set_uv(1650100)
    assert dw.read()[1] == faults.OK


def test_drawwire_rejects_a_degenerate_calibration(hal, fake_machine):
    wiper, _ = esp32_adc(hal, fake_machine, 34)
    with pytest.raises(ValueError, match="same ratio"):
        DrawWire(wiper, ((500000, 0), (500000, 100)))


# --- 4-20 mA ----------------------------------------------------------------------

def loop(hal, fake_machine, shunt=100, lo=0, hi=10000):
    filt, adc = esp32_adc(hal, fake_machine, 35)
    return Loop420(filt, shunt, lo, hi), adc


@pytest.mark.parametrize("ma, expected", [
    (4.0, (0, faults.OK)), (12.0, (5000, faults.OK)), (20.0, (10000, faults.OK)),
    (3.9, (-63, faults.OK)),                          # below zero but still measuring
    (20.5, (10313, faults.OK)),
    (3.7, (None, faults.BROKEN_LOOP)), (0.0, (None, faults.BROKEN_LOOP)),
    (20.6, (None, faults.OVER_RANGE)), (24.0, (None, faults.OVER_RANGE)),
])
def test_loop420_scaling_and_faults(hal, fake_machine, ma, expected):
    lp, adc = loop(hal, fake_machine)
    adc.set_uv(int(ma * 100 * 1000))  # mA through 100 ohm, in uV
    assert lp.read() == expected


def test_loop420_saturated_adc_is_over_range_not_a_value(hal, fake_machine):
    lp, adc = loop(hal, fake_machine)
    adc.set_uv(2600000)
    assert lp.read() == (None, faults.OVER_RANGE)


def test_loop420_refuses_a_shunt_that_hides_its_faults(hal, fake_machine):
    filt, _ = esp32_adc(hal, fake_machine, 35)
    with pytest.raises(ValueError, match="below the ADC floor"):
        Loop420(filt, 33, 0, 1000)       # 3.8 mA * 33 ohm = 125 mV < 150 mV floor
    with pytest.raises(ValueError, match="above the ADC ceiling"):
        Loop420(filt, 150, 0, 1000)      # 20.5 mA * 150 ohm = 3.07 V > 2.45 V


def test_loop420_stuck(hal, fake_machine):
    filt, adc = esp32_adc(hal, fake_machine, 35)
    lp = Loop420(filt, 100, 0, 10000, stuck_reads=2)
    adc.set_uv(1200000)
    assert lp.read()[1] == faults.OK
    assert lp.read() == (None, faults.STUCK)


# --- supply -----------------------------------------------------------------------

def test_battery_through_divider_and_its_faults(hal, fake_machine):
    filt, adc = esp32_adc(hal, fake_machine, 36)
    bat = Battery(filt, (220000, 33000))
    adc.set_uv(1652000)  # 12.665 V * 33/253
    assert bat.read() == (12665, faults.OK)
    adc.set_uv(0)
    assert bat.read() == (None, faults.OPEN_CIRCUIT)
    adc.set_uv(2500000)
    assert bat.read() == (None, faults.OVER_RANGE)


def test_board_temperature_sources(hal, fake_machine):
    ch = halsetup.adc(hal, "rp2040", {"channel": 4})
    t = BoardTemperature("rp2040_adc4", filt=AdcFilter(ch, hal))
    fake_machine.adc(4).set_uv(706000)
    value, fault = t.read()
    assert fault == faults.OK and abs(value - 270) <= 5  # 27.0 degC at 0.706 V
    fake_machine.adc(4).set_uv(0)  # 437 degC: a broken sensor, not a fire
    assert t.read() == (None, faults.SENSOR_ERROR)

    class NoSensor:
        pass
    from firmware.hal import Hal
    h = Hal(machine=fake_machine, clock=hal.clock, esp32=NoSensor)
    assert BoardTemperature("esp32", hal=h).read() == (None, faults.NOT_AVAILABLE)
    assert BoardTemperature("none").read() == (None, faults.NOT_AVAILABLE)
    with pytest.raises(ValueError, match="allowed"):
        BoardTemperature("ntc")


# --- rain ---------------------------------------------------------------------------

def gauge(hal, fake_machine, **kw):
    pin = halsetup.pin_in(hal, 27, "up")
    return RainGauge(pin, hal, **kw), fake_machine.pin(27)


def tip(pin, clock, bounces=(), closed_ms=80):
    """One bucket tip: closure with contact bounce at given ms offsets, then release."""
    pin.drive(0)
    t = 0
    for b in bounces:
        clock.advance_ms(b - t)
        t = b
        pin.drive(1)
        pin.drive(0)
    clock.advance_ms(closed_ms - t)
    pin.drive(1)  # release: its bounce is another falling edge inside the lockout
    pin.drive(0)
    pin.drive(1)


def test_rain_bounce_within_debounce_counts_once(hal, fake_machine, clock):
    g, pin = gauge(hal, fake_machine, mm_per_tip=0.2)
    tip(pin, clock, bounces=(1, 3, 7), closed_ms=120)
    assert g.read() == (2, faults.OK)  # one tip of 0.2 mm = 2 x 0.1 mm
    assert g.read() == (0, faults.OK)


def test_rain_two_tips_beyond_debounce_count_twice(hal, fake_machine, clock):
    g, pin = gauge(hal, fake_machine, mm_per_tip=0.5)
    tip(pin, clock)
    clock.advance_ms(300)
    tip(pin, clock)
    assert g.read() == (10, faults.OK)  # two tips of 0.5 mm


def test_rain_edges_closer_than_debounce_are_one_tip(hal, fake_machine, clock):
    g, pin = gauge(hal, fake_machine, debounce_ms=250)
    pin.drive(0)
    pin.drive(1)
    clock.advance_ms(250)
    pin.drive(0)
    pin.drive(1)
    clock.advance_ms(1)
    pin.drive(0)
    assert g.tips() == 2


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=260, max_value=5000), min_size=1, max_size=30))
def test_rain_counts_every_tip_in_a_storm(intervals):
    from fake_hw import load_fake_machine

    from firmware.hal import Hal
    fm = load_fake_machine()
    clock = fm.FakeClock(start_ms=(1 << 30) - 3000)  # run across the ticks wrap too
    hal = Hal(machine=fm, clock=clock)
    g = RainGauge(halsetup.pin_in(hal, 27, "up"), hal, mm_per_tip=0.2)
    pin = fm.pin(27)
    for gap in intervals:
        tip(pin, clock, bounces=(2, 5), closed_ms=100)
        clock.advance_ms(gap)
    assert g.read() == (2 * len(intervals), faults.OK)


@pytest.mark.parametrize("dry_days, reads_between", [(7, False), (7, True), (13, True), (40, True)])
def test_rain_after_a_long_dry_spell_still_counts(hal, fake_machine, clock, dry_days, reads_between):
    """ticks_ms wraps every 2**30 ms (12.4 days) and ticks_diff reaches 2**29 ms: a tip
    weeks after the last one must not fall into a 'lockout' computed across the wrap."""
    g, pin = gauge(hal, fake_machine)
    tip(pin, clock)
    assert g.read() == (2, faults.OK)
    for _ in range(dry_days * 24):
        clock.advance_ms(3600 * 1000)
        if reads_between:
            assert g.read() == (0, faults.OK)
    tip(pin, clock)
    clock.advance_ms(300)
    tip(pin, clock)
    assert g.read() == (4, faults.OK)


def test_rain_wake_counts_a_tip_once_whether_or_not_the_irq_saw_it(hal, fake_machine, clock):
    g, pin = gauge(hal, fake_machine)
    pin.drive(0)           # the edge that woke the chip, seen by the IRQ as well
    clock.advance_ms(3)
    g.on_wake()
    assert g.tips() == 1
    clock.advance_ms(5000)
    g.on_wake()            # woken by a tip whose edge the IRQ missed during sleep
    assert g.tips() == 2


def test_rain_reed_stuck_closed_is_a_fault_and_keeps_the_count(hal, fake_machine, clock):
    g, pin = gauge(hal, fake_machine)
    tip(pin, clock)
    clock.advance_ms(1000)
    pin.drive(0)  # a second tip that never opens again (welded reed / jammed bucket)
    assert g.read() == (4, faults.OK)
    assert g.read() == (0, faults.OK)   # closed once: could be a tip in progress
    assert g.read() == (None, faults.STUCK)
    pin.drive(1)
    assert g.read() == (0, faults.OK)


def test_rain_irq_is_registered_hard_on_the_falling_edge(hal, fake_machine):
    g, pin = gauge(hal, fake_machine)
    assert pin._trigger == fake_machine.Pin.IRQ_FALLING and pin.irq_hard is True
    g.close()
    assert pin._handler is None


@pytest.mark.parametrize("mm, tenths", [(0.2, 2), (0.5, 5), (0.1, 1), (1.0, 10)])
def test_mm_per_tip_choices(mm, tenths):
    assert tenths_per_tip(mm) == tenths


def test_mm_per_tip_rejects_odd_buckets():
    with pytest.raises(ValueError, match="0.2, 0.5"):
        tenths_per_tip(0.3)


# --- scaling and fault helpers ---------------------------------------------------------

@given(st.integers(-10**9, 10**9), st.integers(1, 10**6))
def test_div_round_matches_round_half_away(a, b):
    exact = a / b
    expected = int(abs(exact) + 0.5) * (1 if exact >= 0 else -1)
    if abs(abs(exact) - int(abs(exact)) - 0.5) > 1e-9:  # skip float-ambiguous halves
        assert div_round(a, b) == expected
    assert div_round(a, -b) == div_round(-a, b)


def test_line_and_pow10():
    assert line(5, 0, 0, 10, 100) == 50
    assert pow10_scale(1234, -2) == 12 and pow10_scale(-1250, -2) == -13 and pow10_scale(7, 3) == 7000


def test_fault_names_and_modbus_detail():
    f = faults.modbus_exception(2)
    assert faults.kind(f) == faults.MODBUS_EXCEPTION and faults.detail(f) == 2
    assert faults.name(f) == "modbus_exception(2)" and faults.name(faults.BROKEN_LOOP) == "broken_loop"
    assert len(faults.NAMES) == faults.NOT_AVAILABLE + 1
