"""Heap of the running node with the app frozen into the image, on the emulated Pico.

    python -m tools.rp2.frozen_figures [--image station|stock]

Boots tools/rp2/images/RPI_PICO-v1.28.0-station.uf2 (firmware/ and protocol/ frozen by
firmware/manifest.py), copies what is data, not code (the Pico board file and a
config.json with a fresh key: the same landslide test profile as tests/rp2), and runs
tools/rp2/node_steps.py there: the node's own loop for its steps, printing the heap
around each. No gateway answers, so every report stays in the log (the worst case for
the log's bookkeeping). Prints one JSON line. With --image stock the app must already be
on the board's flash (--flash FILE, saved by EmulatedPico.save). A stale frozen image
(built from other firmware/ or protocol/ sources than this tree's: hil.pico.frozen_stale)
is refused, since its figures would describe other firmware: `make rp2-frozen` rebuilds it."""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from hil.pico import ROOT, EmulatedPico, frozen_stale, images

MPREMOTE = os.path.join(os.path.dirname(sys.executable), "mpremote")


def config(node=17):
    prof = json.loads((ROOT / "tools" / "rp2" / "landslide-test.json").read_text())
    prof.pop("description", None)
    cfg = dict(prof, version=1, node=node, key=os.urandom(32).hex(), board="rp2040_pico")
    return json.dumps(cfg)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default="station")
    ap.add_argument("--flash")
    ap.add_argument("--stale-ok", action="store_true",
                    help="measure a frozen image built from other app sources than this "
                         "tree's anyway (the figures then say \"stale\": true)")
    a = ap.parse_args(argv)
    stale = frozen_stale() if a.image == "station" else None
    if stale and not a.stale_ok:
        raise SystemExit("frozen_figures: %s. Figures of a stale image describe other "
                         "firmware (--stale-ok measures it anyway)." % stale)
    pico = EmulatedPico(image=a.image, flash=a.flash).start()
    try:
        pico.wait_event(lambda e: e.get("ev") == "usb", 60)
        pico.adc(0, mv=1650)
        pico.adc(2, mv=600)
        pico.pin(6, 1)                       # the module's AUX: idle
        port = pico.usb_port

        def mp(*args, timeout=300):
            r = subprocess.run([MPREMOTE, "connect", port] + list(args), capture_output=True,
                               text=True, timeout=timeout)
            if r.returncode:
                raise SystemExit("mpremote %s: %s%s" % (args[0], r.stdout[-1500:], r.stderr[-1000:]))
            return r.stdout

        with tempfile.TemporaryDirectory() as d:
            c = os.path.join(d, "config.json")
            with open(c, "w") as f:
                f.write(config())
            mp("mkdir", ":firmware")
            mp("mkdir", ":firmware/variants")
            mp("cp", str(ROOT / "firmware/variants/rp2040_pico.json"), ":firmware/variants/")
            mp("cp", c, ":config.json")
            mp("cp", str(ROOT / "firmware/boot.py"), ":boot.py")   # as stationctl flash does
        t0 = time.monotonic()
        out = mp("run", str(ROOT / "tools/rp2/node_steps.py"))
        steps = [[int(x) for x in ln.split()[1:]] for ln in out.splitlines() if ln.startswith("step ")]
        start = [int(x) for x in next(ln for ln in out.splitlines() if ln.startswith("start")).split()[1:]]
        done = [int(x) for x in next(ln for ln in out.splitlines() if ln.startswith("done")).split()[1:]]
        fig = {"image": a.image, "stale": bool(stale),
               "app_digest": images()["images"].get(a.image, {}).get("app_digest"),
               "steps": len(steps),
               "heap_alloc_before_run_b": start[1],
               "heap_peak_alloc_b": max(s[2] for s in steps),
               "heap_peak_above_start_b": max(s[2] for s in steps) - start[1],
               "heap_alloc_after_run_collected_b": done[1], "heap_free_after_run_b": done[0],
               "sampling_step_cycles_median": sorted(s[0] for s in steps if not s[3])[
                   len([s for s in steps if not s[3]]) // 2] * 125,
               "wall_s": round(time.monotonic() - t0, 1)}
        print(json.dumps(fig))
    finally:
        pico.close()


if __name__ == "__main__":
    main()
