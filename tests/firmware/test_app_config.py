"""Node config on flash: checked at boot with errors naming file, key and allowed
values; fallback to the last good config; safe defaults never transmit."""
import json

import pytest
from fake_hw import fs_at

from firmware import nodeconfig
from firmware.nodeconfig import ConfigError, checked

KEY = bytes(range(1, 33)).hex()




def good(**over):
    raw = {"version": 2, "node": 7, "key": KEY, "board": "esp32_devkitc",
           "channels": [{"id": "rain.0", "driver": "rain"}, {"id": 0x10, "driver": "drawwire", "cal": [[1, 0], [2, 5]]}],
           "rules": [[1, 0x08, 3, 3, 3600, 300, 50, 1800]]}
    raw.update(over)
    return raw


@pytest.mark.parametrize("over, key, words", [
    ({"node": 0}, "node", "1..65535"),
    ({"key": "00" * 32}, "key", "all-zero"),
    ({"key": "abc"}, "key", "hex"),
    ({"key": None}, "key", "keygen"),
    ({"channels": []}, "channels", "list"),
    ({"channels": [{"id": "lava.0", "driver": "rain"}]}, "channels[0].id", "allowed"),
    ({"channels": [{"id": "rain.0", "driver": "magic"}]}, "channels[0].driver", "rain, drawwire"),
    ({"intervals": {"sample_s": 0}}, "intervals.sample_s", "1..86400"),
    ({"intervals": {"sample_s": 30, "intensified_s": 60}}, "intervals", "intensified_s <= sample_s"),
    ({"intervals": {"every": 5}}, "intervals.every", "allowed sample_s"),
    ({"rules": [[1, 0x18, 1, 3, 1, 3000, 100, 2, 600]]}, "rules[0].chan", "not a channel of this node"),
    ({"rules": [[1, 0x08, 9, 3]]}, "rules[0]", "kind"),
    ({"sleep": "deep"}, "sleep", "none, light"),
])
def test_errors_name_file_key_and_allowed_values(over, key, words):
    with pytest.raises(ConfigError) as e:
        checked(good(**over), "config.json")
    msg = str(e.value)
    assert msg.startswith("config.json: key '%s'" % key), msg
    assert words in msg
    assert KEY not in msg


def test_repr_never_shows_the_key():
    cfg = checked(good())
    assert KEY not in repr(cfg) and "node 7" in repr(cfg)
    assert cfg.key == bytes(range(1, 33))


def fs(tmp_path):
    (tmp_path / "firmware" / "variants").mkdir(parents=True, exist_ok=True)
    (tmp_path / "firmware" / "variants" / "esp32_devkitc.json").write_text("{}")
    return fs_at(tmp_path)


def test_a_formatted_config_is_copied_to_the_good_file_once(tmp_path):
    """config.json as a technician writes it (indented) differs in text from the good
    copy json.dumps writes; the copy is rewritten only when the config changes."""
    (tmp_path / "config.json").write_text(json.dumps(good(), indent=2))
    nodeconfig.load(fs(tmp_path), lambda s: None)
    good_file = tmp_path / "config.good.json"
    assert json.loads(good_file.read_text()) == good()
    good_file.write_text(good_file.read_text() + " ")    # a mark a rewrite would remove
    nodeconfig.load(fs(tmp_path), lambda s: None)
    assert good_file.read_text().endswith(" ")
    (tmp_path / "config.json").write_text(json.dumps(good(version=3), indent=2))
    nodeconfig.load(fs(tmp_path), lambda s: None)
    assert json.loads(good_file.read_text())["version"] == 3


def test_broken_config_falls_back_to_last_good(tmp_path):
    said = []
    (tmp_path / "config.json").write_text(json.dumps(good()))
    assert nodeconfig.load(fs(tmp_path), said.append).version == 2
    assert json.loads((tmp_path / "config.good.json").read_text())["version"] == 2
    (tmp_path / "config.json").write_text(json.dumps(good(version=3, node=0)))
    cfg = nodeconfig.load(fs(tmp_path), said.append)
    assert cfg.version == 2 and not cfg.safe
    assert any("config.json: key 'node'" in s for s in said)
    assert any("last good" in s for s in said)
    assert not any(KEY in s for s in said)


def test_no_valid_config_samples_on_safe_defaults_without_a_key(tmp_path):
    said = []
    (tmp_path / "config.json").write_text("{")
    cfg = nodeconfig.load(fs(tmp_path), said.append)
    assert cfg.safe and cfg.key is None and cfg.chan_ids() == [0x28]
    assert any("not valid JSON" in s for s in said)
    assert any("radio off" in s for s in said)


def test_downlink_merges_intervals_and_persists(tmp_path):
    from protocol import messages as M
    f = fs(tmp_path)
    nodeconfig.save_running(f, good())          # where a board has its running config
    cfg = checked(good())
    new, res, why = nodeconfig.apply_downlink(f, cfg, {M.C_VERSION: 3, M.C_INTERVALS: {M.I_REPORT_S: 900}})
    assert res == M.RESULT_OK and new.intervals["report_s"] == 900 and new.intervals["sample_s"] == 60
    assert nodeconfig.load(f, lambda s: None).version == 3
    new2, res, why = nodeconfig.apply_downlink(f, new, {M.C_VERSION: 4, M.C_INTERVALS: {9: 1}})
    assert new2 is None and res == M.RESULT_REJECTED and "interval key" in why
    assert nodeconfig.load(f, lambda s: None).version == 3       # nothing changed


@pytest.mark.parametrize("good_file", [None, "{", json.dumps(good(version=1)), "[2]"])
def test_downlink_is_refused_when_the_running_config_is_not_on_flash(tmp_path, good_file):
    # the node does not keep the config's JSON in RAM: a downlink builds on
    # config.good.json, so a missing, unreadable or other-version file refuses it
    from protocol import messages as M
    f = fs(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(good()))
    if good_file is not None:
        (tmp_path / "config.good.json").write_text(good_file)
    cfg = checked(good())
    new, res, why = nodeconfig.apply_downlink(f, cfg, {M.C_VERSION: 3, M.C_INTERVALS: {M.I_REPORT_S: 900}})
    assert new is None and res == M.RESULT_REJECTED
    assert "config.good.json" in why and "stationctl provision" in why and len(why) <= 80
    assert json.loads((tmp_path / "config.json").read_text()) == good()        # nothing written
    assert (tmp_path / "config.good.json").exists() == (good_file is not None)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_the_running_config_is_on_flash_after_boot_and_after_a_downlink(tmp_path):
    # the invariant apply_downlink relies on: booted from config.json or from the last
    # good one, or after a downlink, config.good.json is the running config
    from protocol import messages as M
    f = fs(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(good(), indent=2))     # as a person writes it
    cfg = nodeconfig.load(f, lambda s: None)
    assert json.loads((tmp_path / "config.good.json").read_text()) == good()
    new, res, _ = nodeconfig.apply_downlink(f, cfg, {M.C_VERSION: 3, M.C_RULES: []})
    assert res == M.RESULT_OK and new.rules == []
    for name in ("config.json", "config.good.json"):
        assert json.loads((tmp_path / name).read_text()) == good(version=3, rules=[])
    (tmp_path / "config.json").write_text("{")                               # broken later
    cfg = nodeconfig.load(f, lambda s: None)
    assert cfg.version == 3
    new, res, _ = nodeconfig.apply_downlink(f, cfg, {M.C_VERSION: 4})
    assert res == M.RESULT_OK and new.version == 4 and new.rules == []
    assert nodeconfig.load(f, lambda s: None).version == 4
    assert not hasattr(new, "raw") and not hasattr(cfg, "raw")                  # not kept in RAM
