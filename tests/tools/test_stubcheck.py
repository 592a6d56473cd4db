"""The HAL's machine/esp32 calls type-check against each real port's PyPI stubs
(tools/stubcheck.py), and the check does catch a call the port does not have."""
import shutil

import pytest

from tools import stubcheck

pytestmark = pytest.mark.skipif(
    not all((stubcheck.STUBS / p / "machine.pyi").exists() for p in stubcheck.PORTS),
    reason="port stubs not installed: run `make setup` (tools/setup/ensure-stubs.sh)")


@pytest.mark.parametrize("port", sorted(stubcheck.PORTS))
def test_firmware_hal_conforms_to_the_port(port, tmp_path):
    assert stubcheck.check(port, work=tmp_path) == []


def test_a_call_the_port_lacks_is_an_error(tmp_path):
    src = tmp_path / "src"
    for top in ("firmware", "protocol"):
        shutil.copytree(stubcheck.ROOT / top, src / top,
                        ignore=shutil.ignore_patterns("__pycache__"))
    hs = src / "firmware" / "halsetup.py"
    # an esp32-only constant on a path every port runs, and a keyword no port's WDT has
    hs.write_text(hs.read_text() + "\n\ndef _bad(hal):\n"
                  "    a = hal.machine.TIMER_WAKE\n"
                  "    return hal.machine.WDT(timeout=1000, window=5), a\n")
    rp2 = stubcheck.check("rp2", root=src, work=tmp_path / "w")
    esp = stubcheck.check("esp32", root=src, work=tmp_path / "w")
    assert any("TIMER_WAKE" in e for e in rp2), rp2
    assert not any("TIMER_WAKE" in e for e in esp), esp
    assert any("window" in e or "WDT" in e for e in rp2) and any("WDT" in e or "window" in e for e in esp)
    assert all("firmware/halsetup.py" in e for e in rp2 + esp)
