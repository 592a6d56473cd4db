"""A protocol-level simulated field node, for the demo and the gateway tests.

It speaks the real radio protocol (protocol/), but samples a made-up world instead of
sensors and keeps its frame log in RAM:

    node = SimNode(101, key, [Channel(chan_id(2), World(...))], rules=[...])
    out = node.step(now)            # -> bytes to put on the air (wrapped frames)
    node.receive(data, now)         # downlink bytes heard on the air

`now` is the node's own clock in seconds (monotonic, any origin; the demo runs it
faster than real time). Every `sample_s` it samples each channel and runs the trip
engine; a trip makes an ALARM frame that goes out at once (urgent). Every `report_s` it
logs a READINGS frame; the log is drained oldest first under protocol.nodelink.NodeLink
(ack timeout, back-off, airtime budget). Each (re)transmission re-encodes the ages from
the logged sample times, as a real node does. CONFIG frames are applied (intervals,
emergency, status now) and answered with CONFIG_ACK.
"""
import math

from protocol import frame as fr
from protocol import messages as msg
from protocol import readings as rd
from protocol import trip
from protocol.framing import Deframer, wrap
from protocol.mic import Hmac
from protocol.nodelink import NodeLink, SeqAllocator

MAX_SAMPLES = 24


class World:
    """A smooth signal: base + amplitude * sin(2 pi t / period) + slope * t, optionally
    with a step up of `jump` from `jump_at` on (to make something trip)."""

    def __init__(self, base, amplitude=0.0, period_s=3600.0, slope_per_s=0.0, jump=0,
                 jump_at=None, phase=0.0):
        self.base, self.amplitude, self.period_s = base, amplitude, period_s
        self.slope, self.jump, self.jump_at, self.phase = slope_per_s, jump, jump_at, phase

    def value(self, t):
        v = self.base + self.amplitude * math.sin(2 * math.pi * t / self.period_s + self.phase)
        v += self.slope * t
        if self.jump_at is not None and t >= self.jump_at:
            v += self.jump
        return int(round(v))


class Channel:
    __slots__ = ("chan", "world", "accumulating")

    def __init__(self, chan, world, accumulating=False):
        self.chan, self.world, self.accumulating = chan, world, accumulating


class _Logged:
    __slots__ = ("seq", "mtype", "samples", "alarms", "urgent", "tries")

    def __init__(self, seq, mtype, samples=None, alarms=None, urgent=False):
        self.seq, self.mtype, self.samples, self.alarms = seq, mtype, samples, alarms
        self.urgent, self.tries = urgent, 0


class SimNode:
    def __init__(self, node, key, chans, rules=(), sample_s=60, report_s=300, status_s=3600,
                 rand=None, airtime_s=0.3, t0=0.0, fw="sim-1.0", link_kw=None):
        import random
        self.node = node
        self.signer = Hmac(key)
        self.chans = list(chans)
        self.engine = trip.TripEngine(list(rules))
        self.sample_s, self.report_s, self.status_s = sample_s, report_s, status_s
        self.intensified_s = max(1, sample_s // 6)
        self.rng = rand or random.Random(node)
        self.link = NodeLink(self.rng.random, **(link_kw or {}))
        self.seqs = SeqAllocator(0)
        self.deframer = Deframer()
        self.airtime_s = airtime_s
        self.fw = fw
        self.log = []                   # _Logged, oldest first (ALARMs jump ahead when sent)
        self.oneshots = []              # STATUS/HELLO/CONFIG_ACK: sent from RAM, not logged
        self.samples = []               # (chan, t, value) since the last report
        self.config_version = 1
        self.emergency_until = None
        self.clock_offset = None        # gateway unix time - node clock, from fresh ACKs
        self.next_sample = t0
        self.next_report = t0 + report_s
        self.next_status = t0 + 1.0
        self.boot_t = t0
        self.acked = set()              # seqs the gateway acked (for tests)
        self.readings_in = {}           # seq -> readings in that READINGS frame (for tests)
        self.alarms_sent = 0
        self.configs_applied = []
        self.sent = 0
        self._hello = True

    # ------------------------------------------------------------------ sampling
    def _interval(self, now):
        if (self.emergency_until is not None and now < self.emergency_until) or \
                self.engine.near():
            return self.intensified_s
        return self.sample_s

    def _sample(self, now):
        t = int(now)
        alarms = []
        for c in self.chans:
            v = c.world.value(t)
            self.samples.append((c.chan, t, v))
            for ev in self.engine.update(c.chan, t, v):
                alarms.append(ev)
        for ev in self.engine.tick(t):
            alarms.append(ev)
        if alarms:
            self._log(fr.ALARM, alarms=[(ev, t) for ev in alarms], urgent=True)

    def _log(self, mtype, samples=None, alarms=None, urgent=False):
        seq, _reserve = self.seqs.take()     # a real node persists `reserve` first
        ent = _Logged(seq, mtype, samples, alarms, urgent)
        if mtype == fr.READINGS:
            self.readings_in[seq] = len(samples)
        self.log.append(ent)
        return ent

    def _report(self):
        # at most MAX_SAMPLES per frame, so a frame always fits 192 bytes
        while self.samples:
            self._log(fr.READINGS, samples=self.samples[:MAX_SAMPLES])
            del self.samples[:MAX_SAMPLES]

    # ------------------------------------------------------------------ encoding
    def _encode(self, ent, now):
        t_now = int(now)
        if ent.mtype == fr.READINGS:
            blocks = []
            by_chan = {}
            for chan, t, v in ent.samples:
                by_chan.setdefault(chan, []).append((t, v))
            for chan, pts in by_chan.items():
                run = [pts[0]]
                for p in pts[1:]:
                    d = p[0] - run[-1][0]
                    if d <= 0 or (len(run) > 1 and d != run[1][0] - run[0][0]):
                        blocks.append(_block(chan, run, t_now))
                        run = [p]
                    else:
                        run.append(p)
                blocks.append(_block(chan, run, t_now))
            payload = rd.encode(blocks)
        else:
            arr = []
            for ev, t in ent.alarms:
                arr.append({msg.A_EVENT: ev.event, msg.A_LEVEL: ev.level, msg.A_PREV: ev.prev_level,
                            msg.A_CHAN: ev.chan, msg.A_RULE: ev.rule_id, msg.A_KIND: ev.rule_kind,
                            msg.A_VALUE: ev.value, msg.A_THRESHOLD: ev.threshold,
                            msg.A_AGE: max(0, t_now - t)})
            payload = msg.encode_alarms(arr)
        return self._frame(ent.mtype, ent.seq, now, payload)

    def _frame(self, mtype, seq, now, payload):
        oldest = min([e.seq for e in self.log] + [seq])
        flags = 0
        if self.clock_offset is not None:
            flags |= fr.F_CLOCK_SYNCED
            t = int(now + self.clock_offset)
        else:
            t = int(now - self.boot_t)
        if self.engine.level() > 0:
            flags |= fr.F_ALARM_ACTIVE
        if self.emergency_until is not None and now < self.emergency_until:
            flags |= fr.F_EMERGENCY
        return fr.encode(self.signer, mtype, self.node, seq, t & 0xFFFFFFFF, payload, flags,
                         seq - oldest)

    def _status_frame(self, now):
        seq, _ = self.seqs.take()
        if self._hello:
            self._hello = False
            m = {msg.H_FW: self.fw, msg.H_CONFIG_VERSION: self.config_version,
                 msg.H_RESET_CAUSE: 1, msg.H_CHANNELS: [c.chan for c in self.chans]}
            return self._frame(fr.HELLO, seq, now, msg.encode_map(m))
        m = {msg.S_BATTERY_MV: 3900 - int(now) // 600 % 300, msg.S_LOG_DEPTH: len(self.log),
             msg.S_FW: self.fw, msg.S_CONFIG_VERSION: self.config_version,
             msg.S_FREE_HEAP: 61000, msg.S_LEVEL: self.engine.level()}
        return self._frame(fr.STATUS, seq, now, msg.encode_map(m))

    # ------------------------------------------------------------------ the loop
    def step(self, now):
        """Advance to `now`; return the bytes to transmit (zero or one wrapped frame)."""
        while now >= self.next_sample:
            self._sample(self.next_sample)
            self.next_sample += self._interval(self.next_sample)
        if now >= self.next_report:
            self._report()
            self.next_report = now + (self.intensified_s * 3 if self.engine.level() else
                                      self.report_s)
        if now >= self.next_status:
            self.oneshots.append(("status", None))
            # the first STATUS follows the HELLO closely, then every status_s
            self.next_status = now + (self.report_s / 4 if self._hello else self.status_s)
        self.link.poll(now)
        # alarms first, then one-shots, then the oldest logged frame
        urgent = [e for e in self.log if e.urgent]
        if urgent and self.link.can_send(now, self.airtime_s, True):
            return self._send(urgent[0], now)
        if self.oneshots and self.link.can_send(now, self.airtime_s, False):
            kind, data = self.oneshots.pop(0)
            f = self._status_frame(now) if kind == "status" else data(now)
            seq = (f[4] << 24) | (f[5] << 16) | (f[6] << 8) | f[7]
            self.link.sent(now, seq, self.airtime_s, False)
            self.sent += 1
            return wrap(f)
        routine = [e for e in self.log if not e.urgent]
        if routine and self.link.can_send(now, self.airtime_s, False):
            return self._send(routine[0], now)
        return b""

    def _send(self, ent, now):
        f = self._encode(ent, now)
        ent.tries += 1
        self.link.sent(now, ent.seq, self.airtime_s, ent.urgent)
        self.sent += 1
        if ent.mtype == fr.ALARM and ent.tries == 1:
            self.alarms_sent += 1
        return wrap(f)

    def receive(self, data, now):
        """Downlink bytes heard on the air (frames for other nodes are ignored)."""
        out = b""
        for item in self.deframer.feed(data):
            if isinstance(item, str) or len(item) < fr.MIN_FRAME:
                continue
            if fr.peek_node(item) != self.node:
                continue
            try:
                f = fr.decode(item, lambda n: self.signer, fr.DOWNLINK_TYPES)
            except fr.FrameError:
                continue
            if f.mtype == fr.ACK:
                re, gw_time, ranges = msg.decode_ack(f.payload)
                res = self.link.on_ack(now, re, gw_time, ranges)
                for lo, hi in res.ranges:
                    self.log = [e for e in self.log if not lo <= e.seq <= hi]
                    for s in range(lo, hi + 1):
                        self.acked.add(s)
                if res.fresh:
                    self.clock_offset = gw_time - now
            elif f.mtype == fr.CONFIG:
                out += self._config(f, now)
        return out

    def _config(self, f, now):
        re, m = msg.decode_config(f.payload)
        v = m[msg.C_VERSION]
        ack = {msg.K_VERSION: v, msg.K_RE: f.seq}
        if not self.link.is_fresh_re(now, re) or v <= self.config_version:
            ack[msg.K_RESULT] = msg.RESULT_STALE
            ack[msg.K_VERSION] = self.config_version
        else:
            try:
                rules = None
                if msg.C_RULES in m:
                    rules = [trip.Rule.from_wire(w) for w in m[msg.C_RULES]]
                iv = m.get(msg.C_INTERVALS, {})
                for k in iv:
                    if not isinstance(iv[k], int) or iv[k] < 1:
                        raise ValueError("interval %d must be >= 1" % k)
            except ValueError as e:
                ack[msg.K_RESULT] = msg.RESULT_REJECTED
                ack[msg.K_REASON] = str(e)[:60]
            else:
                if rules is not None:
                    self.engine.set_rules(rules, int(now))
                self.sample_s = iv.get(msg.I_SAMPLE_S, self.sample_s)
                self.intensified_s = iv.get(msg.I_INTENSIFIED_S, self.intensified_s)
                self.report_s = iv.get(msg.I_REPORT_S, self.report_s)
                self.status_s = iv.get(msg.I_STATUS_S, self.status_s)
                if msg.C_EMERGENCY_S in m:
                    d = m[msg.C_EMERGENCY_S]
                    self.emergency_until = now + d if d else None
                if m.get(msg.C_STATUS_NOW):
                    self.oneshots.append(("status", None))
                self.config_version = v
                self.configs_applied.append(m)
                ack[msg.K_RESULT] = msg.RESULT_OK
        payload = msg.encode_map(ack)

        def build(t):
            seq, _ = self.seqs.take()
            return self._frame(fr.CONFIG_ACK, seq, t, payload)
        self.oneshots.insert(0, ("config_ack", build))
        return b""


def _block(chan, run, t_now):
    t0 = run[0][0]
    step = run[1][0] - run[0][0] if len(run) > 1 else 0
    return rd.Block(chan, max(0, t_now - t0), step, [v for _t, v in run])
