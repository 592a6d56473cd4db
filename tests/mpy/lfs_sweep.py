# Torn-write sweep of the node's frame log on real littlefs (MicroPython's VfsLfs2 over
# a RAM block device), run by tests/firmware/test_lfs_sweep.py.
#
# A representative sequence (appends, seqs taken for frames that are never logged,
# acks that delete segments, thinning when the log is full, meta.json rewrites, a
# reboot in the middle) is run once to count the flash operations (programs and
# erases). Then, for every one of them, from a freshly formatted flash: run the same
# sequence and lose power at that operation (the program or erase is torn: nothing,
# half or all but the last bytes land, cycling), remount what is left, open the log as
# the node does at boot, and check: it opens; every record the node logged and the
# gateway did not ack is still there (or counted as dropped by the bound); thinning
# lost no rain; no seq on flash twice; the next seq is above every seq ever handed out.
#
# argv: [rename] [first] [part=i/n] [steps=N] [compile-only]
#   rename     sabotage: a file is replaced by remove-then-rename (not atomic), the
#              twin that must make the sweep fail
#   first      stop at the first failing point
#   part=i/n   only points i+1, i+1+n, ... (n processes share the sweep)
#   steps=N    a longer sequence (make soak)
# Prints one line per failed point ("FAIL ...") and a JSON summary as the last line.
import gc
import json
import sys

import vfs

from firmware.framelog import FrameLog
from firmware.hal import Hal
from firmware.logscan import open_log
from protocol import readings
from protocol.frame import READINGS

BLOCK = 4096             # NOR flash erase block, as on an ESP32 / RP2040
BLOCKS = 24
MOUNT = "/sweepflash"
STEPS = 32                       # make test; make soak passes steps=160
ARGS = sys.argv[1:]
SABOTAGE = "rename" if "rename" in ARGS else ""
FIRST = "first" in ARGS              # stop at the first failing point
PART = [0, 1]                        # "part=i/n": points i+1, i+1+n, ... (parallel runs)
for _a in ARGS:
    if _a.startswith("part="):
        PART = [int(v) for v in _a[5:].split("/")]
    if _a.startswith("steps="):
        STEPS = int(_a[6:])


ERASED = b"\xff" * BLOCK
EIO = -5


class FlashBdev:
    """RAM NOR flash with littlefs's extended block interface (erase via ioctl 6,
    programs at an offset). Counts programs and erases; at operation `stop` power
    fails: that operation is torn and every later one does nothing."""

    def __init__(self, data=None, stop=0):
        self.data = data if data is not None else bytearray(ERASED * BLOCKS)
        self.stop = stop
        self.ops = 0
        self.dead = False

    # A failed operation returns -EIO (littlefs's block device protocol) rather than
    # raising: the VFS would print every traceback.
    def _op(self):
        if self.dead:
            return -1
        self.ops += 1
        return 1 if self.stop and self.ops == self.stop else 0

    def _torn(self, n):
        mode = self.stop % 3
        return 0 if mode == 0 else (n // 2 if mode == 1 else max(0, n - 3))

    def readblocks(self, block, buf, off=0):
        if self.dead:
            # power is off: only the finalisers of files the cut left open (run by the
            # GC, heap locked) still call in; what they read no longer matters
            return
        a = block * BLOCK + off
        try:
            buf[:] = self.data[a:a + len(buf)]
        except MemoryError:              # called with the heap locked (a finaliser)
            for i in range(len(buf)):
                buf[i] = self.data[a + i]

    def writeblocks(self, block, buf, off=None):
        if off is None:                  # simple interface: erase, then program
            for i in range(len(buf) // BLOCK):
                self.ioctl(6, block + i)
            off = 0
        a = block * BLOCK + off
        cut = self._op()
        if cut < 0:
            return EIO
        if cut:
            n = self._torn(len(buf))
            self.data[a:a + n] = buf[:n]
            self.dead = True
            return EIO
        self.data[a:a + len(buf)] = buf
        return 0

    def ioctl(self, op, arg):
        if op == 4:
            return BLOCKS
        if op == 5:
            return BLOCK
        if op == 6:
            a = arg * BLOCK
            cut = self._op()
            if cut < 0:
                return EIO
            if cut:
                n = self._torn(BLOCK)
                self.data[a:a + n] = ERASED[:n]
                self.dead = True
                return EIO
            self.data[a:a + BLOCK] = ERASED
            return 0
        return 0


class NoMachine:
    pass


class SabotagedHal(Hal):
    def rename(self, a, b):
        # the broken order: the old file goes first, so a cut between leaves neither
        try:
            self.remove(b)
        except OSError:
            pass
        Hal.rename(self, a, b)


def hal():
    cls = SabotagedHal if SABOTAGE == "rename" else Hal
    return cls(machine=NoMachine(), root=MOUNT)


def new_log():
    return FrameLog(hal(), "log", capacity=1024, segment_bytes=512, seq_block=8)


def mount(bdev, fresh=False):
    if fresh:
        vfs.VfsLfs2.mkfs(bdev)
    fs = vfs.VfsLfs2(bdev)           # the ports' defaults (read/prog 32, lookahead 32)
    vfs.mount(fs, MOUNT)


def umount():
    try:
        vfs.umount(MOUNT)
    except OSError:
        pass


def payload(seq):
    return readings.encode([readings.Block(0x08, 300, 60, [1, 2, 3, 1, 2, 3]),
                            readings.Block(0x10, 300, 60, [seq * 10 + k for k in range(6)])])


def sequence(st):
    """The node's steps; `st` records what the node was told (seqs taken, records
    logged, records the gateway acked) as each call returns."""
    log = new_log()
    open_log(log)
    x = 12345
    for i in range(STEPS):
        x = (1103515245 * x + 12345) & 0x7FFFFFFF
        if (x >> 8) % 7 == 0:            # a STATUS frame: takes a seq, never logged
            st["taken"].append(log.take_seq())
        seq = log.take_seq()
        st["taken"].append(seq)
        log.append(seq, READINGS, payload(seq), True, log.boot, 1000 + i, False)
        st["logged"].append(seq)
        if (x >> 12) % 3 == 0:
            r = log.next_record()
            if r is not None:
                st["acked"].append(r.seq)     # the gateway committed it, then acked
                log.ack([(r.seq, r.seq)])
        if i == STEPS // 2:                   # a reboot: the scan and its meta rewrite
            log = new_log()
            open_log(log)
    return log


def recover_and_check(data, st, point):
    """Boot on what the cut left; returns a list of problems."""
    bad = []
    mount(FlashBdev(data))
    try:
        log = new_log()
        try:
            open_log(log)
        except Exception as e:
            return ["the log does not open: %r" % (e,)]
        recs = []
        for g in log.segs:
            for r in log._read_seg(g.no)[0]:
                recs.append(r)
        seqs = [r.seq for r in recs]
        if len(seqs) != len(set(seqs)) or seqs != sorted(seqs):
            bad.append("seqs on flash repeat or are out of order: %r" % seqs)
        on = set(seqs)
        acked = set(st["acked"])
        missing = [s for s in st["logged"] if s not in on and s not in acked]
        if len(missing) * 2 > log.dropped:
            bad.append("logged, unacked and gone: %r (dropped %d)" % (missing[:5], log.dropped))
        for r in recs:
            rain, disp = readings.decode(r.payload)
            if sum(rain.values) != 12:
                bad.append("seq %d: rain %d, not 12" % (r.seq, sum(rain.values)))
            if disp.values[-1] != r.seq * 10 + 5:
                bad.append("seq %d: newest sample lost" % r.seq)
        nxt = log.take_seq()
        if st["taken"] and nxt <= max(st["taken"]):
            bad.append("seq %d handed out again (highest before the cut %d)"
                       % (nxt, max(st["taken"])))
        # and the log keeps working after the cut
        log.append(nxt, READINGS, payload(nxt), True, log.boot, 5000, False)
        return bad
    finally:
        umount()


def run(stop):
    gc.collect()                     # one 96 KB flash image at a time
    bdev = FlashBdev()
    mount(bdev, fresh=True)          # a formatted flash: its own writes are not swept
    bdev.ops, bdev.stop = 0, stop
    st = {"taken": [], "logged": [], "acked": []}
    cut = False
    thinned = 0
    try:
        log = sequence(st)
        thinned = log.thinned
    except OSError:
        cut = bdev.dead
        if not cut:
            raise
    umount()
    return bdev, st, cut, thinned


def main():
    # count the operations of the whole sequence (and show it runs clean)
    bdev, full, cut, thinned = run(0)
    bad = recover_and_check(bytearray(bdev.data), full, 0)
    if bad:
        print("FAIL without a cut: %s" % "; ".join(bad[:3]))
    total = bdev.ops
    fails = 0
    points = 0
    for k in range(1 + PART[0], total + 1, PART[1]):
        b, st, cut, _ = run(k)
        if not cut:
            print("FAIL point %d: the sequence ended before its cut" % k)
            fails += 1
            continue
        points += 1
        bad = recover_and_check(bytearray(b.data), st, k)
        if bad:
            fails += 1
            if fails <= 20:
                print("FAIL point %d of %d: %s" % (k, total, "; ".join(bad[:3])))
            if FIRST:
                break
    print(json.dumps({"ops": total, "points": points, "failed_points": fails,
                      "thinned_in_full_run": thinned, "acked_in_full_run": len(full["acked"]),
                      "seqs_in_full_run": len(full["taken"]),
                      "sabotage": SABOTAGE}))


if "compile-only" not in ARGS:
    main()
