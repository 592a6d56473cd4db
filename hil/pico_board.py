"""A scenario with its first node on the emulated Raspberry Pi Pico, the others on the
unix port: the real-board tier (hil/board.py) with the emulated board as the bench.

    python -m hil.pico_board storm --hours 1

The Pico runs the stock MicroPython v1.28.0 rp2 image (tools/rp2/images/); its USB pty is
HIL_PORT and its UART0 pty the bench's USB-UART adapter, so the rig deploys the node
runner with mpremote and steps it through the raw REPL on simulated time exactly as on a
bench board. Exit codes as `python -m hil board`."""
import argparse
import json
import os
import sys
import tempfile

from hil import board
from hil.pico import EmulatedPico, unavailable


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario")
    ap.add_argument("--hours", type=float, default=None)
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args(argv)
    why = unavailable()
    if why:
        return board.not_run(why)
    with EmulatedPico() as pico, tempfile.TemporaryDirectory(prefix="hil-pico-") as d:
        pico.wait_event(lambda e: e.get("ev") == "usb", 60)
        wiring = os.path.join(d, "wiring.json")
        with open(wiring, "w") as f:
            json.dump({"board": "rp2040_pico", "uart": [0, 9600, 0, 1],
                       "uart_port": pico.uart_port}, f)
        env = dict(os.environ, HIL_PORT=pico.usb_port, HIL_WIRING=wiring)
        return board.main(a.scenario, environ=env, seed=a.seed, hours=a.hours)


if __name__ == "__main__":
    sys.exit(main())
