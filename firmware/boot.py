"""boot.py (copied to the board's root): runs before main.py on every reset.

Kept to what cannot fail: no config, no drivers, no file writes. Everything that can
go wrong happens in main.py, after its console escape (3 s, a key, the BOOT button or
a SAFE file drops to the REPL), so no state of the flash can lock a technician out."""
import gc
import sys

# A frozen app (firmware/manifest.py) comes before files: the board files live in
# firmware/variants/ on the filesystem, and that directory would otherwise hide the
# frozen `firmware` package ("no module named 'firmware.main'", found on the rp2 port).
# On an image without the app frozen, imports fall through to the .mpy files as before.
if ".frozen" in sys.path:
    sys.path.remove(".frozen")
    sys.path.insert(0, ".frozen")
gc.collect()
# collect before the heap fills: the node's heap use is small and steady, and an early
# collection keeps fragmentation down for the few larger buffers (log segment, UART)
try:
    gc.threshold(gc.mem_free() // 4 + gc.mem_alloc())
except AttributeError:   # ports without gc.threshold
    pass
