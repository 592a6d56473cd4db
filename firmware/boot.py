"""boot.py (copied to the board's root): runs before main.py on every reset.

Kept to what cannot fail: no config, no drivers, no file writes. Everything that can
go wrong happens in main.py, after its console escape (3 s, a key, the BOOT button or
a SAFE file drops to the REPL), so no state of the flash can lock a technician out."""
import gc

gc.collect()
# collect before the heap fills: the node's heap use is small and steady, and an early
# collection keeps fragmentation down for the few larger buffers (log segment, UART)
try:
    gc.threshold(gc.mem_free() // 4 + gc.mem_alloc())
except AttributeError:   # ports without gc.threshold
    pass
