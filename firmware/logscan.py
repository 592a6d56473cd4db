"""The frame log's scan after a (re)boot: read meta.json, check every segment's CRCs,
rebuild the RAM state (segments, unacked ALARMs, seq reservation) of a FrameLog.

It runs once per boot, so FrameLog.open() imports it, calls scan() and drops it again
(firmware/unload.py): its bytecode does not stay in the heap of a board running
without frozen modules. Layout and guarantees: firmware/framelog.py."""
import json
import struct

from firmware.framelog import HEAD, R_BOOT_BASE, _Segment, seq_at, walk
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
    buf = log._buf
    for no in nos:
        n = log._load(no)
        offs, good = walk(buf, n)
        size = fs.size(log._seg_name(no))
        if good < size:
            log.torn += 1
        if not offs or no < log.tail[0]:
            fs.remove(log._seg_name(no))
            continue
        seg = _Segment(no, log._bitmap)
        seg.size = good
        seg.sealed = good < size
        seg.n = len(offs)
        seg.first = seq_at(buf, offs[0])
        seg.last = seq_at(buf, offs[-1])
        for i in range(len(offs)):
            seq, mtype, rflags, boot, t_ref = struct.unpack_from(">IBBHI", buf, offs[i] + HEAD)
            if seq > max_seq:
                max_seq = seq
            if no == log.tail[0] and i < log.tail[1]:
                seg.set_acked(i)
            elif mtype == ALARM:
                log.alarms.append((seq, no, i))
            if clock is not None:
                clock.saw_record(2 if rflags & R_BOOT_BASE else 1, boot, t_ref)
        log.segs.append(seg)
    # the reservation always covers every seq on flash, even if meta.json was lost
    log.alloc = SeqAllocator(max(reserve, max_seq + 1), log.seq_block)
