"""The field node: sensors -> sampler -> trip engine -> siren, frame log -> radio.

`Node.step(now)` does everything that is due at monotonic time `now` (seconds) and
returns when it next needs to run; the main loop (firmware/main.py) sleeps until
then. Tests and the HIL rig call step() with simulated time, so a day of storm runs
in seconds, on CPython and on the MicroPython unix port alike.

Order inside one step, and why:
 1. radio in: ACKs free flash and sync the clock; CONFIG changes rules/intervals.
 2. ack timeouts (NodeLink.poll) so a lost frame is retried on time.
 3. trip engine hold-time clears, then a due report is packed and logged BEFORE this
    instant's samples, so every report holds whole intervals.
 4. due samples: driver read -> sampler (value or fault run) -> trip engine. Events
    set the siren/strobe level at once, and an ALARM record goes to flash before it
    can be sent (I1: nothing leaves that is not on flash).
 5. radio out: an unacked ALARM first (urgent: no airtime budget, pre-empts the wait
    for a routine frame's ack), then HELLO/CONFIG_ACK/STATUS, then the oldest
    logged READINGS. While an alarm is unacked, readings wait (I3).
 6. the watchdog is fed only here, at the end of a step that completed.

Downlinks come only in answer to an uplink (like LoRaWAN class A): the node listens
from a send until the ack deadline (longer while the gateway sets F_PENDING), and may
sleep otherwise.
"""
from firmware import faults
from firmware.alarm_out import AlarmOut
from firmware.framelog import R_BOOT_BASE, FrameLog
from firmware.nodeclock import BASE_BOOT, NodeClock
from firmware.sampler import PAYLOAD_BUDGET, Sampler
from protocol import frame as fr
from protocol import framing, messages, readings
from protocol.mic import Hmac
from protocol.nodelink import NodeLink
from protocol.trip import TripEngine

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

# The module's numbers are private consts: inlined where used, so none of them is a
# global name in the node's qstr pool (tests/firmware/test_node_32bit.py).

# Bytes a frame adds around its payload on the UART: COBS + CRC + 2 delimiters (5),
# fixed header (12), `back` (up to 5), MIC (8).
_FRAME_OVERHEAD = const(30)
# HELLO / STATUS keys given up first when a small module packet cannot carry them all
_HELLO_SHED = (messages.H_BOARD, messages.H_FW, messages.H_BOOT_COUNT, messages.H_RESET_CAUSE)
_STATUS_SHED = (messages.S_FW, messages.S_UPTIME, messages.S_FREE_HEAP, messages.S_THINNED,
                messages.S_DROPPED, messages.S_RESET_CAUSE, messages.S_SUPPLY_MV, messages.S_TEMP_DECIC,
                messages.S_MODE)


# the largest CBOR of one alarm map (nine keys, value/threshold/age up to 5 bytes each)
# inside its array: a module packet of less than 64 bytes cannot carry every alarm
_ALARM_MAX = const(34)
_MIN_PACKET = const(_ALARM_MAX + _FRAME_OVERHEAD)


def _payload_max(radio):
    mp = getattr(radio, "max_payload", None) if radio is not None else None
    if not mp:
        return fr.MAX_FRAME - _FRAME_OVERHEAD + 5
    return mp - _FRAME_OVERHEAD

FW_VERSION = "0.1.0"
_MAX_RX_PACKETS = const(8)  # per step: a babbling radio cannot starve sampling
_STATUS_TRIES = const(3)
_CONFIG_ACK_TRIES = const(5)
_PENDING_LISTEN_S = const(5)
_RADIO_RETRY_S = const(10)  # a radio that refused a packet (busy module, AUX stuck) is retried this much later

_MODE_NORMAL = const(0)
_MODE_INTENSIFIED = const(1)
_MODE_EMERGENCY = const(2)


def _reset_index(name):
    name = "deep_sleep" if name == "deepsleep" else name
    try:
        return messages.RESET_CAUSES.index(name)
    except ValueError:
        return 0


class _Control:
    """A frame that is not logged (HELLO, STATUS, CONFIG_ACK): built when sent,
    retried with the same seq a few times, never worth flash writes."""
    __slots__ = ("mtype", "payload", "seq", "tries", "max_tries")

    def __init__(self, mtype, payload=None, max_tries=0):
        self.mtype = mtype
        self.payload = payload
        self.seq = 0
        self.tries = 0
        self.max_tries = max_tries


class Node:
    def __init__(self, fs, cfg, sources, radio=None, siren=None, strobe=None, wdt=None,
                 rand=None, reset_cause="unknown", console=print, log_dir="log",
                 segment_bytes=4096, link=None, mem_free=None, downlink=None):
        self.fs = fs
        # what takes a CONFIG or ZONE downlink: firmware/main.py's downlink() (it loads
        # firmware/downlink.py for it; this module never imports boot code). None: such
        # downlinks are counted and not acked.
        self.downlink = downlink
        self.cfg = cfg
        self.sources = sources               # chan id -> object with read() -> (value, fault)
        self.radio = radio
        self.wdt = wdt
        self.console = console
        self.reset_cause = reset_cause
        self.mem_free = mem_free
        self.signer = Hmac(cfg.key) if cfg.key else None   # no key: never transmit
        self.clock = NodeClock(0)
        self.log = FrameLog(fs, log_dir, cfg.log_bytes, segment_bytes)
        iv = cfg.intervals
        # A frame must fit one module packet (SPEC 1): an E32's is 58 bytes, an E22's 240.
        self.payload_max = _payload_max(radio)
        if radio is not None and self.payload_max < _ALARM_MAX:
            console("radio: module packets of %d bytes are too small for an alarm frame: use "
                    "an E22 with sub_packet >= %d (an E32's 58-byte packets are not enough)"
                    % (self.payload_max + _FRAME_OVERHEAD, _MIN_PACKET))
        self.sampler = Sampler(cfg.chan_ids(), iv["sample_s"], iv["intensified_s"], iv["report_s"],
                               budget=min(PAYLOAD_BUDGET, self.payload_max))
        self.engine = TripEngine(cfg.rules)
        self.alarm = AlarmOut(siren, strobe)
        self.link = link or NodeLink(rand or _xorshift(cfg.node or 1))
        self.zone_level = 0                  # the gateway's zone warning (SPEC 3.5, firmware/downlink.py)
        self.deframer = framing.Deframer()
        self.events = []                     # reused list for trip engine events
        self.control = []                    # _Control frames waiting to go out
        self.inflight = None                 # (seq, seg no, index) of the logged frame in flight
        self.emergency_until = 0
        self.keep_until = 0
        self.listen_until = 0
        self.radio_retry_at = 0
        self.radio_busy = 0
        self.next_status = 0
        self.started = None
        self.counts = {}
        self.sent_log = None                 # tests: list that gets (mtype, seq, wire bytes)

    # --- lifecycle ------------------------------------------------------------------
    def start(self, now):
        """Start on the opened log: boot code opens it first with
        firmware/logscan.open_log(node.log, node.clock) (firmware/main.py)."""
        if self.log.alloc is None:
            raise RuntimeError("open the log first: logscan.open_log(node.log, node.clock)")
        boot = self.log.boot
        self.started = now
        self.next_status = now + self.cfg.intervals["status_s"]
        if self.log.torn:
            self.console("log: %d torn record(s) from a power cut skipped" % self.log.torn)
        self.console("node %d boot %d: %r, log depth %d, reset cause %s"
                     % (self.cfg.node, boot, self.cfg, self.log.depth(), self.reset_cause))
        if self.signer is None:
            self.console("radio off: no key in the config")
        self._queue(fr.HELLO)
        return boot

    def count(self, what):
        self.counts[what] = self.counts.get(what, 0) + 1

    # --- the loop ---------------------------------------------------------------------
    def step(self, now):
        now_i = int(now)
        self._receive(now)
        self.link.poll(now)
        events = self.events
        for ev in self.engine.tick(now_i):
            events.append(ev)
        if self.sampler.report_due(now_i):
            self._log_readings(now)
        for chan in self.sampler.due(now_i):
            self._sample(chan, now_i)
        if events:
            self._log_alarms(now, events)
            del events[:]
        self.sampler.set_intensified(self.engine.near() or now < self.emergency_until, now_i)
        self.alarm.update(int(now * 1000))
        if now >= self.next_status:
            self.next_status = now + self.cfg.intervals["status_s"]
            self._queue(fr.STATUS)
        self._transmit(now)
        if self.wdt is not None:
            self.wdt.feed()
        return self.next_wake(now)

    def next_wake(self, now):
        t = self.sampler.next_due()
        d = self.link.deadline()        # a float (16 bytes) while a frame is in flight: once
        for c in (self.engine.next_due(), d, self.next_status):
            if c is not None and (t is None or c < t):
                t = c
        a = self.alarm.next_change(int(now * 1000))
        if a is not None and (t is None or a / 1000 < t):
            t = a / 1000
        if self.signer is not None and self.radio is not None and self._has_uplink():
            urgent = bool(self.log.alarms)
            if d is None or urgent:
                # a send refused now (airtime budget, busy radio) is retried in 1 s
                s = max(self.link.next_send_time(urgent), self.radio_retry_at)
                if s <= now:
                    s = now + 1.0
                if t is None or s < t:
                    t = s
        if now < self.listen_until and (t is None or self.listen_until < t):
            t = self.listen_until
        return t

    def must_listen(self, now):
        """The radio must stay on (and the MCU awake): an ack or downlink may come."""
        return self.link.deadline() is not None or now < self.listen_until

    def _has_uplink(self):
        return bool(self.log.alarms or self.control or self.log.depth())

    # --- sampling -----------------------------------------------------------------------
    def _sample(self, chan, now_i):
        s = self.sampler
        t = s.sample_time(chan, now_i)
        src = self.sources.get(chan)
        try:
            if src is None:
                value, fault = None, faults.NOT_AVAILABLE
            else:
                value, fault = src.read()
        except Exception as e:  # a driver bug must not stop the node sampling the rest
            self.console("driver error on channel 0x%02x: %r" % (chan, e))
            self.count("driver_error")
            value, fault = None, faults.SENSOR_ERROR
        if fault:
            value = None
        if not s.add(chan, t, value, fault):
            self.count("sample_overflow")   # cannot happen while reports go out on time
        self.engine.update_into(chan, t, value, self.events, fault)

    def _keep(self, now):
        return self.engine.near() or self.engine.level() > 0 or now < self.keep_until

    def _log_readings(self, now):
        payload = self.sampler.take(int(now))
        if payload is None:
            return
        base, boot, t_ref = self.clock.stamp(now)
        seq = self.log.take_seq()
        self.log.append(seq, fr.READINGS, payload, base == BASE_BOOT, boot, t_ref, self._keep(now))

    def _log_alarms(self, now, events):
        now_i = int(now)
        self.alarm.set_level(max(self.engine.level(), self.zone_level), int(now * 1000))
        out = []
        for ev in events:
            out.append({messages.A_EVENT: ev.event, messages.A_LEVEL: ev.level,
                        messages.A_PREV: ev.prev_level, messages.A_CHAN: ev.chan,
                        messages.A_RULE: ev.rule_id, messages.A_KIND: ev.rule_kind,
                        messages.A_VALUE: ev.value, messages.A_THRESHOLD: ev.threshold,
                        messages.A_AGE: max(0, now_i - ev.t)})
            self.console("alarm: %r" % (ev,))
        base, boot, t_ref = self.clock.stamp(now)
        base_boot = base == BASE_BOOT
        # an ALARM frame is small, but a config with many rules can trip many at once;
        # an alarm takes at most _ALARM_MAX bytes, and a frame must fit one module packet
        per = max(1, min(4, self.payload_max // _ALARM_MAX))
        for i in range(0, len(out), per):
            seq = self.log.take_seq()
            self.log.append(seq, fr.ALARM, messages.encode_alarms(out[i:i + per]), base_boot, boot,
                            t_ref, True)
        self.keep_until = now + 2 * self.sampler.report_s

    # --- control frames -------------------------------------------------------------------
    def _queue(self, mtype, payload=None):
        """Queue a control frame: HELLO is sent until acked, STATUS and CONFIG_ACK a few
        times (informational: not worth a retry storm)."""
        for c in self.control:
            if c.mtype == mtype and mtype != fr.CONFIG_ACK:
                return
        tries = _STATUS_TRIES if mtype == fr.STATUS else _CONFIG_ACK_TRIES if mtype == fr.CONFIG_ACK else 0
        self.control.append(_Control(mtype, payload, tries))

    def mode(self, now):
        if now < self.emergency_until:
            return _MODE_EMERGENCY
        return _MODE_INTENSIFIED if self.sampler.intensified else _MODE_NORMAL

    def _control_payload(self, c, now):
        if c.payload is not None:
            return c.payload
        cfg = self.cfg
        if c.mtype == fr.HELLO:
            return self._fitting({
                messages.H_FW: FW_VERSION, messages.H_CONFIG_VERSION: cfg.version,
                messages.H_RESET_CAUSE: _reset_index(self.reset_cause),
                messages.H_BOOT_COUNT: self.log.boot, messages.H_CHANNELS: cfg.chan_ids(),
                messages.H_BOARD: cfg.board}, _HELLO_SHED)
        m = {messages.S_FW: FW_VERSION, messages.S_CONFIG_VERSION: cfg.version,
             messages.S_RESET_CAUSE: _reset_index(self.reset_cause),
             messages.S_LOG_DEPTH: self.log.depth(), messages.S_UPTIME: int(now - self.started),
             messages.S_THINNED: self.log.thinned, messages.S_DROPPED: self.log.dropped,
             messages.S_LEVEL: self.engine.level(), messages.S_MODE: self.mode(now)}
        if self.mem_free is not None:
            m[messages.S_FREE_HEAP] = self.mem_free()
        for chan, key in ((0x28, messages.S_BATTERY_MV), (0x30, messages.S_SUPPLY_MV),
                          (0x38, messages.S_TEMP_DECIC)):
            v = self._last_value(chan)
            lo = -0x8000 if key == messages.S_TEMP_DECIC else 0
            if v is not None and lo <= v <= lo + 0xFFFF:    # SPEC §3.2 ranges
                m[key] = v
        return self._fitting(m, _STATUS_SHED)

    def _fitting(self, m, shed):
        """The map's CBOR, leaving out the least needed keys (in `shed` order) until it
        fits one frame: every HELLO and STATUS key is optional to the gateway."""
        b = messages.encode_map(m)
        for k in shed:
            if len(b) <= self.payload_max:
                break
            if k in m:
                del m[k]
                b = messages.encode_map(m)
        return b

    def _last_value(self, chan):
        for c in self.sampler.chans:
            if c.chan == chan and c.last_t is not None and not c.last_fault:
                return c.last_v
        return None

    # --- radio out ------------------------------------------------------------------------
    def _oldest_unacked(self):
        best = self.log.oldest_unacked()
        for c in self.control:
            if c.seq and (best is None or c.seq < best):
                best = c.seq
        return best

    def _transmit(self, now):
        if self.signer is None or self.radio is None or now < self.radio_retry_at:
            return
        if self.radio.busy():
            # busy for one packet is normal; a module stuck busy (AUX low) must not keep
            # the MCU awake: back off 1, 2, 4 .. 30 s
            self.radio_busy += 1
            self.radio_retry_at = now + min(30, 1 << min(self.radio_busy - 1, 5))
            if self.radio_busy == 8:
                self.console("radio: module busy for a long time (AUX stuck low?)")
            return
        self.radio_busy = 0
        link = self.link
        if self.log.alarms:
            if now < link.next_send_time(True):
                return
            if link.deadline() is not None and link.inflight[2]:
                return    # an alarm is already in flight: wait for its ack
            seq, no, i = self.log.alarms[0]
            self._send_record(now, self.log.get(no, i), True)
            return
        if link.deadline() is not None or now < link.next_send_time(False):
            return
        if self.control:
            c = self.control[0]
            if not c.seq:
                c.seq = self.log.take_seq()
            wire = self._frame(now, c.mtype, c.seq, self._control_payload(c, now), 0)
            if self._send(now, wire, c.seq, c.mtype, False):
                c.tries += 1
                self.inflight = None
                if c.max_tries and c.tries >= c.max_tries:
                    self.control.pop(0)   # informational: not worth a retry storm
            return
        rec = self.log.next_record()
        if rec is not None:
            self._send_record(now, rec, False)

    def _send_record(self, now, rec, urgent):
        el = self.clock.elapsed(2 if rec.rflags & R_BOOT_BASE else 1, rec.boot, rec.t_ref, now)
        if el is None:
            # Unix-stamped record but no clock yet (after a reboot): a HELLO brings one
            self._queue(fr.HELLO)
            if self.control and not urgent:
                return
            el = (int(now - self.started), True)
        delta, approx = el
        try:
            # the ages move to the send time in the payload's bytes: no decoding (garbage
            # at every send), and the CBOR decoder stays off the alarm path
            if rec.mtype == fr.READINGS:
                payload = readings.restamp(rec.payload, delta)
            else:
                payload = messages.restamp_alarms(rec.payload, delta)
            wire = self._frame(now, rec.mtype, rec.seq, payload, fr.F_TIME_APPROX if approx else 0)
        except ValueError as e:
            # cannot happen for records this firmware wrote; never let one block the queue
            self.console("log: record %d unsendable (%s): dropped" % (rec.seq, e))
            self.count("unsendable")
            self.log.ack([(rec.seq, rec.seq)])
            return
        if self._send(now, wire, rec.seq, rec.mtype, urgent):
            self.inflight = (rec.seq, rec.seg, rec.index)

    def _frame(self, now, mtype, seq, payload, flags):
        t, f = self.clock.header_time(now)
        flags |= f
        if self.engine.level() > 0:
            flags |= fr.F_ALARM_ACTIVE
        if now < self.emergency_until or self.sampler.intensified:
            flags |= fr.F_EMERGENCY
        if self.zone_level:
            flags |= fr.F_ZONE
        oldest = self._oldest_unacked()
        back = seq - oldest if oldest is not None and oldest < seq else 0
        return framing.wrap(fr.encode(self.signer, mtype, self.cfg.node, seq, t, payload, flags, back))

    def _send(self, now, wire, seq, mtype, urgent):
        air = self.radio.airtime_ms(len(wire)) / 1000.0
        if not self.link.can_send(now, air, urgent):
            return False
        busy = getattr(self.radio, "channel_busy", None)
        if busy is not None and busy():
            # listen before talk (SPEC 6.5): the driver's carrier sense says the channel is
            # in use; alarms try again sooner than routine frames
            self.link.defer(now, urgent)
            return False
        if not self.radio.send(wire):
            self.count("radio_refused")
            self.radio_retry_at = now + _RADIO_RETRY_S
            return False
        self.link.sent(now, seq, air, urgent)
        if self.sent_log is not None:
            self.sent_log.append((mtype, seq, wire))
        return True

    # --- radio in ---------------------------------------------------------------------------
    def _signer_for(self, node):
        return self.signer if node == self.cfg.node else None

    def _receive(self, now):
        if self.radio is None or self.signer is None:
            return
        for _ in range(_MAX_RX_PACKETS):
            pkt = self.radio.poll()
            if pkt is None:
                return
            for item in self.deframer.feed(pkt):
                if isinstance(item, str):
                    self.count("rx_" + item)
                    continue
                try:
                    f = fr.decode(item, self._signer_for, fr.DOWNLINK_TYPES)
                except fr.FrameError as e:
                    self.count("rx_" + e.reason)
                    # another node's uplink (type) or ACK (node): its ACK may follow, so
                    # routine frames keep off the channel a moment (SPEC 6.5)
                    if self.link.next_routine < now + 0.5:
                        self.link.next_routine = now + 0.5
                    continue
                if f.flags & fr.F_PENDING:
                    self.listen_until = now + _PENDING_LISTEN_S
                try:
                    if f.mtype == fr.ACK:
                        self._on_ack(now, f)
                    else:
                        self._on_config(now, f)
                except messages.PayloadError as e:
                    self.count("rx_payload")
                    self.console("downlink refused: %s" % e)

    def _on_ack(self, now, f):
        re, gw_time, ranges = messages.decode_ack(f.payload)
        res = self.link.on_ack(now, re, gw_time, ranges)
        self.sampler.congested = bool(f.flags & fr.F_CONGESTED)
        if res.fresh:
            self.clock.sync(now, gw_time)
        hint = self.inflight if self.inflight is not None and self.inflight[0] == re else None
        if ranges:
            self.log.ack(ranges, hint)
        keep = []
        for c in self.control:
            done = False
            if c.seq:
                for lo, hi in ranges:
                    if lo <= c.seq <= hi:
                        done = True
            if not done:
                keep.append(c)
        self.control = keep

    def _on_config(self, now, f):
        """A CONFIG or ZONE downlink, handed to self.downlink (firmware/main.py's loads the
        config checks and the CBOR decoder for it where boot dropped them, and drops them
        again). A fragmented heap may not have room for them (MemoryError: nothing applied
        or acked, the gateway resends)."""
        if self.downlink is None:
            self.count("rx_no_downlink")
            return
        try:
            self.downlink(self, now, f.payload, f.mtype)
        except MemoryError:
            # No ack: the gateway sends the CONFIG again (until the command expires), by
            # when the heap may have room; flash and rules stay as they were
            # (nodeconfig.apply_downlink). The CONFIG's garbage is free by now, yet a full
            # heap may still refuse a new count key or the line: never a crash from here.
            try:
                self.count("config_no_memory")
                self.console("config downlink: too little free heap to check it now: the "
                             "gateway will send it again")
            except MemoryError:
                pass


def _xorshift(seed):
    """A small PRNG for back-off jitter when the caller gives none (seeded per node so
    nodes that collided drift apart)."""
    state = [(seed * 2654435761) & 0xFFFFFFFF or 1]

    def rand():
        x = state[0]
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        state[0] = x
        return (x & 0xFFFFFF) / 16777216.0
    return rand

