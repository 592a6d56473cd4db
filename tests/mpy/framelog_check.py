# Frame-log heap checks on the MicroPython unix port, loaded as .mpy as on a board
# (tests/firmware/test_framelog_mpy.py runs it). argv[-1] is an empty work directory.
#
#  * the boot-only scan (firmware/logscan.py), dropped after open_log() as boot code does: a second
#    open leaves the heap where the first left it, and the module's heap comes back
#  * thinning (which a full log does on the alarm path) loads no module: the channel
#    kinds it sums are taken when the log is built, and protocol.channels may be gone
#  * the steps the node runs all day allocate a few hundred bytes, not a list of every
#    offset in a segment (gc.disable() around one call, gc.mem_alloc() before/after)
#
# Prints one line per failed check and a JSON summary (with the figures) as the last line.
import gc
import json
import sys

from firmware.hal import Hal
from firmware.nodeclock import NodeClock
from protocol import readings
from protocol.frame import ALARM, READINGS

ROOT = sys.argv[-1]
failures = []
figures = {}
checks = [0]


def check(name, ok, detail=""):
    checks[0] += 1
    if not ok:
        failures.append(name)
        print("FAIL %s %s" % (name, detail))


class NoMachine:
    pass


class StillClock:
    def ticks_ms(self):
        return 0

    ticks_us = ticks_diff = ticks_add = sleep_ms = sleep_us = ticks_ms


def mem():
    gc.collect()
    return gc.mem_alloc()


def alloc_of(name, fn, *args):
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    try:
        r = fn(*args)
    finally:
        after = gc.mem_alloc()
        gc.enable()
    figures[name] = after - before
    return r


def payload(n=10):
    return readings.encode([readings.Block(0x10, (n - 1) * 60, 60, [100 + k for k in range(n)]),
                            readings.Block(0x08, (n - 1) * 60, 60, [2] * n)])


import protocol.crc16  # noqa: E402,F401  (framelog's own imports, loaded first)
from firmware.unload import unload  # noqa: E402

m0 = mem()
from firmware.framelog import FrameLog  # noqa: E402

figures["import_framelog"] = mem() - m0
check("channels not loaded at import", "protocol.channels" not in sys.modules)

hal = Hal(machine=NoMachine(), clock=StillClock(), root="")   # as on a board: no path prefix


def open_log(log, clock):
    """As boot code opens the log (firmware/main.py): the scan loaded for the call and
    dropped again."""
    from firmware.logscan import open_log as scan
    boot = scan(log, clock)
    scan = None
    unload("firmware.logscan")
    return boot


def new_log():
    return FrameLog(hal, ROOT + "/log", capacity=16384, segment_bytes=4096, seq_block=32)


PAY = payload()
log = new_log()
open_log(log, NodeClock(0))
for k in range(150):
    s = log.take_seq()
    log.append(s, ALARM if k == 120 else READINGS, PAY, True, log.boot, 1000 + s)
log = None

# --- open: the scan module is loaded for the call and dropped ------------------------
log = new_log()
m_before = mem()
boot = open_log(log, NodeClock(0))
m_open1 = mem()
check("open scans the records", log.depth() == 150 and len(log.alarms) == 1, repr(log.depth()))
check("logscan unloaded after open", "firmware.logscan" not in sys.modules)
check("logscan not left on the package", "logscan" not in sys.modules["firmware"].__dict__)
open_log(log, NodeClock(0))
m_open2 = mem()
figures["open_retained"] = m_open1 - m_before
figures["reopen_growth"] = m_open2 - m_open1
check("a second open keeps the heap flat", m_open2 - m_open1 <= 256, repr(m_open2 - m_open1))

import firmware.logscan  # noqa: E402,F401  (held only by sys.modules and the package)

m_with_scan = mem()
unload("firmware.logscan")
freed = m_with_scan - mem()
figures["logscan_heap"] = freed
check("unloading the scan gives its heap back", freed > 1000, repr(freed))

# --- per-call allocation on the day's steps ------------------------------------------
s = log.take_seq()
alloc_of("append", log.append, s, READINGS, PAY, True, log.boot, 9000)
alloc_of("take_seq", log.take_seq)
alloc_of("write_meta", log._write_meta)
r = alloc_of("next_record_alarm", log.next_record)
check("the alarm goes first", r.mtype == ALARM, repr(r))
alloc_of("ack_hint", log.ack, [(r.seq, r.seq)], (r.seq, r.seg, r.index))
g = log.segs[0]
for i in range(40):
    g.set_acked(i)
r = alloc_of("next_record", log.next_record)
check("next_record skips acked", r is not None and r.index == 40, repr(r))
alloc_of("get", log.get, g.no, 60)
alloc_of("oldest_unacked", log.oldest_unacked)
alloc_of("ack", log.ack, [(r.seq, r.seq)])
# budgets: file objects and path strings are in these; building the list of a 4 KB
# segment's offsets alone used to cost 5-7 KB
for name, budget in (("append", 768), ("write_meta", 1024), ("next_record", 1024), ("get", 1024),
                     ("oldest_unacked", 512), ("ack", 768), ("ack_hint", 768),
                     ("next_record_alarm", 1024)):
    check("%s allocates <= %d B" % (name, budget), figures[name] <= budget, repr(figures[name]))

# --- thinning loads nothing: the node drops protocol.channels after boot --------------
unload("protocol.channels")
log.capacity = 6144
for _ in range(20):
    s = log.take_seq()
    log.append(s, READINGS, PAY, True, log.boot, 9000 + s)
check("the log thinned", log.thinned > 0, repr(log.thinned))
check("thinning loaded no module", "protocol.channels" not in sys.modules)

print(json.dumps({"ok": not failures, "checks": checks[0], "boot": boot, "figures": figures}))
