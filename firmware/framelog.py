"""Flash frame log: frames wait here until the gateway acks them (store and forward).

Layout, in directory `log/` of the flash filesystem (littlefs on the board):

    meta.json          {"reserve", "boot", "tail", "thinned", "dropped"}; replaced only by
                       write meta.tmp, then os.rename (atomic on littlefs and POSIX)
    00000007.seg ...   segments: append-only files of records, oldest number first

    record = 0xA5 | body length (u16 BE) | CRC-16 of body (u16 BE) | body
    body   = seq (u32) | mtype (u8) | rflags (u8) | boot (u16) | t_ref (u32) | payload

One record is one frame to (re)send: a READINGS or ALARM payload whose ages are
relative to `t_ref` (in the time base rflags names: Unix, or seconds since boot
`boot`; firmware/nodeclock.py). At each (re)transmission the node adds the seconds
elapsed since t_ref to every age and signs a new frame with the same seq, so the
gateway's absolute stamps stay right however long a frame waited.

Power cuts. A record is written with one write() and the file closed (littlefs
commits on close). A cut mid-write leaves at most one torn record at the end of the
newest segment: its length or CRC does not check, the reader stops there, and the
next append starts a fresh segment instead of writing after the torn bytes. Nothing
is ever rewritten in place: thinning writes a whole new segment to a .tmp file and
renames it over the old one, so a cut leaves either the old or the new segment.

The scan after a reboot (meta.json, every segment's CRCs, the RAM state below) is
firmware/logscan.py's open_log(log), which boot code runs before the node starts and
then drops (firmware/main.py): it imports this module, never the reverse.

Sequence numbers come from protocol.nodelink.SeqAllocator; its reservation is in
meta.json before a seq is used, so a seq is never reused after a reboot.

Acks. Acked records are marked in a RAM bitmap per segment; a segment whose records
are all acked is deleted and the tail (oldest live segment and record) saved in
meta. After a reboot the bitmaps are gone: records after the saved tail are sent
again and the gateway acks them as duplicates without storing them (I1 allows
duplicates, never loss).

Bounded (I4). When the live segments would exceed `capacity` bytes the log makes
room, oldest segments first: (1) thin routine readings: drop every other sample of
each block (the block's step doubles; rain increments of a dropped sample are added
to the next kept one, so no rain is lost), at most 3 times per record (1/8 of the
original resolution); (2) then drop whole routine reading records, oldest first.
ALARM records, and readings logged while the node was near or in alarm (R_KEEP),
are never thinned or dropped; if only they are left the log grows beyond
`capacity`. Every thinned sample and every dropped reading is counted (STATUS
S_THINNED/S_DROPPED) and the counts persist in meta.json.

Flash wear, at 1-min sampling and 10-min reports: samples are buffered in RAM and
one READINGS record is appended per report (144 appends a day, plus hourly STATUS
frames that take seqs but are never logged). With the link up each report's record is
acked within seconds, and a segment whose records are all acked is deleted at once,
the newest included: so a report costs about four small file operations (create and
write the segment, remove it, write meta.tmp, rename it over meta.json), ~600 a day.
meta.json is also rewritten at each boot; a seq reservation seldom needs a write of its
own (a write made for another reason reserves the next block of 32 once less than half
of the current one is left; after a reboot up to a block and a half of seqs is skipped,
never reused). littlefs spreads writes over the whole partition (dynamic wear
levelling, copy-on-write): on a 1.5 MB partition (~370 4-KB erase blocks), with each
operation costing at most two block programs, each block is erased about three times a
day: ~11 000 cycles in 10 years, about a ninth of what wears out 100k-cycle NOR flash.
Keeping the newest segment until it is sealed would cut that to about one operation per
report (not done: it was found late, and the margin is there). Saving the tail at every
ack would add writes for little gain (it saves duplicate resends after a reboot only),
so it is saved with the other meta writes.
"""
import struct

from protocol import readings
from protocol.crc16 import crc16
from protocol.frame import ALARM, READINGS

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

_MAGIC = const(0xA5)
HEAD = const(5)          # magic, length, CRC
BODY_FIXED = const(12)   # seq, mtype, rflags, boot, t_ref
_MAX_THIN = const(3)

# rflags
R_BOOT_BASE = const(0x01)   # t_ref is seconds since boot `boot` (else Unix seconds)
R_KEEP = const(0x02)        # near or in alarm: never thinned, never dropped
_R_THIN_SHIFT = const(2)     # bits 2-3: how many times this record was thinned
_R_THIN_MASK = const(0x0C)


class Record:
    __slots__ = ("seq", "mtype", "rflags", "boot", "t_ref", "payload", "seg", "index")

    def __init__(self, seq, mtype, rflags, boot, t_ref, payload, seg=None, index=0):
        self.seq = seq
        self.mtype = mtype
        self.rflags = rflags
        self.boot = boot
        self.t_ref = t_ref
        self.payload = payload
        self.seg = seg
        self.index = index

    def keep(self):
        return self.mtype != READINGS or self.rflags & R_KEEP

    def __repr__(self):
        return "Record(seq=%d type=%d flags=0x%02x %d B)" % (self.seq, self.mtype, self.rflags, len(self.payload))


class _Segment:
    __slots__ = ("no", "first", "last", "n", "size", "acked", "nacked", "sealed", "spent")

    def __init__(self, no, bitmap_bytes):
        self.no = no
        self.first = 0
        self.last = 0
        self.n = 0
        self.size = 0
        self.acked = bytearray(bitmap_bytes)
        self.nacked = 0
        self.sealed = False
        self.spent = 0         # 1: nothing left to thin, 2: nor to drop (skip when making room)

    def is_acked(self, i):
        return self.acked[i >> 3] & (1 << (i & 7))

    def set_acked(self, i):
        if not self.is_acked(i):
            self.acked[i >> 3] |= 1 << (i & 7)
            self.nacked += 1


def encode_record(seq, mtype, rflags, boot, t_ref, payload):
    body_len = BODY_FIXED + len(payload)
    out = bytearray(HEAD + body_len)
    struct.pack_into(">BHHIBBHI", out, 0, _MAGIC, body_len, 0, seq, mtype, rflags, boot & 0xFFFF, t_ref)
    out[HEAD + BODY_FIXED:] = payload
    c = crc16(out, 0xFFFF, HEAD)
    out[3] = c >> 8
    out[4] = c & 0xFF
    return out


def seq_at(buf, pos):
    pos += HEAD
    return (buf[pos] << 24) | (buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3]


def accumulating_kinds():
    """The channel kinds whose samples are increments (rain), which thinning sums."""
    from protocol import channels
    kinds = channels.KINDS
    return bytes([k for k in kinds if kinds[k][3]])


def thin_payload(payload, sum_kinds=None):
    """READINGS payload with every other sample of each block removed, newest kept.
    Rain increments of a dropped sample go to the next kept sample. -> (payload, removed).
    `sum_kinds` is accumulating_kinds(), which a FrameLog works out when it is built: a
    full log thins on the alarm path, which must not load a module (it may not fit)."""
    if sum_kinds is None:
        sum_kinds = accumulating_kinds()
    blocks = readings.decode(payload)
    removed = 0
    for b in blocks:
        n = b.count
        if n < 2:
            continue
        k0 = (n - 1) & 1            # keep indices k with (n-1-k) even: the newest is kept
        if b.values is not None:
            acc = (b.chan >> 3) in sum_kinds
            kept = []
            for k in range(k0, n, 2):
                v = b.values[k]
                if acc and k > 0:
                    v += b.values[k - 1]
                kept.append(v)
            b.values = kept
            b.count = len(kept)
        else:
            b.count = (n - k0 + 1) // 2
        b.age -= k0 * b.step
        b.step *= 2
        removed += n - b.count
    return readings.encode(blocks), removed


class FrameLog:
    def __init__(self, fs, directory="log", capacity=131072, segment_bytes=4096, seq_block=32):
        if segment_bytes > 65535 or segment_bytes < 512:
            raise ValueError("segment_bytes must be 512..65535")
        self.fs = fs
        self.dir = directory
        # a segment's name in one formatting (the node opens a segment twice a report:
        # a name made of two strings was 32 more bytes of garbage each time)
        self._seg_fmt = directory.replace("%", "%%") + "/%08d.seg"
        self._meta_tmp = self._path("meta.tmp")
        self._meta = self._path("meta.json")
        self.capacity = capacity
        self.segment_bytes = segment_bytes
        self.seq_block = seq_block
        # The log reads one record head at a time into this, seeking from head to head:
        # a 4 KB segment buffer would be 4 KB of a stock-image board's heap for good.
        self._head = bytearray(HEAD + BODY_FIXED)
        self._sum_kinds = accumulating_kinds()  # for thinning; protocol.channels may be gone by then
        self._bitmap = (segment_bytes // (HEAD + BODY_FIXED) + 7) // 8
        self.segs = []
        self.alarms = []          # unacked ALARM records' (seq, seg no, index), oldest first
        self.thinned = 0
        self.dropped = 0
        self.boot = 0
        self.tail = (0, 0)
        self.alloc = None
        self.last_no = 0          # highest segment number ever used: numbers only grow
        self.torn = 0             # torn records found at open (power cut mid-write)

    # --- files ---------------------------------------------------------------------
    def _path(self, name):
        return self.dir + "/" + name

    def _seg_name(self, no):
        return self._seg_fmt % no

    def _open_seg(self, no):
        return self.fs.open(self._seg_name(no), "rb")

    def _head_at(self, f, pos):
        """Read the head of the record at `pos` of segment file f into self._head ->
        the record's end, or -1 if there is none (end of file, torn or foreign bytes).
        CRCs are checked at open (firmware/logscan.py); after that the node reads back
        what it wrote."""
        f.seek(pos)
        h = self._head
        if (f.readinto(h) or 0) < HEAD + BODY_FIXED or h[0] != _MAGIC:
            return -1
        end = pos + HEAD + ((h[1] << 8) | h[2])
        return end if end >= pos + HEAD + BODY_FIXED else -1

    def _walk_to(self, f, index):
        """(offset, end) of record `index` of segment file f, its head in self._head."""
        pos = 0
        end = self._head_at(f, 0)
        for _ in range(index):
            if end < 0:
                break
            pos = end
            end = self._head_at(f, pos)
        if end < 0:
            raise IndexError("no record %d in the segment" % index)
        return pos, end

    def _record(self, f, pos, end, no, index):
        """The Record whose head _head_at just read (f stands at its payload), or None
        if the payload is cut short."""
        n = end - pos - HEAD - BODY_FIXED
        payload = f.read(n) if n else b""
        if len(payload) != n:
            return None
        seq, mtype, rflags, boot, t_ref = struct.unpack_from(">IBBHI", self._head, HEAD)
        return Record(seq, mtype, rflags, boot, t_ref, payload, no, index)

    def _read_seg(self, no):
        """(every record of segment `no` up to the first bad one, that one's offset)."""
        recs = []
        f = self._open_seg(no)
        try:
            pos = 0
            end = self._head_at(f, 0)
            while end >= 0:
                r = self._record(f, pos, end, no, len(recs))
                if r is None:
                    break
                recs.append(r)
                pos = end
                end = self._head_at(f, pos)
        finally:
            f.close()
        return recs, pos

    def _write_meta(self):
        a = self.alloc
        r = a.reserved if a else 1
        if a and r - a.next < a.block >> 1:
            # Less than half the reserved block left: this write (a reclaim's, mostly)
            # reserves the next block too, so the report that would cross into it writes
            # no meta.json of its own (~500 bytes of garbage in the node's busiest step).
            r += a.block
        f = self.fs.open(self._meta_tmp, "w")
        try:
            # the JSON json.dumps gave, formatted in one go: no dict or list built for it
            f.write('{"reserve": %d, "boot": %d, "tail": [%d, %d], "thinned": %d, "dropped": %d}' % (
                r, self.boot, self.tail[0], self.tail[1], self.thinned, self.dropped))
        finally:
            f.close()
        self.fs.rename(self._meta_tmp, self._meta)
        if a:
            a.reserved = r      # on flash now: seqs below r need no write of their own

    # --- writing ---------------------------------------------------------------------
    def take_seq(self):
        """A fresh seq; its reservation is on flash before this returns."""
        seq, reserve = self.alloc.take()
        if reserve is not None:
            self._write_meta()
        return seq

    def live_bytes(self):
        s = 0
        for g in self.segs:
            s += g.size
        return s

    def append(self, seq, mtype, payload, base_boot, boot, t_ref, keep=False):
        """Write one record durably. Call before the frame with this seq is sent."""
        rflags = (R_BOOT_BASE if base_boot else 0) | (R_KEEP if keep else 0)
        rec = encode_record(seq, mtype, rflags, boot, t_ref, payload)
        if self.live_bytes() + len(rec) > self.capacity:
            self._make_room(len(rec))
        head = self.segs[-1] if self.segs else None
        if head is None or head.sealed or head.size + len(rec) > self.segment_bytes:
            self.last_no = max(self.last_no + 1, self.tail[0])
            head = _Segment(self.last_no, self._bitmap)
            head.first = seq
            self.segs.append(head)
        f = self.fs.open(self._seg_name(head.no), "ab")
        try:
            f.write(rec)
        finally:
            f.close()
        index = head.n
        if head.n == 0:
            head.first = seq
        head.n += 1
        head.last = seq
        head.size += len(rec)
        if mtype == ALARM:
            self.alarms.append((seq, head.no, index))
        return index

    # --- reading ---------------------------------------------------------------------
    def _seg(self, no):
        for g in self.segs:
            if g.no == no:
                return g
        return None

    def get(self, seg_no, index):
        f = self._open_seg(seg_no)
        try:
            pos, end = self._walk_to(f, index)
            r = self._record(f, pos, end, seg_no, index)
        finally:
            f.close()
        if r is None:
            raise IndexError("record %d of segment %d is cut short" % (index, seg_no))
        return r

    def next_record(self, exclude=0):
        """The next record to send: the oldest unacked ALARM, else the oldest unacked
        record. `exclude` skips one seq (e.g. the routine frame an alarm pre-empted)."""
        for seq, no, i in self.alarms:
            if seq != exclude:
                return self.get(no, i)
        for g in self.segs:
            if g.nacked == g.n:
                continue
            f = self._open_seg(g.no)
            try:
                pos = 0
                for i in range(g.n):
                    end = self._head_at(f, pos)
                    if end < 0:
                        raise IndexError("segment %d holds fewer than %d records" % (g.no, g.n))
                    if not g.is_acked(i) and seq_at(self._head, 0) != exclude:
                        return self._record(f, pos, end, g.no, i)
                    pos = end
            finally:
                f.close()
        return None

    def oldest_unacked(self):
        """Lowest unacked seq on the log, or None. Records are in seq order on flash."""
        for g in self.segs:
            if g.nacked == g.n:
                continue
            i = 0
            while g.is_acked(i):
                i += 1
            if i == 0:
                return g.first
            f = self._open_seg(g.no)
            try:
                self._walk_to(f, i)
            finally:
                f.close()
            return seq_at(self._head, 0)
        return None

    def depth(self):
        n = 0
        for g in self.segs:
            n += g.n - g.nacked
        return n

    # --- acks ------------------------------------------------------------------------
    def ack(self, ranges, hint=None):
        """Mark every record whose seq lies in one of the (lo, hi) ranges as acked and
        reclaim whole segments. `hint` = (seq, seg no, index) of the frame just sent,
        which saves a segment read in the common case. Returns the number newly acked."""
        newly = 0
        if hint is not None:
            seq, no, i = hint
            g = self._seg(no)
            for lo, hi in ranges:
                if g is not None and lo <= seq <= hi and i < g.n and not g.is_acked(i):
                    g.set_acked(i)
                    newly += 1
        for g in self.segs:
            if g.nacked == g.n:
                continue
            hit = False
            for lo, hi in ranges:
                if lo <= g.last and hi >= g.first:
                    hit = True
                    break
            if not hit:
                continue
            f = self._open_seg(g.no)
            try:
                pos = 0
                for i in range(g.n):
                    end = self._head_at(f, pos)
                    if end < 0:
                        raise IndexError("segment %d holds fewer than %d records" % (g.no, g.n))
                    if not g.is_acked(i):
                        s = seq_at(self._head, 0)
                        for lo, hi in ranges:
                            if lo <= s <= hi:
                                g.set_acked(i)
                                newly += 1
                                break
                    pos = end
            finally:
                f.close()
        if newly:
            if self.alarms:
                self.alarms = [a for a in self.alarms if not self._is_acked(a[1], a[2])]
            self._reclaim()
        return newly

    def _is_acked(self, no, i):
        g = self._seg(no)
        return g is None or g.is_acked(i)

    def _reclaim(self):
        """Delete fully acked segments; save the new tail if anything went."""
        live = []
        for g in self.segs:
            if g.n and g.nacked == g.n:
                self.fs.remove(self._seg_name(g.no))
            else:
                live.append(g)
        if len(live) == len(self.segs):
            return
        self.segs = live
        if live:
            g = live[0]
            i = 0
            while i < g.n and g.is_acked(i):
                i += 1
            self.tail = (g.no, i)
        else:
            self.tail = (self.last_no + 1, 0)
        self._write_meta()

    # --- bounding --------------------------------------------------------------------
    def _make_room(self, need):
        """Thin, then drop, oldest segments first, until `need` more bytes fit."""
        for pass_drop in (False, True):
            for g in self.segs[:-1]:    # a copy: _rewrite may remove g from self.segs
                if self.live_bytes() + need <= self.capacity:
                    return
                if g.spent < (2 if pass_drop else 1):
                    self._rewrite(g, pass_drop)
            if self.live_bytes() + need <= self.capacity:
                return

    def _shrink(self, r, drop):
        """What making room does to record r -> (payload or None when it goes, rflags,
        samples thinned, samples dropped). ALARMs and R_KEEP readings stay as they are."""
        if r.keep():
            return r.payload, r.rflags, 0, 0
        if drop:
            try:
                n = readings.count(readings.decode(r.payload))
            except ValueError:
                n = 1
            return None, r.rflags, 0, n
        depth = (r.rflags & _R_THIN_MASK) >> _R_THIN_SHIFT
        if depth < _MAX_THIN:
            try:
                payload, removed = thin_payload(r.payload, self._sum_kinds)
            except ValueError:
                removed = 0
            if removed:
                return payload, (r.rflags & ~_R_THIN_MASK) | ((depth + 1) << _R_THIN_SHIFT), removed, 0
        return r.payload, r.rflags, 0, 0

    def _gains(self, g, drop):
        """Would rewriting segment g make it smaller? (Reads one record at a time.)"""
        if g.nacked:
            return True
        f = self._open_seg(g.no)
        try:
            pos = 0
            for i in range(g.n):
                end = self._head_at(f, pos)
                r = self._record(f, pos, end, g.no, i) if end >= 0 else None
                if r is None:
                    return False
                s = self._shrink(r, drop)
                if s[2] or s[3]:
                    return True
                pos = end
        finally:
            f.close()
        return False

    def _rewrite(self, g, drop):
        """Rewrite segment g without its acked records, thinning (or with `drop`,
        removing) its routine readings; .tmp then rename, so a cut keeps one version.
        One record is in RAM at a time: a full log is a long outage, when the heap is
        already at its fullest. A first pass decides whether anything would change: a
        segment with nothing to gain is not rewritten (that would only wear the flash)."""
        if not self._gains(g, drop):
            g.spent = 2 if drop else max(g.spent, 1)
            return
        name = self._seg_name(g.no)
        tmp = self._path("seg.tmp")
        src = self._open_seg(g.no)
        n = size = first = last = thinned = dropped = 0
        alarms = []
        try:
            dst = self.fs.open(tmp, "wb")
            try:
                pos = 0
                for i in range(g.n):
                    end = self._head_at(src, pos)
                    r = self._record(src, pos, end, g.no, i) if end >= 0 else None
                    if r is None:
                        break
                    pos = end
                    if g.is_acked(i):
                        continue
                    payload, rflags, th, dr = self._shrink(r, drop)
                    thinned += th
                    dropped += dr
                    if payload is None:
                        continue
                    rec = encode_record(r.seq, r.mtype, rflags, r.boot, r.t_ref, payload)
                    dst.write(rec)
                    if not n:
                        first = r.seq
                    last = r.seq
                    if r.mtype == ALARM:
                        alarms.append((r.seq, g.no, n))
                    n += 1
                    size += len(rec)
            finally:
                dst.close()
        finally:
            src.close()
        # counts go to flash before the records go: a cut in between over-reports a
        # drop that did not happen, never hides one that did
        self.thinned += thinned
        self.dropped += dropped
        if self.tail[0] == g.no:
            self.tail = (g.no, 0)
        self._write_meta()
        self.alarms = [a for a in self.alarms if a[1] != g.no]
        if not n:
            self.fs.remove(tmp)
            self.fs.remove(name)
            self.segs.remove(g)
            return
        self.fs.rename(tmp, name)
        g.n = n
        g.first = first
        g.last = last
        g.size = size
        g.acked = bytearray(len(g.acked))
        g.nacked = 0
        g.sealed = True
        for a in alarms:
            self.alarms.append(a)
        self.alarms.sort()
