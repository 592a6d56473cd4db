"""A CONFIG downlink on the MicroPython unix port (tests/mpy/config_drop_check.py): the
config checks and the CBOR decoder are loaded for it and dropped again where boot
dropped them (also when the CONFIG is refused), and left loaded where they were loaded."""
import pytest

pytestmark = pytest.mark.mpy


def test_config_checks_are_dropped_only_where_boot_dropped_them(micropython_module, tmp_path):
    r = micropython_module("config_drop_check", heap="256K", args=[str(tmp_path)], timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "CONFIG_DROP ok=1 failures=0" in r.stdout, r.stdout
