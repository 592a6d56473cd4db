"""boot/main: the console escape, crash restarts that back off, and the wiring from a
real board file and config to drivers, relays, watchdog and sleep (fake machine)."""
import json
import shutil
from pathlib import Path

from fake_hw import load_fake_machine

from firmware import main as node_main
from firmware.hal import Hal
from firmware.main import restart_delay_s
from firmware.startup import Unavailable, build_sources, escape_requested

ROOT = Path(__file__).resolve().parents[2]
KEY = bytes(range(1, 33)).hex()


def make_hal(tmp_path):
    m = load_fake_machine()
    clock = m.FakeClock()
    m.use_clock(clock)
    (tmp_path / "firmware" / "variants").mkdir(parents=True)
    for f in (ROOT / "firmware" / "variants").glob("*.json"):
        shutil.copy(f, tmp_path / "firmware" / "variants" / f.name)
    return m, clock, Hal(machine=m, clock=clock, root=str(tmp_path))


def node_config(**over):
    raw = {"version": 5, "node": 9, "key": KEY, "board": "esp32_devkitc",
           "channels": [{"id": "rain.0", "driver": "rain", "mm_per_tip": 0.2},
                        {"id": "displacement.0", "driver": "drawwire", "cal": [[100000, 0], [900000, 50000]]},
                        {"id": "water_level.0", "driver": "loop420", "value_4ma": 0, "value_20ma": 10000},
                        {"id": "battery.0", "driver": "battery"}],
           "rules": [[1, 0x18, 1, 3, 1, 3000, 100, 2, 600]],
           "intervals": {"sample_s": 60, "intensified_s": 10, "report_s": 600, "status_s": 3600},
           "sleep": "light", "radio": {"model": "e22"}}
    raw.update(over)
    return raw


def test_safe_file_key_and_pin_each_drop_to_the_repl(tmp_path):
    m, clock, hal = make_hal(tmp_path)
    said = []
    assert not escape_requested(hal, said.append, key_pressed=lambda ms: False, seconds=1)
    assert "press a key" in said[0]
    assert escape_requested(hal, said.append, key_pressed=lambda ms: True, seconds=1)

    def hold_boot_button(ms):
        m.pin(0).drive(0)
        return False
    assert escape_requested(hal, said.append, key_pressed=hold_boot_button, seconds=1)
    (tmp_path / "SAFE").write_text("")
    assert escape_requested(hal, said.append, key_pressed=lambda ms: False, seconds=1)


def test_escape_works_with_a_broken_config(tmp_path):
    m, clock, hal = make_hal(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    assert escape_requested(hal, lambda s: None, key_pressed=lambda ms: True, seconds=1)


def test_crash_restarts_after_a_growing_delay_not_a_tight_loop(tmp_path):
    m, clock, hal = make_hal(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(node_config()))
    # a board file that passes the config check but breaks the app when it is parsed
    (tmp_path / "firmware" / "variants" / "esp32_devkitc.json").write_text("{broken")
    said = []
    t0 = clock.ticks_ms()
    no_key = lambda ms: False   # noqa: E731
    assert node_main.main(hal, said.append, 0, no_key) == "stopped"
    first = clock.ticks_diff(clock.ticks_ms(), t0)
    assert node_main.main(hal, said.append, 0, no_key) == "stopped"
    assert node_main.crash_count(hal) == 2
    assert first >= 10000
    assert any("restarting in 20 s" in s for s in said)
    assert [restart_delay_s(n) for n in range(7)] == [10, 20, 40, 80, 160, 300, 300]


def test_wiring_runs_the_node_with_watchdog_and_light_sleep(tmp_path):
    m, clock, hal = make_hal(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(node_config()))
    said = []
    node = node_main.run(hal, said.append, max_steps=400)
    kinds = {c: type(s).__name__ for c, s in node.sources.items()}
    assert kinds == {0x08: "RainGauge", 0x10: "DrawWire", 0x18: "Loop420", 0x28: "Battery"}
    assert m.pin(27).irq_wake == m.SLEEP          # a tip wakes the ESP32 from light sleep
    assert m.wdt().feeds >= 300 and m.wdt().timeout == 60000
    assert any(kind == "light" for kind, ms in m.sleeps)
    assert clock.ticks_ms() > 600000                     # simulated time really passed
    assert node.log.depth() >= 1                         # readings were logged
    # the fake ADCs read 0 V: every analogue channel is a fault, never a number
    for c in (0x10, 0x18, 0x28):
        st = [x for x in node.sampler.chans if x.chan == c][0]
        assert st.last_fault != 0 or st.last_t is None
    assert not any("Traceback" in s for s in said)
    # the drivers and the radio took their settings at boot: the running config keeps none
    assert node.cfg.chan_ids() == [0x08, 0x10, 0x18, 0x28]
    assert all(c[2] is None for c in node.cfg.channels) and node.cfg.radio is None
    # and a CONFIG downlink, built on config.good.json (which boot wrote), keeps it so
    from firmware import nodeconfig
    from protocol import messages as M
    new, res, _ = nodeconfig.apply_downlink(hal, node.cfg, {M.C_VERSION: 6, M.C_RULES: []})
    assert res == M.RESULT_OK and new.version == 6 and new.rules == []
    assert new.channels is node.cfg.channels and new.radio is None
    saved = json.loads((tmp_path / "config.good.json").read_text())
    assert saved == node_config(version=6, rules=[])      # params and radio still on flash


def test_a_driver_that_cannot_be_built_reports_a_fault(tmp_path):
    from firmware import board as board_mod
    from firmware.nodeconfig import checked
    m, clock, hal = make_hal(tmp_path)
    cfg = checked(node_config(channels=[{"id": "displacement.0", "driver": "drawwire"}], rules=[]))
    board = board_mod.load(hal, "esp32_devkitc")
    said = []
    src = build_sources(hal, board, cfg, said.append)[0x10]
    assert isinstance(src, Unavailable) and src.read() == (None, 12)
    assert "cal" in said[0]


def test_config_naming_a_missing_board_falls_back(tmp_path):
    from firmware import nodeconfig
    m, clock, hal = make_hal(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(node_config(board="no_such_board")))
    said = []
    cfg = nodeconfig.load(hal, said.append)
    assert cfg.safe
    assert any("key 'board'" in s and "esp32_devkitc" in s for s in said)
