"""Drivers built from config channels and a board file: the node config's own example
works end to end on fake hardware, rs485 channels share one bus, and bad params are
refused, naming the channel and key, before any hardware is set up."""
import shutil
from pathlib import Path

import pytest

from firmware import board as boardmod
from firmware import faults
from firmware.drivers.drawwire import DrawWire
from firmware.drivers.factory import build_sources
from firmware.drivers.loop420 import Loop420
from firmware.drivers.rain import RainGauge
from firmware.drivers.rs485_sensor import Rs485Sensor
from protocol import channels

ROOT = Path(__file__).resolve().parents[2]
RAIN, DISP, WATER = (channels.chan_id(channels.kind_by_name(n)) for n in
                     ("rain", "displacement", "water_level"))
BAT = channels.chan_id(channels.kind_by_name("battery"))
TEMP = channels.chan_id(channels.kind_by_name("temperature"))
LEVEL2 = channels.chan_id(channels.kind_by_name("water_level"), 1)
CRACK2 = channels.chan_id(channels.kind_by_name("displacement"), 1)

# firmware/nodeconfig.py's documented example, as NodeConfig.channels holds it
EXAMPLE = [(RAIN, "rain", {"mm_per_tip": 0.2}),
           (DISP, "drawwire", {"cal": [[0.1, 0], [0.9, 50000]]}),
           (WATER, "loop420", {"value_4ma": 0, "value_20ma": 10000})]


@pytest.fixture
def boards(hal, tmp_path):
    dest = tmp_path / "firmware" / "variants"
    dest.mkdir(parents=True)
    for p in (ROOT / "firmware" / "variants").glob("*.json"):
        shutil.copy(p, dest / p.name)
    return lambda name: boardmod.load(hal, name)


def test_node_config_example_builds_and_reads(hal, fake_machine, clock, boards):
    src = build_sources(hal, boards("esp32_devkitc"), EXAMPLE + [(BAT, "battery", {}),
                                                              (TEMP, "temperature", {})])
    assert isinstance(src[RAIN], RainGauge) and isinstance(src[DISP], DrawWire)
    assert isinstance(src[WATER], Loop420)
    fake_machine.pin(27).drive(0)
    fake_machine.adc(34).set_uv(1650000)   # wiper at 50 % of a 3.3 V rail
    fake_machine.adc(39).set_uv(1650000)   # the rail through its 1:2 divider
    fake_machine.adc(35).set_uv(1200000)   # 12 mA through 100 ohm
    fake_machine.adc(36).set_uv(1652000)
    assert src[RAIN].read() == (2, faults.OK)
    assert src[DISP].read() == (25000, faults.OK)
    assert src[WATER].read() == (5000, faults.OK)
    assert src[BAT].read() == (12665, faults.OK)
    assert src[TEMP].read() == (None, faults.NOT_AVAILABLE)  # no esp32 module on a host


def test_pico_draw_wire_is_ratiometric_without_an_excitation_input(hal, fake_machine, boards):
    src = build_sources(hal, boards("rp2040_pico"), EXAMPLE + [(TEMP, "temperature", {})])
    fake_machine.adc(26).set_uv(1650000)
    value, fault = src[DISP].read()
    assert fault == faults.OK and abs(value - 25000) <= 40
    fake_machine.adc(4).set_uv(706000)
    assert src[TEMP].read()[0] in range(265, 276)


def test_rs485_channels_share_one_bus(hal, fake_machine, boards):
    src = build_sources(hal, boards("esp32_devkitc"), [
        (LEVEL2, "rs485", {"preset": "qdy30a", "unit": 1}),
        (CRACK2, "rs485", {"unit": 2, "value_reg": 0, "decimals": 2})])
    assert isinstance(src[LEVEL2], Rs485Sensor)
    assert src[LEVEL2]._master is src[CRACK2]._master
    assert fake_machine.uart(2).baudrate == 9600
    assert src[CRACK2].read() == (None, faults.NO_RESPONSE)  # nothing on the fake bus


def test_extra_drivers_come_from_the_caller(hal, boards):
    made = []
    src = build_sources(hal, boards("esp32_devkitc"), [(WATER, "fake", {"x": 1})],
                        extra={"fake": lambda chan, params: made.append((chan, params)) or "F"})
    assert src == {WATER: "F"} and made == [(WATER, {"x": 1})]


@pytest.mark.parametrize("chans, words", [
    ([(DISP, "drawwire", {})], ["displacement.0", "'cal'", "missing"]),
    ([(DISP, "drawwire", {"cal": [[0.1, 0]]})], ["'cal'", "fraction 0..1"]),
    ([(DISP, "drawwire", {"cal": [[-0.1, 0], [0.9, 500]]})], ["'cal'", "fraction 0..1"]),
    ([(WATER, "loop420", {"value_4ma": 0})], ["water_level.0", "'value_20ma'"]),
    ([(RAIN, "rain", {"mm_per_tip": 0.3})], ["rain.0", "'mm_per_tip'", "0.2, 0.5"]),
    ([(RAIN, "rain", {"bucket": 1})], ["'bucket'", "allowed mm_per_tip"]),
    ([(LEVEL2, "rs485", {"unit": 1, "value_reg": 4})], ["water_level.1 (rs485)", "'decimals'"]),
    ([(RAIN, "sonar", {})], ["'driver'", "allowed battery"]),
])
def test_bad_params_are_refused_before_any_hardware(hal, fake_machine, boards, chans, words):
    b = boards("esp32_devkitc")
    with pytest.raises(ValueError) as e:
        build_sources(hal, b, EXAMPLE[:1] + chans)
    for w in words:
        assert w in str(e.value), str(e.value)
    assert 27 not in fake_machine._pins  # the rain channel listed first was not set up


def test_errors_start_with_the_config_file(hal, boards):
    with pytest.raises(ValueError, match=r"^config.json: channel rain.0 \(rain\): key 'mm_per_tip'"):
        build_sources(hal, boards("esp32_devkitc"), [(RAIN, "rain", {"mm_per_tip": 2})],
                      source="config.json")


def test_cal_as_ppm_is_the_same_as_a_fraction(hal, fake_machine, boards):
    b = boards("rp2040_pico")
    got = []
    for cal in ([[0.1, 0], [0.9, 50000]], [[100000, 0], [900000, 50000]]):
        dw = build_sources(hal, b, [(DISP, "drawwire", {"cal": cal})])[DISP]
        fake_machine.adc(26).set_uv(2000000)  # each build opens its own ADC object
        got.append(dw.read())
    assert got[0] == got[1] and got[0][1] == faults.OK


def test_with_on_error_one_bad_channel_does_not_stop_the_others(hal, fake_machine, boards):
    failed = []

    def stand_in(chan, drv, err):
        failed.append((chan, drv, str(err)))
        return "unavailable"

    src = build_sources(hal, boards("rp2040_pico"),
                        EXAMPLE + [(CRACK2, "drawwire", {"cal": "wrong"}),
                                   (LEVEL2, "loop420", {"value_4ma": 0, "value_20ma": 5000}),
                                   (BAT, "battery", {"samples": 8})],
                        source="config.json", on_error=stand_in)
    assert src[CRACK2] == "unavailable"
    assert failed[0][:2] == (CRACK2, "drawwire") and failed[0][2].startswith("config.json: ")
    assert isinstance(src[LEVEL2], Loop420)  # the board's one 4-20 mA input, read twice
    assert isinstance(src[RAIN], RainGauge) and isinstance(src[DISP], DrawWire)
    assert len(failed) == 1


def test_on_error_covers_roles_the_board_lacks(hal, tmp_path, boards):
    import json
    data = json.loads((ROOT / "firmware" / "variants" / "rp2040_pico.json").read_text())
    del data["uarts"]["rs485"]
    (tmp_path / "firmware" / "variants" / "no485.json").write_text(json.dumps(data))
    got = build_sources(hal, boards("no485"), [(LEVEL2, "rs485", {"preset": "qdy30a", "unit": 1})],
                        on_error=lambda chan, drv, err: ("stand-in", str(err)))
    assert got[LEVEL2][0] == "stand-in" and "no uarts.rs485" in got[LEVEL2][1]
    with pytest.raises(ValueError, match="no uarts.rs485"):
        build_sources(hal, boards("no485"), [(LEVEL2, "rs485", {"preset": "qdy30a", "unit": 1})])
