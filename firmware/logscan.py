"""The frame log's scan after a (re)boot: read meta.json, check every segment's CRCs,
rebuild the RAM state (segments, unacked ALARMs, seq reservation) of a FrameLog.

It runs once per boot: boot code calls open_log() before the node starts and then drops
this module (firmware/main.py, firmware/unload.py), so its bytecode does not stay in the
heap of a board running without frozen modules. It imports firmware/framelog.py, never
the reverse. Layout and guarantees: firmware/framelog.py."""
import json
import struct

from firmware.framelog import BODY_FIXED, HEAD, R_BOOT_BASE, _Segment
from protocol.crc16 import crc16
from protocol.frame import ALARM
from protocol.nodelink import SeqAllocator


def read_meta(log):
    try:
        f = log.fs.open(log._meta, "r")
    except OSError:
        return {}
    try:
        m = json.loads(f.read())
    except ValueError:
        m = {}
    finally:
        f.close()
    return m if isinstance(m, dict) else {}


def open_log(log, clock=None):
    """Open the FrameLog `log` after a (re)boot: scan it (below), delete what is fully
    acked and save meta.json. -> the boot number (persisted)."""
    scan(log, clock)
    log._reclaim()
    log._write_meta()
    return log.boot


def scan(log, clock=None):
    """Fill `log` from flash: boot number (incremented), counts, tail, live segments
    with their acked bitmaps, unacked ALARMs and the seq allocator. Removes .tmp files,
    empty segments and segments before the tail."""
    fs = log.fs
    fs.mkdir(log.dir)
    names = fs.listdir(log.dir)
    for name in names:
        if name.endswith(".tmp"):
            fs.remove(log._path(name))
    meta = read_meta(log)
    log.boot = int(meta.get("boot", 0)) + 1
    log.thinned = int(meta.get("thinned", 0))
    log.dropped = int(meta.get("dropped", 0))
    tail = meta.get("tail", [0, 0])
    log.tail = (int(tail[0]), int(tail[1]))
    reserve = int(meta.get("reserve", 1))
    if clock is not None:
        clock.boot = log.boot
    nos = sorted(int(nm[:-4]) for nm in names if nm.endswith(".seg") and nm[:-4].isdigit())
    log.segs = []
    log.alarms = []
    log.last_no = max([log.tail[0]] + nos)
    max_seq = 0
    alarms = []                 # (seq, seg no, index) of every ALARM record found
    for no in nos:
        seg = _Segment(no, log._bitmap)
        good = scan_segment(log, no, seg, alarms, clock)
        size = fs.size(log._seg_name(no))
        if good < size:
            log.torn += 1
        if seg.last > max_seq:
            max_seq = seg.last
        if not seg.n or no < log.tail[0]:
            fs.remove(log._seg_name(no))
            continue
        seg.size = good
        seg.sealed = good < size
        if no == log.tail[0]:
            for i in range(min(log.tail[1], seg.n)):
                seg.set_acked(i)
        log.segs.append(seg)
    # unacked ALARMs of the segments kept, in seq order (records are in seq order on flash)
    for a in alarms:
        g = log._seg(a[1])
        if g is not None and not g.is_acked(a[2]):
            log.alarms.append(a)
    # the reservation always covers every seq on flash, even if meta.json was lost
    log.alloc = SeqAllocator(max(reserve, max_seq + 1), log.seq_block)


def scan_segment(log, no, seg, alarms, clock=None):
    """Check segment `no` record by record (length and CRC), counting the good ones
    into `seg` (n, first, last), adding its ALARMs to `alarms` and telling the clock each
    record's time base with the clock. -> the end of the last good record: a shorter
    file than that is fine, anything after it is a torn tail (a power cut mid-write)."""
    f = log._open_seg(no)
    h = log._head
    pos = 0
    try:
        end = log._head_at(f, 0)
        while end >= 0:
            body = f.read(end - pos - HEAD - BODY_FIXED)
            if len(body) != end - pos - HEAD - BODY_FIXED or \
                    crc16(body, crc16(h, 0xFFFF, HEAD)) != (h[3] << 8) | h[4]:
                break
            seq, mtype, rflags, boot, t_ref = struct.unpack_from(">IBBHI", h, HEAD)
            if not seg.n:
                seg.first = seq
            seg.last = seq
            if mtype == ALARM:
                alarms.append((seq, no, seg.n))
            seg.n += 1
            if clock is not None:
                clock.saw_record(2 if rflags & R_BOOT_BASE else 1, boot, t_ref)
            pos = end
            end = log._head_at(f, pos)
    finally:
        f.close()
    return pos
