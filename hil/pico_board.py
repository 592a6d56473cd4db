"""A scenario with its first node on the emulated Raspberry Pi Pico, the others on the
unix port: the real-board tier (hil/board.py) with the emulated board as the bench.

    python -m hil.pico_board storm --hours 1

The Pico runs a MicroPython v1.28.0 rp2 image from tools/rp2/images/: by default the one
with the app frozen in (the production path: only the board file, config and node runner
are copied), or the stock one with the app copied as .mpy when the frozen image is stale
(built from other firmware/ or protocol/ sources than this tree's; it says so). Its USB pty
is HIL_PORT and its UART0 pty the bench's USB-UART adapter, so the rig deploys with
mpremote and steps the node through the raw REPL on simulated time exactly as on a bench
board. Exit codes as `python -m hil board`."""
import argparse
import json
import os
import sys
import tempfile

from hil import board
from hil.pico import EmulatedPico, frozen_stale, unavailable


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario")
    ap.add_argument("--hours", type=float, default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--image", choices=("auto", "station", "stock"), default="auto",
                    help="station: the app frozen in; stock: the app copied as .mpy; auto "
                         "(default): station unless it is stale")
    a = ap.parse_args(argv)
    why = unavailable()
    if why:
        return board.not_run(why)
    image = a.image
    if image != "stock":
        stale = frozen_stale()
        if stale and image == "station":
            print("hil.pico_board: %s" % stale, file=sys.stderr)
            return 2
        if stale:
            print("hil.pico_board: running the stock image with the app copied as .mpy: %s"
                  % stale, file=sys.stderr, flush=True)
            image = "stock"
        else:
            image = "station"
    with EmulatedPico(image=image) as pico, tempfile.TemporaryDirectory(prefix="hil-pico-") as d:
        pico.wait_event(lambda e: e.get("ev") == "usb", 60)
        wiring = os.path.join(d, "wiring.json")
        with open(wiring, "w") as f:
            json.dump({"board": "rp2040_pico", "uart": [0, 9600, 0, 1],
                       "uart_port": pico.uart_port, "frozen": image == "station"}, f)
        print("hil.pico_board: the emulated Pico runs the %s image" % image, flush=True)
        env = dict(os.environ, HIL_PORT=pico.usb_port, HIL_WIRING=wiring)
        return board.main(a.scenario, environ=env, seed=a.seed, hours=a.hours)


if __name__ == "__main__":
    sys.exit(main())
