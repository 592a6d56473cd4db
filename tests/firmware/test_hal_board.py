"""HAL seam and board files: every shipped board loads and builds its pins through
the fake machine; bad board files name the file, the key and what is allowed."""
import json
import shutil
from pathlib import Path

import pytest
from fake_hw import HostClock

from firmware import board as boardmod
from firmware import halsetup

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = sorted(p.stem for p in (ROOT / "firmware" / "variants").glob("*.json"))


@pytest.fixture
def variants_root(hal, tmp_path):
    dest = tmp_path / "firmware" / "variants"
    dest.mkdir(parents=True)
    for p in (ROOT / "firmware" / "variants").glob("*.json"):
        shutil.copy(p, dest / p.name)
    return dest


def test_required_boards_are_shipped():
    assert {"esp32_devkitc", "esp32s3_devkitc", "rp2040_pico"} <= set(VARIANTS)


@pytest.mark.parametrize("name", VARIANTS)
def test_every_board_loads_and_opens_its_hardware(hal, fake_machine, variants_root, name):
    b = boardmod.load(hal, name)
    assert b.name == name
    rain = b.input_pin(hal, "rain")
    assert rain.pull == fake_machine.Pin.PULL_UP
    siren = b.output(hal, "siren")
    assert not siren.is_on()
    siren.on()
    assert siren.is_on() and siren.pin.value() == b.spec("outputs", "siren")["active"]
    for role in ("drawwire", "loop420", "battery"):
        ch = b.adc(hal, role)
        fake_machine.adc(b.spec("adc", role)["pin"]).set_uv(1234000)
        # esp32 reads calibrated microvolts; rp2040 scales a 12-bit code (one LSB = 806 uV)
        assert abs(ch.read_uv() - 1234000) < 1000
        if b.mcu.startswith("esp32"):
            fake_adc = fake_machine.adc(b.spec("adc", role)["pin"])
            assert fake_adc.atten_value == fake_machine.ADC.ATTN_11DB
            if "bits" in b.spec("adc", role):
                assert fake_adc.width_value == fake_machine.ADC.WIDTH_12BIT
    for role in ("rs485", "lora"):
        s = b.spec("uarts", role)
        u = b.uart(hal, role)
        assert u.id == s["id"] and u.baudrate == s["baudrate"]
        assert u.kw["tx"].id == s["tx"] and u.kw["rx"].id == s["rx"]


def _write_board(tmp_path, data):
    d = tmp_path / "firmware" / "variants"
    d.mkdir(parents=True, exist_ok=True)
    (d / "bad.json").write_text(json.dumps(data))


def _good():
    return json.loads((ROOT / "firmware" / "variants" / "esp32_devkitc.json").read_text())


@pytest.mark.parametrize("mutate, key, hint", [
    (lambda d: d.__setitem__("mcu", "esp8266"), "mcu", "allowed esp32, esp32s3, rp2040"),
    (lambda d: d["adc"]["drawwire"].__setitem__("pin", 4), "adc.drawwire.pin", "allowed 32..39"),
    (lambda d: d["adc"]["drawwire"].__setitem__("atten", "12db"), "adc.drawwire.atten", "11db"),
    (lambda d: d["adc"]["drawwire"].__setitem__("bits", 13), "adc.drawwire.bits", "9, 10, 11, 12"),
    (lambda d: d["outputs"]["siren"].__setitem__("pin", 34), "outputs.siren.pin", "not a usable pin"),
    (lambda d: d["outputs"]["strobe"].__setitem__("pin", 25), "outputs.strobe.pin", "already used"),
    (lambda d: d["uarts"]["lora"].pop("aux"), "uarts.lora.aux", "not a usable pin"),
    (lambda d: d["adc"]["battery"].__setitem__("divider", [1, 0]), "adc.battery.divider", "r_bottom > 0"),
    (lambda d: d["inputs"]["rain"].__setitem__("pull", "sideways"), "inputs.rain.pull", "allowed"),
    (lambda d: d["outputs"].__setitem__("buzzer", {"pin": 5}), "outputs.buzzer", "siren, strobe, status_led"),
])
def test_bad_board_file_names_file_key_and_allowed_values(hal, tmp_path, mutate, key, hint):
    data = _good()
    mutate(data)
    _write_board(tmp_path, data)
    with pytest.raises(boardmod.BoardError) as e:
        boardmod.load(hal, "bad")
    msg = str(e.value)
    assert "firmware/variants/bad.json" in msg and key in msg and hint in msg, msg


def test_missing_and_broken_board_files_say_what_to_do(hal, tmp_path):
    with pytest.raises(boardmod.BoardError, match="no such board file"):
        boardmod.load(hal, "nope")
    d = tmp_path / "firmware" / "variants"
    d.mkdir(parents=True)
    (d / "broken.json").write_text("{not json")
    with pytest.raises(boardmod.BoardError, match="not valid JSON"):
        boardmod.load(hal, "broken")


def test_board_without_a_role_says_which_roles_it_has(hal, variants_root):
    b = boardmod.load(hal, "rp2040_pico")
    assert not b.has("adc", "excitation")
    with pytest.raises(boardmod.BoardError, match="no adc.excitation"):
        b.adc(hal, "excitation")


def test_active_low_output_starts_off(hal, fake_machine):
    from firmware.hal import Output
    out = Output(halsetup.pin_out(hal, 5, 1), active=0)
    assert fake_machine.pin(5).value() == 1 and not out.is_on()
    out.on()
    assert fake_machine.pin(5).value() == 0


def test_system_services_go_through_the_seam(hal, fake_machine, clock):
    assert hal.unique_id() == fake_machine.unique_id()
    assert halsetup.reset_cause(hal) == "power_on"
    fake_machine.set_reset_cause(fake_machine.WDT_RESET)
    assert halsetup.reset_cause(hal) == "watchdog"
    fake_machine.set_reset_cause(99)
    assert halsetup.reset_cause(hal) == "unknown(99)"
    w = halsetup.watchdog(hal, 8000)
    w.feed()
    assert fake_machine.wdt().timeout == 8000 and fake_machine.wdt().feeds == 1
    t0 = hal.ticks_ms()
    hal.lightsleep(1500)
    assert hal.ticks_diff(hal.ticks_ms(), t0) == 1500
    with pytest.raises(fake_machine.DeepSleepReset):
        hal.deepsleep(60000)
    with pytest.raises(ValueError, match="pull"):
        halsetup.pin_in(hal, 3, "sideways")


def test_files_live_under_the_hal_root(hal, tmp_path):
    hal.mkdir("log")
    with hal.open("log/a.tmp", "wb") as f:
        f.write(b"x")
    hal.rename("log/a.tmp", "log/a")
    assert (tmp_path / "log" / "a").read_bytes() == b"x"
    assert hal.exists("log/a") and hal.size("log/a") == 1 and hal.listdir("log") == ["a"]
    hal.remove("log/a")
    assert not hal.exists("log/a")


def test_mcu_temperature_from_the_esp32_module(fake_machine, clock):
    from firmware.hal import Hal

    class S3:
        @staticmethod
        def mcu_temperature():
            return 41

    class Classic:
        @staticmethod
        def raw_temperature():
            return 122  # degF

    assert Hal(machine=fake_machine, clock=clock, esp32=S3).mcu_temperature_c() == 41.0
    assert Hal(machine=fake_machine, clock=clock, esp32=Classic).mcu_temperature_c() == 50.0


def test_host_clock_wraps_like_micropython():
    c = HostClock()
    top = (1 << 30) - 10
    assert c.ticks_add(top, 20) == 10
    assert c.ticks_diff(10, top) == 20
    assert c.ticks_diff(top, 10) == -20


def test_deep_sleep_wake_sources(fake_machine, clock):
    from firmware.hal import Hal

    class Esp32:
        WAKEUP_ALL_LOW = 0
        WAKEUP_ANY_HIGH = 1
        calls = []

        @classmethod
        def wake_on_ext0(cls, pin, level):
            cls.calls.append((pin, level))

    h = Hal(machine=fake_machine, clock=clock, esp32=Esp32)
    rain = halsetup.pin_in(h, 27, "up")
    assert halsetup.wake_on_pin(h, rain, 0) is True and Esp32.calls == [(rain, Esp32.WAKEUP_ALL_LOW)]
    assert halsetup.wake_reason(h) == "none"
    fake_machine.set_wake_reason(fake_machine.TIMER_WAKE)
    assert halsetup.wake_reason(h) == "timer"

    class Rp2:
        pass
    assert halsetup.wake_on_pin(Hal(machine=fake_machine, clock=clock, esp32=Rp2), rain) is False


DOC_ROWS = {  # pin-map row label in docs/firmware.md -> board file path
    "rain reed": ("inputs", "rain", "pin"), "siren relay driver": ("outputs", "siren", "pin"),
    "strobe relay driver": ("outputs", "strobe", "pin"), "status LED": ("outputs", "status_led", "pin"),
    "draw-wire wiper": ("adc", "drawwire", "pin"), "draw-wire excitation": ("adc", "excitation", "pin"),
    "4–20 mA shunt": ("adc", "loop420", "pin"), "battery divider": ("adc", "battery", "pin"),
    "RS485 UART id": ("uarts", "rs485", "id"), "RS485 TX": ("uarts", "rs485", "tx"),
    "RS485 RX": ("uarts", "rs485", "rx"), "RS485 DE": ("uarts", "rs485", "de"),
    "LoRa UART id": ("uarts", "lora", "id"), "LoRa TX": ("uarts", "lora", "tx"),
    "LoRa RX": ("uarts", "lora", "rx"), "LoRa M0": ("uarts", "lora", "m0"),
    "LoRa M1": ("uarts", "lora", "m1"), "LoRa AUX": ("uarts", "lora", "aux"),
}


def test_documented_pin_map_matches_the_board_files():
    doc = (ROOT / "docs" / "firmware.md").read_text().splitlines()
    header = next(line for line in doc if line.startswith("| function |"))
    boards = [c.strip().strip("`") for c in header.strip("|").split("|")[1:]]
    assert sorted(boards) == VARIANTS
    seen = set()
    for line in doc:
        for label, path in DOC_ROWS.items():
            if line.startswith("| " + label):
                seen.add(label)
                cells = [c.strip() for c in line.strip("|").split("|")[1:]]
                for name, cell in zip(boards, cells, strict=True):
                    data = json.loads((ROOT / "firmware" / "variants" / (name + ".json")).read_text())
                    node = data
                    for k in path:
                        node = node.get(k, {}) if isinstance(node, dict) else {}
                    want = str(node) if node != {} else None
                    got = cell.split()[0]
                    assert (got == want) if want is not None else got == "—", (label, name, cell)
    assert seen == set(DOC_ROWS)
