"""provision against the stand-in board: config written through mpremote's transport,
verified, taken by the real node application at boot (its console line awaited)."""
import json

import pytest

from firmware import nodeconfig
from gateway import config as gconfig
from tools import cli, errors, provision


def test_provision_landslide_then_river_bumps_the_version(flashed, registry, capsys):
    assert cli.main(["provision", "--port", flashed.port, "17", "--registry", registry,
                     "--profile", "landslide", "--timeout", "30"]) == 0
    out = capsys.readouterr().out
    assert "node 17 is up: node 17 boot" in out and "NodeConfig(v1 node 17" in out
    raw = json.loads((flashed.fs / "config.json").read_text())
    cfg = nodeconfig.checked(raw)
    assert cfg.key == gconfig.load_keys(registry).get(17)
    assert [c[1] for c in cfg.channels] == ["drawwire", "rain", "battery"]
    assert cfg.key.hex() not in out
    assert cli.main(["provision", "--port", flashed.port, "17", "--registry", registry,
                     "--profile", "river", "--timeout", "30"]) == 0
    assert "NodeConfig(v2 node 17" in capsys.readouterr().out
    assert json.loads((flashed.fs / "config.json").read_text())["version"] == 2


def test_profile_file_with_a_bad_rule_names_the_key_and_touches_nothing(flashed, registry,
                                                                        tmp_path, capsys):
    prof = dict(provision.PROFILES["rain"])
    prof["rules"] = [[1, 0x08, 3, 2, 3600, 300, 50, 1800], [2, 0x08, 3, 2, 30, 300, 50, 1800]]
    p = tmp_path / "site7.json"
    p.write_text(json.dumps(prof))
    rc = cli.main(["provision", "--port", flashed.port, "17", "--registry", registry,
                   "--profile", str(p)])
    err = capsys.readouterr().err
    assert rc == errors.CONFIG_INVALID
    assert "profile site7.json: key 'rules[1]'" in err and "window_s" in err
    assert not (flashed.fs / "config.json").exists()


def test_app_missing_says_flash_first(standin, registry, capsys):
    rc = cli.main(["provision", "--port", standin.port, "17", "--registry", registry,
                   "--profile", "rain"])
    assert rc == errors.CONFIG_INVALID
    assert "the node application is not on the board" in capsys.readouterr().err


def test_dry_run_hides_the_key(registry, capsys):
    assert cli.main(["provision", "--port", "/dev/null", "17", "--registry", registry,
                     "--profile", "river", "--dry-run"]) == 0
    out = capsys.readouterr().out
    d = json.loads(out)
    assert d["node"] == 17 and "not shown" in d["key"]
    assert gconfig.load_keys(registry).get(17).hex() not in out


@pytest.mark.parametrize("name", sorted(provision.PROFILES))
def test_builtin_profiles_pass_the_node_validators_on_every_board(name, registry):
    key = gconfig.load_keys(registry).get(17)
    for variant in ("esp32_devkitc", "esp32s3_devkitc", "rp2040_pico"):
        prof, label = provision.load_profile(name)
        raw = provision.build_config(17, key, prof, label, provision.load_variant(variant), 1)
        assert nodeconfig.checked(raw).node == 17


def test_a_keys_file_the_gateway_would_refuse_is_refused_first(registry, capsys):
    # provision once accepted a 0644 keys file that the gateway then refused
    import os
    os.chmod(registry, 0o644)
    rc = cli.main(["provision", "--port", "/dev/nonexistent-port", "17", "--registry",
                   registry, "--profile", "rain"])
    err = capsys.readouterr().err
    assert rc == errors.REGISTRY and "chmod 600 %s" % registry in err and "0644" in err


def test_provision_checks_the_site_config_lists_the_node(registry, tmp_path, capsys):
    # "the gateway knows its key" was printed while the gateway only warned about the node
    site = tmp_path / "site.toml"
    site.write_text('[site]\nid = "s"\ngateway_id = "g"\n[radio]\nport = "/dev/ttyAMA0"\n'
                    'keys_file = "keys.toml"\n[[nodes]]\nid = 18\nname = "other"\n')
    rc = cli.main(["provision", "--port", "/dev/nonexistent-port", "17", "--registry",
                   registry, "--profile", "rain"])
    err = capsys.readouterr().err
    assert rc == errors.CONFIG_INVALID
    assert "node 17 is not in %s" % site in err
    assert '[[nodes]]\nid = 17' in err and 'channels = ["rain.0", "battery.0"]' in err
    other = tmp_path / "other-keys.toml"
    site.write_text(site.read_text().replace("keys.toml", str(other)))
    rc = cli.main(["provision", "--port", "/dev/nonexistent-port", "17", "--registry",
                   registry, "--profile", "rain", "--site-config", str(site)])
    assert rc == errors.CONFIG_INVALID and "--registry %s" % other in capsys.readouterr().err
