import pytest

from hil.pico import EmulatedPico, unavailable


@pytest.fixture
def pico(tmp_path):
    """A fresh emulated Pico running the committed stock image (skips without Node)."""
    why = unavailable()
    if why:
        pytest.skip("emulated Pico tier NOT RUN: " + why)
    p = EmulatedPico().start()
    try:
        p.wait_event(lambda e: e.get("ev") == "usb", 120)
        yield p
    finally:
        p.close()
