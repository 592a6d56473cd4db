"""The emulated Pico behaves as a bench board does for its tools: mpremote over the USB
pty, flash that survives resets and power cuts, pins and ADC driven from outside, and
the watchdog and machine.reset() rebooting the chip with the reset cause a real RP2040
reports (machine.reset() is a watchdog reset on this chip)."""
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.rp2

MPREMOTE = Path(sys.executable).parent / "mpremote"
PWRON_RESET, WDT_RESET = 1, 3


def mp(pico, *args, timeout=60):
    r = subprocess.run([str(MPREMOTE), "connect", pico.usb_port] + list(args),
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def booted(pico, mark, cause):
    ev = pico.wait_event(lambda e: e.get("ev") == "boot", 60, start=mark)
    assert ev["cause"] == cause
    pico.wait_event(lambda e: e.get("ev") == "usb", 120, start=mark)


def test_repl_pins_adc(pico):
    assert mp(pico, "exec", "import machine; print(machine.reset_cause())") == str(PWRON_RESET)
    probe = "from machine import ADC, Pin; print(ADC(26).read_u16() >> 4, Pin(10, Pin.IN, Pin.PULL_UP).value())"
    # undriven: the pull-up holds GP10 high; GP26 floats at 0 here
    assert mp(pico, "exec", probe) == "0 1"
    assert pico.adc(0, mv=1650) == 2048
    pico.pin(10, 0)
    assert mp(pico, "exec", probe) == "2048 0"
    pico.pin(10, None)
    assert mp(pico, "exec", probe).endswith(" 1")


def test_outputs_are_seen_with_their_time(pico):
    pico.watch(14)
    m = pico.mark()
    mp(pico, "exec", "from machine import Pin; p = Pin(14, Pin.OUT); p(1)")
    ev = pico.wait_event(lambda e: e.get("ev") == "pin" and e["pin"] == 14 and e["value"] == 1,
                         60, start=m)
    assert ev["ns"] > 0
    assert pico.output(14) == 1


def test_flash_survives_reset_watchdog_and_power_cut(pico):
    mp(pico, "exec", "f = open('log.bin', 'wb'); f.write(b'x' * 5000); f.close()")
    ops = pico.stats()["flash_ops"]
    assert ops["program"] > 0 and ops["erase"] > 0        # littlefs really wrote the flash
    m = pico.mark()
    mp(pico, "exec", "--no-follow", "import machine; machine.reset()")
    booted(pico, m, "watchdog")
    assert mp(pico, "exec", "import machine, os; print(machine.reset_cause(), os.stat('log.bin')[6])") \
        == "%d 5000" % WDT_RESET
    m = pico.mark()
    mp(pico, "exec", "--no-follow", "from machine import WDT; w = WDT(timeout=300)")
    booted(pico, m, "watchdog")                           # starved: the chip resets
    assert mp(pico, "exec", "import machine; print(machine.reset_cause())") == str(WDT_RESET)
    pico.cut()
    m = pico.mark()
    pico.power_on()
    booted(pico, m, "power")
    assert mp(pico, "exec", "import machine, os; print(machine.reset_cause(), os.stat('log.bin')[6])") \
        == "%d 5000" % PWRON_RESET
