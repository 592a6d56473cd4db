"""The technician's path on an emulated Raspberry Pi Pico running the stock MicroPython
v1.28.0 rp2 image, end to end (select it with `pytest tests/rp2/test_pico_node.py`):

  stationctl flash --board rp2040 --app-only   (mpremote over the USB pty)
  stationctl provision 17 --profile <landslide, short intervals> --registry keys.toml
  boot -> HELLO and READINGS over UART0 -> emulated Ebyte module -> rig medium -> stationgw
  ADC input past the red rule -> siren GPIO high, ALARM at an MQTT subscriber
  power cut at a random instruction while the node runs -> reboot, nothing acked lost
  watchdog starved (Ctrl-C leaves the node in the REPL with its watchdog running) ->
  chip reset, reset cause "watchdog" in the boot line, the log carries on

The gateway, broker and subscriber are the real ones; the only fake is the radio (the
module's serial side and the air, hil/pico_air.py). Time: the node runs on emulated
time held to wall time, at about a third of real speed when busy."""
import json
import os
import re
import subprocess
import sys
import time

import pytest
from harness import ROOT

from hil.demo import GatewayProcess, write_site
from hil.pico import EmulatedPico, unavailable
from hil.pico_air import PicoAir
from hil.subscriber import Subscriber

pytestmark = [pytest.mark.rp2, pytest.mark.broker]

MPREMOTE = os.path.join(os.path.dirname(sys.executable), "mpremote")
NODE = 17
SIREN = 14
# the landslide profile with intervals short enough for a test; its red rule is a plain
# threshold on the crack meter (300 mm of its 500 mm), so one ADC step trips it
PROFILE_FILE = ROOT / "tools" / "rp2" / "landslide-test.json"
PROFILE = json.loads(PROFILE_FILE.read_text())


def stationctl(*args, timeout=600):
    r = subprocess.run([sys.executable, "-m", "tools.cli"] + list(args), cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, "stationctl %s failed:\n%s\n%s" % (args[0], r.stdout[-2000:],
                                                               r.stderr[-2000:])
    return r.stdout + r.stderr


def wait(pred, timeout, what, pico=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out after %.0f s waiting for %s%s" % (
        timeout, what, "; the node's console ends:\n" + console(pico)[-2500:] if pico else ""))


def console(pico):
    return bytes(pico.usb_out).decode(errors="replace")


def boot_lines(pico):
    return re.findall(r"node %d boot (\d+): .*reset cause (\w+)" % NODE, console(pico))


@pytest.fixture
def site(tmp_path, broker):
    why = unavailable()
    if why:
        pytest.skip("emulated Pico tier NOT RUN: " + why)
    pico = EmulatedPico().start()
    air = gw = sub = None
    try:
        pico.wait_event(lambda e: e.get("ev") == "usb", 120)
        air = PicoAir(pico, NODE).start()
        keys = {NODE: os.urandom(32)}
        cfg = write_site(str(tmp_path), broker.port, air.gateway_port, keys,
                         nodes=((NODE, "pico-crack", ("displacement.0", "rain.0", "battery.0")),))
        sub = Subscriber(broker.port, "stations", "demo", "gw1").start()
        gw = GatewayProcess(cfg, str(tmp_path)).start()
        yield pico, air, gw, sub, tmp_path
    finally:
        if gw:
            gw.close()
        if sub:
            sub.stop()
        if air:
            air.close()
        pico.close()


def test_technician_path_on_emulated_pico(site):
    pico, air, gw, sub, d = site
    port = pico.usb_port
    # 1. the app onto the stock image, as a technician does it
    stationctl("flash", "--port", port, "--board", "rp2040", "--app-only")
    # 2. provision: key from the gateway's registry, the landslide profile, the Pico pin map
    prof = d / "landslide-test.json"
    prof.write_text(json.dumps(PROFILE))
    pico.adc(0, mv=1650)            # crack meter at half its 3.3 V excitation: 250 mm
    pico.adc(2, mv=600)             # battery through its 220k/33k divider: ~4.6 V
    pico.watch(SIREN)
    out = stationctl("provision", str(NODE), "--port", port, "--profile", str(prof),
                     "--registry", str(d / "keys.toml"), "--board", "rp2040_pico",
                     "--timeout", "150")
    assert "boot" in out
    # 3. it boots, says HELLO and reports through the radio to the real gateway
    wait(lambda: len(sub.readings) >= 3, 300, "readings from node %d at the subscriber" % NODE, pico)
    assert not sub.conflicts and not sub.errors
    assert any(d_.get("ev") == "uart_first" for d_ in pico.events)
    # 4. the crack opens: the red threshold trips, the siren sounds, the ALARM arrives
    pico.adc(0, mv=2310)            # ratio 0.7: 375 mm
    wait(lambda: pico.output(SIREN) == 1, 300, "the siren GPIO to go high", pico)
    wait(lambda: sub.alarms, 300, "an ALARM at the subscriber", pico)
    alarm = next(iter(sub.alarms.values()))
    assert alarm[3] == NODE
    # 5. power cut at a random instruction while the node runs; flash is kept
    before = set(k for k in sub.readings if k[0] == NODE)
    pico.cut(within=3_000_000)
    pico.power_on()
    wait(lambda: len([b for b in boot_lines(pico)]) >= 2, 300, "the boot line after the power cut", pico)
    assert boot_lines(pico)[-1][1] == "power_on"
    wait(lambda: len(sub.readings) > len(before) + 3, 300, "readings after the power cut", pico)
    assert before <= set(sub.readings)          # nothing the gateway had is lost or changed
    assert not sub.conflicts                    # no sequence number reused after the cut
    # 6. Ctrl-C leaves the node in the REPL with its watchdog running; measure its steps
    # with the node's own loop (tools/rp2/node_steps.py), then let the watchdog starve
    n_boots = len(boot_lines(pico))
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, b"\x03")
    finally:
        os.close(fd)
    wait(lambda: "interrupted: REPL" in console(pico), 300, "the node to stop on Ctrl-C", pico)
    ops0, sent0 = pico.stats()["flash_ops"], len(air.uplink)
    m = pico.mark()
    r = subprocess.run([str(MPREMOTE), "connect", port, "run", str(ROOT / "tools/rp2/node_steps.py")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    ops1, sent1 = pico.stats()["flash_ops"], len(air.uplink)
    figures = step_figures(r.stdout, ops0, ops1, sent1 - sent0, pico.events)
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "rp2-node-figures.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures))
    assert figures["steps"] == 16 and figures["reports"] >= 1
    n_boots = len(boot_lines(pico))          # node_steps.py's run printed one too
    # starved: 8.4 s of emulated time, slow while the REPL idles on a busy machine
    ev = pico.wait_event(lambda e: e.get("ev") == "boot", 300, start=m)
    assert ev["cause"] == "watchdog"
    wait(lambda: len(boot_lines(pico)) > n_boots, 300, "the boot line after the watchdog reset", pico)
    assert boot_lines(pico)[-1][1] == "watchdog"
    count = len(sub.readings)
    wait(lambda: len(sub.readings) > count + 3, 300, "readings after the watchdog reset", pico)
    assert not sub.conflicts and not sub.errors


def step_figures(out, ops0, ops1, uplinks, events):
    """Figures from node_steps.py's lines and the emulator's counters."""
    steps = [tuple(int(x) for x in ln.split()[1:]) for ln in out.splitlines()
             if ln.startswith("step ")]
    start = [int(x) for x in next(ln for ln in out.splitlines() if ln.startswith("start")).split()[1:]]
    sampling = [us for us, _, _, sent in steps if not sent]
    report = [us for us, _, _, sent in steps if sent]
    firsts = [e["ns"] for e in events if e.get("ev") == "uart_first"]
    calls = (ops1["erase"] - ops0["erase"]) + (ops1["program"] - ops0["program"])
    return {
        "steps": len(steps), "reports": len(report),
        "heap_alloc_before_run_b": start[1], "heap_free_before_run_b": start[0],
        "heap_peak_alloc_b": max(a for _, _, a, _ in steps),
        "sampling_step_cycles_median": sorted(sampling)[len(sampling) // 2] * 125 if sampling else None,
        "report_step_cycles_median": sorted(report)[len(report) // 2] * 125 if report else None,
        "report_step_cycles_max": max(report) * 125 if report else None,
        "flash_calls": calls, "flash_erase_bytes": ops1["erase_bytes"] - ops0["erase_bytes"],
        "flash_program_bytes": ops1["program_bytes"] - ops0["program_bytes"],
        "uplink_packets": uplinks,
        "flash_calls_per_uplink": round(calls / uplinks, 1) if uplinks else None,
        "boot_to_first_frame_ms": [round(ns / 1e6) for ns in firsts],
    }
