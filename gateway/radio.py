"""Radio ingest: node frames from the LoRa module's UART -> durable store -> ACKs.

Two layers, as in h11:

  RadioIngest  pure logic, no I/O and no clock reads. `feed(data, now)` takes whatever
               the UART returned and the receive time; frames are deframed, checked
               (MIC, replay window, duplicates) and turned into gateway.records records
               collected in the *open group*. `take_group()` hands the group to the
               shell, which commits it in ONE store transaction; then
               `committed(group, now)` returns the downlink bytes to write (ACKs, then
               queued CONFIGs), or `abandoned(group)` if the commit failed (nothing is
               acked: the nodes retransmit).
  RadioPort    the asyncio shell: pyserial port read through the event loop's reader
               callback, group commit in a worker thread, ACK writes.

Invariant I1: an ACK for a frame is built only in `committed()`, i.e. after the store's
commit returned. A duplicate of a frame already committed is acked at once (its first
ACK was lost); a duplicate of a frame still in the open group or in the commit in
flight is acked with that group, after its commit.

Group commit: while one commit runs, arriving frames gather in the next group, so a
burst of N frames costs about two fsyncs, not N.

Every rejected input is counted by reason (SPEC.md section 7) and logged at most once per
(node, reason) per `log_every_s`, with the number suppressed since.
"""
import asyncio
import logging
import os
import sqlite3
import struct

from gateway.records import FLAG_TIME_APPROX, Alarm, Count, FrameSeen, NodeStatus, Reading
from protocol import frame as fr
from protocol import gwmessages
from protocol import messages as msg
from protocol import readings as rd
from protocol.framing import Deframer, wrap
from protocol.gwlink import DUPLICATE, GatewayLink
from protocol.mic import Hmac

log = logging.getLogger("stationgw.radio")

# Errors a commit raises because of what a record holds, not because of the disk.
DATA_ERRORS = (OverflowError, ValueError, TypeError, KeyError, sqlite3.IntegrityError,
               sqlite3.InterfaceError)

REASON_PAYLOAD = "payload"
REASON_INTERNAL = "internal"      # the gateway's own bug met this frame (logged with its hex)
GARBAGE_REASONS = ("cobs", "crc", "too_short", "too_long")

_STATUS_FIELDS = (("battery_mv", msg.S_BATTERY_MV), ("supply_mv", msg.S_SUPPLY_MV),
                  ("temp_decic", msg.S_TEMP_DECIC), ("free_heap", msg.S_FREE_HEAP),
                  ("reset_cause", msg.S_RESET_CAUSE), ("log_depth", msg.S_LOG_DEPTH),
                  ("fw", msg.S_FW), ("config_version", msg.S_CONFIG_VERSION))
_HELLO_FIELDS = (("fw", msg.H_FW), ("config_version", msg.H_CONFIG_VERSION),
                 ("reset_cause", msg.H_RESET_CAUSE))

# Every integer from the air is checked against the range it can have before it goes
# near SQLite (int64), CBOR or a config: a valid MIC proves who sent a frame, not that
# its firmware is right (SPEC 7.1). Out of range -> the frame is a `payload` reject.
I32 = (-(1 << 31), (1 << 31) - 1)
U32 = (0, 0xFFFFFFFF)
U16 = (0, 0xFFFF)
U8 = (0, 0xFF)
_FIELD_RANGES = {"battery_mv": U16, "supply_mv": U16, "temp_decic": (-32768, 32767),
                 "free_heap": U32, "reset_cause": U8, "log_depth": U32,
                 "config_version": U32}
INT64 = (-(1 << 63), (1 << 63) - 1)


def _check_range(what, v, lo_hi):
    if not isinstance(v, int) or isinstance(v, bool) or not lo_hi[0] <= v <= lo_hi[1]:
        raise msg.PayloadError("%s %r out of range %d..%d" % (what, v, lo_hi[0], lo_hi[1]))
    return v


def _check_record_ints(recs):
    """The last guard before SQLite: no record field may exceed int64."""
    for r in recs:
        for name, v in zip(r._fields, r):
            if isinstance(v, int) and not INT64[0] <= v <= INT64[1]:
                raise msg.PayloadError("%s.%s %r does not fit 64 bits"
                                       % (type(r).__name__, name, v))


class NodeStats:
    """What `stationgw status` shows per radio node (kept in RAM, rebuilt after a restart
    from the store's last-seen table)."""

    __slots__ = ("last_seen", "frames", "duplicates", "rejects", "rssi_dbm", "battery_mv",
                 "log_depth", "config_version", "fw", "level_active", "emergency",
                 "clock_error_s")

    def __init__(self):
        self.last_seen = None
        self.frames = 0
        self.duplicates = 0
        self.rejects = {}
        self.rssi_dbm = None
        self.battery_mv = None
        self.log_depth = None
        self.config_version = None
        self.fw = None
        self.level_active = False
        self.emergency = False
        self.clock_error_s = None

    def as_dict(self):
        return {k: getattr(self, k) for k in self.__slots__}


class Group:
    """Records to commit in one transaction, and what to ack once they are durable."""

    __slots__ = ("records", "frames", "acks_only", "spans")

    def __init__(self):
        self.records = []
        self.frames = []        # NEW frames, in arrival order
        self.acks_only = []     # duplicates of frames in this group or the one in flight
        self.spans = []         # (start, end) of each new frame's records in `records`

    def __len__(self):
        return len(self.records) + len(self.acks_only)


class RateLimitedLog:
    """Log a (node, reason) at most once per `every_s`, then say how many were hushed."""

    def __init__(self, logger, every_s=60.0):
        self.log = logger
        self.every_s = every_s
        self._last = {}      # (node, reason) -> [last logged at, suppressed since]

    def reject(self, now, node, reason, detail, known=True):
        # Ids of unknown nodes are whatever a sender makes up: limit them as one source.
        k = (node if known else "unknown", reason)
        ent = self._last.get(k)
        if ent is not None and now - ent[0] < self.every_s:
            ent[1] += 1
            return False
        hushed = ent[1] if ent is not None else 0
        if len(self._last) >= 1024:     # a bound, whatever arrives
            self._last = {kk: v for kk, v in self._last.items() if now - v[0] < self.every_s}
            if len(self._last) >= 1024:
                self._last.clear()
        self._last[k] = [now, 0]
        self.log.warning("event=frame_rejected node=%s reason=%s detail=%r suppressed=%d",
                         "-" if node is None else node, reason, detail, hushed)
        return True


class RadioIngest:
    """Sans-I/O radio ingest for all nodes of a site.

    keys: {node id: key bytes}. downlink: an object with `config_for(node, re, now)` ->
    list of CONFIG maps (gateway.downlink.DownlinkQueue) and `on_config_ack(node, frame_seq,
    map, now)`; None for no downlink. rssi_byte: the module appends one RSSI byte after
    each packet (E22 option), which arrives as a one-byte piece after the frame."""

    def __init__(self, keys, downlink=None, rssi_byte=False, log_every_s=60.0,
                 dl_seq_start=1, logger=log, chanload=None):
        self._signers = {n: Hmac(k) for n, k in keys.items()}
        self.link = GatewayLink(self._signers.get)
        self.deframer = Deframer()
        self.downlink = downlink
        self.rssi_byte = rssi_byte
        self._carry = bytearray()
        self._expect_rssi = False
        self.reject_log = RateLimitedLog(logger, log_every_s)
        self.log = logger
        self.group = Group()
        self.in_flight = None          # the group being committed
        self.immediate = []            # downlink bytes to write now (acks of old duplicates)
        self.counters = {}             # reason -> count, since start (durable ones go to the store)
        self.nodes = {}                # node -> NodeStats
        self._dl_seq = {}
        self._dl_seq_start = dl_seq_start
        self._last_frame_node = None
        self.chanload = chanload       # gateway.chanload.ChannelLoad: F_CONGESTED in ACKs
        self.zone_level = None         # node -> (level, zone number): gateway.zones.ZoneEngine
        self._zone_sent = {}           # node -> zone level last sent to it

    # ------------------------------------------------------------------ start
    def load(self, node, floor, ranges):
        """Replay state from the store: a restart must not reopen the window."""
        self.link.load(node, floor if floor is not None else 1, ranges)

    def node_stats(self, node):
        s = self.nodes.get(node)
        if s is None:
            s = self.nodes[node] = NodeStats()
        return s

    # ------------------------------------------------------------------ input
    def feed(self, data, now):
        """Bytes from the UART, received at unix time `now` (float seconds)."""
        if self.rssi_byte:
            items = self._feed_with_rssi(data)
        else:
            items = self.deframer.feed(data)
        for item in items:
            if isinstance(item, str):
                self._reject(now, None, item, "line noise or a cut frame")
            elif isinstance(item, int):
                if self._last_frame_node is not None:
                    self.node_stats(self._last_frame_node).rssi_dbm = item
            else:
                if self.chanload is not None:
                    self.chanload.heard(now, len(item) + 5)
                try:
                    self._frame(item, now)
                except Exception as e:
                    # A bug before the frame is accepted costs that frame only: never the
                    # frames after it in this read, never the reader.
                    self.log.error("event=frame_handler_failed error=%r raw=%s", e, item.hex())
                    self._reject(now, None, REASON_INTERNAL, "handler error %r" % (e,))

    def _feed_with_rssi(self, data):
        # The module puts its RSSI byte right after our closing 0x00, so the first byte
        # after a packet is the RSSI, not the start of the next frame (a frame always
        # starts with 0x00, and the module never reports RSSI 0).
        out = []
        buf = self._carry
        buf.extend(data)
        while True:
            if self._expect_rssi and buf:
                if buf[0] != 0:
                    out.append(-(256 - buf[0]))
                    del buf[0]
                self._expect_rssi = False
            z = buf.find(0)
            if z < 0:
                break
            piece = bytes(buf[:z])
            del buf[:z + 1]
            if piece:
                out.extend(self.deframer.feed(b"\x00" + piece + b"\x00"))
                self._expect_rssi = True
        if len(buf) > 512:          # no delimiter for far too long: let the deframer judge
            out.extend(self.deframer.feed(bytes(buf)))
            del buf[:]
        return out

    def _reject(self, now, node, reason, detail):
        self.counters[reason] = self.counters.get(reason, 0) + 1
        self.group.records.append(Count("frames_rejected"))
        self.group.records.append(Count("rejected_" + reason))
        if node is not None and node in self._signers:   # no state for strangers' ids
            st = self.node_stats(node)
            st.rejects[reason] = st.rejects.get(reason, 0) + 1
        self.reject_log.reject(now, node, reason, detail, node in self._signers)

    def _frame(self, data, now):
        self._last_frame_node = None
        try:
            rx = self.link.receive(data)
        except fr.FrameError as e:
            node = None
            if e.reason not in (fr.REASON_SHORT, fr.REASON_LONG, fr.REASON_VERSION):
                node = fr.peek_node(data)
            self._reject(now, node, e.reason, str(e))
            return
        f = rx.frame
        self._last_frame_node = f.node
        st = self.node_stats(f.node)
        st.last_seen = now
        st.level_active = bool(f.flags & fr.F_ALARM_ACTIVE)
        st.emergency = bool(f.flags & fr.F_EMERGENCY)
        if f.flags & fr.F_CLOCK_SYNCED:
            st.clock_error_s = f.time - int(now)
        if rx.status == DUPLICATE:
            st.duplicates += 1
            self.counters["duplicate"] = self.counters.get("duplicate", 0) + 1
            self.group.records.append(Count("frames_duplicate"))
            if self._pending(f.node, f.seq):
                self.group.acks_only.append(f)
            else:
                self.immediate.append(self._ack(f, now, False))
            return
        try:
            recs = self._records(f, now)
            _check_record_ints(recs)
        except (ValueError, msg.PayloadError) as e:
            # Good MIC, bad payload: a node firmware bug (SPEC 7.1). Ack it so the node
            # does not retry forever; nothing of it becomes a reading.
            self._reject(now, f.node, REASON_PAYLOAD, "%s: %s raw=%s" % (
                fr.TYPE_NAMES.get(f.mtype), e, f.raw.hex()))
            recs = []
        except Exception as e:      # a handler bug costs this frame only, never the group
            self.log.error("event=frame_handler_failed node=%d seq=%d error=%r raw=%s",
                           f.node, f.seq, e, f.raw.hex())
            self._reject(now, f.node, REASON_PAYLOAD, "handler error %r raw=%s"
                         % (e, f.raw.hex()))
            recs = []
        st.frames += 1
        start = len(self.group.records)
        self.group.records.extend(recs)
        self.group.records.append(FrameSeen(f.node, f.seq, self._new_floor(f)))
        self.group.spans.append((start, len(self.group.records)))
        self.group.frames.append(f)

    def _pending(self, node, seq):
        for g in (self.group, self.in_flight):
            if g is not None:
                for f in g.frames:
                    if f.node == node and f.seq == seq:
                        return True
        return False

    def _new_floor(self, f):
        return max(self.link.state(f.node).floor, f.seq - f.back)

    # ------------------------------------------------------------------ decoding
    def _records(self, f, now):
        t_rx = int(now + 0.5)
        if f.mtype == fr.READINGS:
            return self._readings(f, t_rx)
        if f.mtype == fr.ALARM:
            rx_ms = int(now * 1000)
            out = []
            for i, a in enumerate(gwmessages.decode_alarms(f.payload)):
                out.append(Alarm(f.node, f.seq, i, a[msg.A_EVENT], a[msg.A_LEVEL],
                                 a[msg.A_PREV], a[msg.A_CHAN], a[msg.A_RULE], a[msg.A_KIND],
                                 a[msg.A_VALUE], a[msg.A_THRESHOLD],
                                 _abs_time(t_rx, a[msg.A_AGE]), rx_ms))
            return out
        if f.mtype in (fr.STATUS, fr.HELLO):
            if f.mtype == fr.STATUS:
                m = gwmessages.decode_status(f.payload)
                fields = _STATUS_FIELDS
            else:
                m = gwmessages.decode_hello(f.payload)
                fields = _HELLO_FIELDS
            vals = {}
            for name, key in fields:
                v = m.get(key)
                if name == "fw":
                    if isinstance(v, str):
                        vals[name] = v[:32]
                elif isinstance(v, int) and not isinstance(v, bool):
                    vals[name] = _check_range(name, v, _FIELD_RANGES[name])
            st = self.node_stats(f.node)
            st.battery_mv = vals.get("battery_mv", st.battery_mv)
            st.log_depth = vals.get("log_depth", st.log_depth)
            st.config_version = vals.get("config_version", st.config_version)
            st.fw = vals.get("fw", st.fw)
            return [NodeStatus(f.node, t_rx, rssi_dbm=st.rssi_dbm,
                               seq_gaps=self.link.state(f.node).missing(), **vals)]
        if f.mtype == fr.CONFIG_ACK:
            m = gwmessages.decode_config_ack(f.payload)
            if self.downlink is not None:
                self.downlink.on_config_ack(f.node, m, now)
            return []
        raise msg.PayloadError("message type %d has no gateway handler" % f.mtype)

    def _readings(self, f, t_rx):
        blocks = rd.decode(f.payload)
        flags = FLAG_TIME_APPROX if f.flags & fr.F_TIME_APPROX else 0
        out = []
        idx = 0
        node, seq = f.node, f.seq
        for b in blocks:
            t0 = _abs_time(t_rx, b.age)
            if b.values is None:
                for k in range(b.count):
                    out.append(Reading(node, seq, idx, b.chan, t0 + k * b.step, None, b.fault,
                                       flags))
                    idx += 1
            else:
                for k, v in enumerate(b.values):
                    out.append(Reading(node, seq, idx, b.chan, t0 + k * b.step, v, None, flags))
                    idx += 1
        return out

    # ------------------------------------------------------------------ commit cycle
    def take_group(self):
        """The open group for the store (None if empty); frames from now on go to a new one."""
        if not len(self.group):
            return None
        g, self.group = self.group, Group()
        self.in_flight = g
        return g

    def committed(self, group, now):
        """The group is durable: update the replay state, return downlink bytes to write."""
        self.in_flight = None
        out = []
        last = {}
        for f in group.frames:
            self.link.committed(f)
            last[f.node] = f
        dups = [f for f in group.acks_only if f.seq in self.link.state(f.node)]
        for f in dups:
            last.setdefault(f.node, f)
        for f in group.frames + dups:
            try:
                out.extend(self._answer(f, now, last.get(f.node) is f))
            except Exception as e:
                # The frame is durable: ack it without a CONFIG rather than lose the
                # rest of the group's acks (and the task) to a downlink bug.
                self.log.error("event=downlink_failed node=%d seq=%d error=%r", f.node, f.seq, e)
                self.counters["downlink_error"] = self.counters.get("downlink_error", 0) + 1
                out.append(self._ack(f, now, False))
        return out

    def isolate(self, group):
        """The group's commit failed on its data: split it so each frame commits on its
        own. Returns [(frame or None, records)]; None holds the counters of rejects."""
        inside = set()
        parts = []
        for f, (a, b) in zip(group.frames, group.spans):
            parts.append((f, group.records[a:b]))
            inside.update(range(a, b))
        rest = [r for i, r in enumerate(group.records) if i not in inside]
        return [(None, rest)] + parts if rest else parts

    def reject_committed(self, f, now, error):
        """Frame `f`'s records would not commit: it becomes a `payload` reject (counted,
        logged with its hex) whose seq alone is committed, so it is still acked."""
        self._reject(now, f.node, REASON_PAYLOAD, "store refused its records (%r) raw=%s"
                     % (error, f.raw.hex()))
        recs, self.group.records = self.group.records[-2:], self.group.records[:-2]
        return recs + [FrameSeen(f.node, f.seq, self._new_floor(f))]

    def abandoned(self, group):
        """The commit failed: forget the frames so their retransmissions count as new."""
        self.in_flight = None
        for f in group.frames:
            self.link.abandoned(f)

    def take_immediate(self):
        out, self.immediate = self.immediate, []
        return out

    def _answer(self, f, now, last_for_node):
        configs = []
        if last_for_node and self.downlink is not None:
            configs = self.downlink.config_for(f.node, f.seq, now)
        zone = self._zone_due(f) if last_for_node else None
        out = [self._ack(f, now, bool(configs) or zone is not None)]
        for i, cfg in enumerate(configs):
            flags = fr.F_PENDING if i + 1 < len(configs) or zone is not None else 0
            out.append(wrap(self.link.config(f.node, f.seq, cfg, int(now),
                                             self._next_dl(f.node), flags)))
        if zone is not None:
            out.append(wrap(fr.encode(self._signers[f.node], fr.ZONE, f.node, self._next_dl(f.node),
                                      int(now), struct.pack(">IBB", f.seq, zone[0], zone[1]))))
            self._zone_sent[f.node] = zone[0]
        return out

    def _zone_due(self, f):
        """The ZONE downlink this node needs (SPEC 3.5), or None: sent while what the
        node says it sounds (F_ZONE) differs from what its zones want."""
        if self.zone_level is None:
            return None
        level, number = self.zone_level(f.node)
        sounding = bool(f.flags & fr.F_ZONE)
        if (level > 0) != sounding or (level and self._zone_sent.get(f.node) != level):
            return level, number
        return None

    def _ack(self, f, now, pending):
        flags = fr.F_PENDING if pending else 0
        if self.chanload is not None and self.chanload.congested(now):
            flags |= fr.F_CONGESTED
        b = wrap(self.link.ack(f.node, f.seq, int(now), self._next_dl(f.node), flags))
        if self.chanload is not None:
            self.chanload.heard(now, len(b))
        return b

    def _next_dl(self, node):
        s = self._dl_seq.get(node, self._dl_seq_start)
        self._dl_seq[node] = s + 1 if s < 0xFFFFFFFF else 1
        return s

    # ------------------------------------------------------------------ status
    def snapshot(self):
        nodes = {}
        for node, st in self.nodes.items():
            d = st.as_dict()
            ss = self.link.state(node)
            d["seq_gaps"] = ss.missing()
            d["floor"] = ss.floor
            d["highest_seq"] = ss.highest()
            d["evicted"] = ss.evicted
            nodes[node] = d
        return {"nodes": nodes, "rejects": dict(self.counters)}


def _abs_time(t_rx, age):
    """Receive time - age (SPEC §5); an age reaching before 1970 is a malformed payload."""
    if age > t_rx:
        raise msg.PayloadError("age %d s is more than the receive time %d" % (age, t_rx))
    return t_rx - age


class RadioPort:
    """The asyncio shell around RadioIngest for one serial port.

    store: has `commit(records)` (blocking, durable on return) and
    `committed_seqs(node)`. clock: () -> unix seconds (float). `commit_executor`: where
    the blocking commit runs (a one-thread executor keeps commits in order)."""

    def __init__(self, ser, ingest, store, clock, commit_executor=None, logger=log):
        self.ser = ser
        self.ingest = ingest
        self.store = store
        self.clock = clock
        self.executor = commit_executor
        self.log = logger
        self._wake = asyncio.Event()
        self._stopping = False
        self._reader_on = False
        self.failed = None             # why the port stopped working, if it did
        self.commits = 0
        self.commit_failures = 0
        self.frames_acked = 0
        self.last_commit_s = None

    def load_state(self, nodes):
        for node in nodes:
            floor, ranges = self.store.committed_seqs(node)
            self.ingest.load(node, floor, ranges)

    def _on_readable(self):
        try:
            data = os.read(self.ser.fileno(), 4096)
            if not data:
                # readable but nothing to read: the line hung up (as pyserial judges it too)
                raise OSError("port hung up (device disconnected?)")
        except BlockingIOError:
            return
        except OSError as e:
            # A vanished USB adapter or a dead UART: stop, so the service manager restarts
            # us instead of leaving a gateway that hears nothing.
            self.log.error("event=serial_read_failed port=%s error=%r", self.ser.port, e)
            self.failed = "serial read failed: %s" % e
            self._stopping = True
            self._stop_reader()
            self._wake.set()
            return
        self.ingest.feed(data, self.clock())
        for b in self.ingest.take_immediate():
            self._write(b)
        self._wake.set()

    def _stop_reader(self):
        if self._reader_on:
            asyncio.get_running_loop().remove_reader(self.ser.fileno())
            self._reader_on = False

    def _write(self, data):
        try:
            self.ser.write(data)
        except Exception as e:   # a failed ACK costs a retransmission, never data
            self.log.error("event=serial_write_failed port=%s error=%r", self.ser.port, e)

    async def run(self):
        """Read and commit until `stop()` (or a read error, see `failed`); then finish the
        group in hand and return."""
        loop = asyncio.get_running_loop()
        loop.add_reader(self.ser.fileno(), self._on_readable)
        self._reader_on = True
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await self._commit_open_group(loop)
                if self._stopping:
                    break
        finally:
            self._stop_reader()
            # Frames already read are committed and acked before we go.
            await self._commit_open_group(loop)

    async def _commit_open_group(self, loop):
        g = self.ingest.take_group()
        if g is None:
            return
        try:
            await loop.run_in_executor(self.executor, self.store.commit, g.records)
        except DATA_ERRORS as e:
            # One frame's data (not the disk) failed the transaction: commit frame by
            # frame, so the culprit alone becomes a reject and the rest are acked.
            self.log.error("event=commit_data_error frames=%d error=%r: committing frame "
                           "by frame", len(g.frames), e)
            g = await self._commit_one_by_one(loop, g)
        except Exception as e:
            self.commit_failures += 1
            self.ingest.abandoned(g)
            self.log.error("event=commit_failed frames=%d error=%r: not acked, nodes will "
                           "retransmit", len(g.frames), e)
            return
        self.commits += 1
        self.last_commit_s = self.clock()
        for b in self.ingest.committed(g, self.clock()):
            self._write(b)
        self.frames_acked += len(g.frames) + len(g.acks_only)

    async def _commit_one_by_one(self, loop, g):
        kept = []
        for f, recs in self.ingest.isolate(g):
            try:
                await loop.run_in_executor(self.executor, self.store.commit, recs)
            except DATA_ERRORS as e:
                if f is None:
                    continue            # counters only
                try:
                    await loop.run_in_executor(self.executor, self.store.commit,
                                               self.ingest.reject_committed(f, self.clock(), e))
                except Exception as e2:
                    self.ingest.link.abandoned(f)
                    self.log.error("event=commit_failed node=%d seq=%d error=%r", f.node,
                                   f.seq, e2)
                    continue
            except Exception as e:
                if f is not None:
                    self.ingest.link.abandoned(f)
                self.log.error("event=commit_failed error=%r", e)
                continue
            if f is not None:
                kept.append(f)
        g.frames = kept
        return g

    def stop(self):
        """Stop taking frames; `run()` commits what it has, acks it and returns."""
        self._stopping = True
        self._stop_reader()
        self._wake.set()
