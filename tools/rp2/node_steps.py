# Run on a board (mpremote run tools/rp2/node_steps.py) with the node flashed and
# provisioned: runs the node's own loop (firmware.main.run) for STEPS steps and prints
# one line per step: "step <us> <alloc_before> <alloc_after> <frames_sent_in_step>",
# then "done <mem_free> <mem_alloc>" after a collection. Microseconds are the chip's
# timer (on the emulated Pico, emulated time: cycles = us * 125 at 125 MHz).
import gc
import time

from firmware import main
from firmware.hal import Hal

STEPS = 16
_t = [0, 0, 0]


def probe(node, before):
    r = node.radio
    if before:
        _t[1] = gc.mem_alloc()
        _t[2] = r.sent if r else 0
        _t[0] = time.ticks_us()
    else:
        us = time.ticks_diff(time.ticks_us(), _t[0])
        a = gc.mem_alloc()
        print("step", us, _t[1], a, (r.sent if r else 0) - _t[2])


gc.collect()
print("start", gc.mem_free(), gc.mem_alloc())
main.run(Hal(), print, max_steps=STEPS, probe=probe)
gc.collect()
print("done", gc.mem_free(), gc.mem_alloc())
