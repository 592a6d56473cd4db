"""keygen: owner-only registry file the gateway's own loader accepts, no duplicates
unless rotating, key never printed."""
import os
import stat

import pytest

from gateway import config as gconfig
from tools import cli, errors, keygen


def test_creates_registry_mode_0600_accepted_by_gateway(tmp_path, capsys):
    reg = tmp_path / "keys.toml"
    old = os.umask(0o022)
    try:
        assert cli.main(["keygen", "101", "--registry", str(reg)]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(reg.stat().st_mode) == 0o600
    keys = gconfig.load_keys(str(reg))
    assert keys.nodes() == (101,)
    out = capsys.readouterr().out
    assert "node 101: key created" in out and "provision" in out
    assert keys.get(101).hex() not in out


def test_second_node_keeps_first_and_keys_differ(tmp_path):
    reg = str(tmp_path / "keys.toml")
    keygen.keygen(101, reg)
    first = gconfig.load_keys(reg).get(101)
    keygen.keygen(102, reg)
    keys = gconfig.load_keys(reg)
    assert keys.nodes() == (101, 102)
    assert keys.get(101) == first
    assert keys.get(102) != first and len(keys.get(102)) == 32


def test_duplicate_refused_unless_rotate(tmp_path, capsys):
    reg = str(tmp_path / "keys.toml")
    keygen.keygen(7, reg)
    before = open(reg).read()
    assert cli.main(["keygen", "7", "--registry", reg]) == errors.REGISTRY
    err = capsys.readouterr().err
    assert "node 7 already has a key" in err and "--rotate" in err
    assert open(reg).read() == before
    assert cli.main(["keygen", "7", "--registry", reg, "--rotate"]) == 0
    assert "ROTATED" in capsys.readouterr().out
    assert open(reg).read() != before


def test_placeholder_entry_is_replaced(tmp_path):
    reg = tmp_path / "keys.toml"
    reg.write_text('[keys]\n"101" = "%s"\n' % gconfig.KEY_PLACEHOLDER)
    os.chmod(reg, 0o644)
    keygen.keygen(101, str(reg))
    assert gconfig.load_keys(str(reg)).nodes() == (101,)
    assert stat.S_IMODE(reg.stat().st_mode) == 0o600


def test_other_placeholders_block_with_the_node_named(tmp_path):
    reg = tmp_path / "keys.toml"
    reg.write_text('[keys]\n"102" = "%s"\n' % gconfig.KEY_PLACEHOLDER)
    with pytest.raises(errors.ToolError) as e:
        keygen.keygen(101, str(reg))
    assert 'keys."102"' in e.value.message and "keygen 102" in e.value.message


def test_bad_toml_named(tmp_path):
    reg = tmp_path / "keys.toml"
    reg.write_text("[keys\n")
    with pytest.raises(errors.ToolError) as e:
        keygen.keygen(101, str(reg))
    assert e.value.code == errors.REGISTRY and str(reg) in e.value.message
    assert reg.read_text() == "[keys\n"


def test_node_id_range_checked_by_cli(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["keygen", "70000", "--registry", "x.toml"])
    assert e.value.code == 2
    assert "allowed 1..65534" in capsys.readouterr().err
