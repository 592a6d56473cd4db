"""Trip engine: channel samples in, warning-level events out (normative: TRIP.md).

Pure logic, shared by the node (its own sensors) and the gateway (Modbus sensors):
time is injected as int seconds on a monotonic clock, nothing here does I/O.

    eng = TripEngine([Rule.from_wire([1, 0x10, THRESHOLD, RED, ABOVE, 3000, 100, 2, 600])])
    for ev in eng.update(0x10, now, value):   # value None = sensor fault
        ...                                   # TRIP / LEVEL / CLEAR AlarmEvent
    eng.tick(now)                             # clears that fall due with no new sample
    eng.near()                                # drive the intensified sampling interval

Checking and building rules (Rule's range checks, from_wire, from_dict, the parameter
tables PARAMS/OPTIONAL, the rule-list checks) live in protocol/ruleparse.py, imported
only inside the functions that need it, so a node can drop it once its rules are built.
"""
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

# ABOVE and BELOW are re-exported: callers write trip.ABOVE in THRESHOLD rules.
from protocol.tripstate import ABOVE, BELOW, NO_FAILURE, VMAX, Despike  # noqa: F401

THRESHOLD = const(1)
RATE = const(2)
SUM = const(3)
INVVEL = const(4)
TANGENT = const(5)

TRIP = const(1)
LEVEL = const(2)
CLEAR = const(3)
BLIND = const(4)   # a sensor fault on a channel above normal (TRIP.md 3.2)

MAX_RULES = const(32)

# SPEC.md section 4 fault kinds that the engine treats apart (firmware/faults.py)
_OPEN_CIRCUIT = const(1)
_OVER_RANGE = const(2)
_UNDER_RANGE = const(3)
_BROKEN_LOOP = const(8)

KIND_NAMES = {THRESHOLD: "threshold", RATE: "rate", SUM: "sum", INVVEL: "invvel",
              TANGENT: "tangent"}
EVENT_NAMES = {TRIP: "trip", LEVEL: "level", CLEAR: "clear", BLIND: "blind"}
LEVEL_NAMES = ("normal", "blue", "yellow", "orange", "red")


def _is_int(x):
    return isinstance(x, int) and x is not True and x is not False


class Rule:
    """One warning rule on one channel. Attributes: rule_id, chan, kind, level, params
    (tuple in wire order) and each parameter by name (op, threshold, window_s, ...)."""

    def __init__(self, rule_id, chan, kind, level, params):
        from protocol.ruleparse import init_rule
        init_rule(self, rule_id, chan, kind, level, params)

    @staticmethod
    def from_wire(arr):
        """Rule from its wire list [rule_id, chan, kind, level, p1, p2, ...]."""
        from protocol.ruleparse import from_wire
        return from_wire(arr)

    @staticmethod
    def from_dict(d):
        """Rule from a config table: "rule_id" (or "id"), "chan" (id byte or a name like
        "water_level.0"), "kind" (name or number), "level" (name or number) and the
        kind's parameters by their wire names (section 2 of TRIP.md)."""
        from protocol.ruleparse import from_dict
        return from_dict(d)

    def to_wire(self):
        return [self.rule_id, self.chan, self.kind, self.level] + list(self.params)

    def trip_threshold(self):
        """The number an AlarmEvent reports as `threshold` (lead_s for INVVEL, tan(alpha)
        * 1000 for TANGENT)."""
        if self.kind == INVVEL:
            return self.lead_s
        if self.kind == TANGENT:
            return self.tan_pm
        return self.threshold

    def near_margin(self):
        """THRESHOLD only: how far before the threshold the near band starts."""
        if self.near >= 0:
            return self.near
        t = self.threshold
        return (t if t >= 0 else -t) // 5

    def __eq__(self, other):
        return isinstance(other, Rule) and self.to_wire() == other.to_wire()

    def __hash__(self):
        return hash(tuple(self.to_wire()))

    def __repr__(self):
        return "Rule(%s)" % (self.to_wire(),)


class AlarmEvent:
    """A change of one channel's latched level, caused by one rule."""

    def __init__(self, event, chan, rule_id, rule_kind, level, prev_level, value, threshold, t):
        self.event = event
        self.chan = chan
        self.rule_id = rule_id
        self.rule_kind = rule_kind
        self.level = level
        self.prev_level = prev_level
        self.value = value
        self.threshold = threshold
        self.t = t

    def as_tuple(self):
        return (self.event, self.chan, self.rule_id, self.rule_kind, self.level, self.prev_level,
                self.value, self.threshold, self.t)

    def __eq__(self, other):
        return isinstance(other, AlarmEvent) and self.as_tuple() == other.as_tuple()

    def __repr__(self):
        return "AlarmEvent(%s chan=0x%02x rule=%d %s %s->%s value=%d threshold=%d t=%d)" % (
            EVENT_NAMES.get(self.event, self.event), self.chan, self.rule_id,
            KIND_NAMES.get(self.rule_kind, self.rule_kind), LEVEL_NAMES[self.prev_level],
            LEVEL_NAMES[self.level], self.value, self.threshold, self.t)


class TripEngine:
    def __init__(self, rules):
        from protocol.ruleparse import check_rules
        check_rules(rules)
        self._states = []
        self._by_chan = {}
        self._chans = []
        self._level = {}
        self._last_t = {}
        self._spike = {}       # chan -> Despike: the filter, last value, fault run, escalation
        self._install(rules, None)

    # -- configuration -------------------------------------------------------------------

    def _install(self, rules, old_states):
        states = []
        by_chan = {}
        chans = []
        if old_states:   # set_rules
            from protocol.ruleparse import carry_over, reuse
        for r in rules:
            st = None
            if old_states:
                st = reuse(r, old_states)
            if st is None:
                st = new_state(r)
                if old_states:
                    carry_over(st, old_states)
            states.append(st)
            if r.chan not in by_chan:
                by_chan[r.chan] = []
                chans.append(r.chan)
            by_chan[r.chan].append(st)
        # everything that allocates comes before the swap: a MemoryError (a CONFIG on a
        # full heap) leaves the engine running its old rules, not half of the new ones
        spike = {}
        for c in chans:
            spike[c] = self._spike.get(c) or Despike()
        for c in chans:
            if c not in self._level:
                self._level[c] = 0
        for c in chans:
            spike[c].on = False
        for st in states:
            if st.rule.kind in (RATE, INVVEL, TANGENT):
                spike[st.rule.chan].on = True
        self._states = states
        self._by_chan = by_chan
        self._chans = chans
        self._spike = spike

    @property
    def rules(self):
        out = []
        for st in self._states:
            out.append(st.rule)
        return out

    def set_rules(self, rules, t=None):
        """Replace the rule set (remote config). A rule sent unchanged keeps all its state;
        a changed rule on the same channel and kind inherits the old window history, and
        stays latched if its rule_id, channel, kind and level are the same. Returns the
        events for channels whose level falls because latched rules were removed, stamped
        t (default: the channel's last sample time). Bad rules raise and change nothing."""
        from protocol.ruleparse import check_rules
        check_rules(rules)
        old = self._states
        old_chans = self._chans
        self._install(rules, old)
        out = []
        for st in old:
            st.changed = 0
        for st in old:
            if st.latched and st not in self._states:
                st.changed = -1
        for c in old_chans:
            prev = self._level[c]
            new = self._max_level(c)
            if new != prev:
                cause = None
                for st in old:
                    if st.rule.chan == c and st.changed == -1 and st.rule.level == prev and cause is None:
                        cause = st
                tc = t if t is not None else self._last_t.get(c, cause.t_trip if cause else 0)
                out.append(self._event(CLEAR if new == 0 else LEVEL, c, cause, new, prev, tc))
                self._level[c] = new
            if c not in self._by_chan:
                del self._level[c]
                if c in self._last_t:
                    del self._last_t[c]
        for st in old:
            st.changed = 0
        return out

    # -- samples and time ------------------------------------------------------------------

    def update(self, chan, t, value, fault=0):
        """Feed one sample (value None = sensor fault; `fault` its SPEC.md section 4 code).
        Returns a list of AlarmEvent."""
        out = []
        self.update_into(chan, t, value, out, fault)
        return out

    def update_into(self, chan, t, value, out, fault=0):
        """update() that appends to the caller's list: no allocation per call on the node.
        Returns how many events were appended."""
        states = self._by_chan.get(chan)
        if states is None:
            return 0
        if not _is_int(t) or t < 0:
            raise ValueError("update: t %r must be int seconds >= 0 from a monotonic clock" % (t,))
        last = self._last_t.get(chan)
        if last is not None and t < last:
            raise ValueError("update: t=%d is before the last sample of channel 0x%02x (t=%d): "
                             "feed samples in time order from one monotonic clock" % (t, chan, last))
        if value is None or fault:
            return self._fault(chan, t, value, fault & 0xFF, states, out)
        if not _is_int(value) or not -VMAX <= value <= VMAX:
            raise ValueError("update: value %r on channel 0x%02x must be a scaled int within "
                             "+-%d, or None for a sensor fault" % (value, chan, VMAX))
        self._spike[chan].since = -1
        self._feed(chan, t, value, states)
        return self._emit(chan, t, out)

    def _feed(self, chan, t, value, states):
        self._last_t[chan] = t
        f = self._spike[chan]
        fv = f.put(t, value) if f.on else value
        if fv is not None:
            f.last = fv
        for st in states:
            k = st.rule.kind
            if k == RATE or k == INVVEL or k == TANGENT:
                if fv is None:
                    continue     # the filter's first two samples
                st.feed(t, fv)
            else:
                st.feed(t, value)
            self._judge(st, t)

    def _fault(self, chan, t, value, kind, states, out):
        """A sensor fault (TRIP.md 3.2): over/under range is a clipped reading, anything
        else no reading; at the start of a fault run on a channel above normal, a BLIND
        event, a broken wire on a moving channel escalates one level, and the latched
        rules' holds restart so they clear by their holds if the sensor stays blind."""
        prev = self._level[chan]
        f = self._spike[chan]
        first = f.since < 0
        if first:
            f.since = t
        self._last_t[chan] = t
        n = 0
        if first and prev > 0:
            top = None
            moving = False
            for st in states:
                if st.latched:
                    k = st.rule.kind
                    if k == RATE or k == INVVEL or k == TANGENT:
                        moving = True
                    if top is None or st.rule.level > top.rule.level:
                        top = st
            if top is None:                  # above normal by an escalation only
                top = f.esc[2]
            new = prev
            if moving and (kind == _OPEN_CIRCUIT or kind == _BROKEN_LOOP) and prev < 4:
                new = prev + 1
                f.esc = [new, t + top.rule.hold_s, top]
            out.append(AlarmEvent(BLIND, chan, top.rule.rule_id, top.rule.kind, new, prev, kind,
                                  0, t))
            self._level[chan] = new
            n = 1
        if kind == _OVER_RANGE or kind == _UNDER_RANGE:
            last = f.last
            if value is None or (last is not None and (value < last if kind == _OVER_RANGE
                                                       else value > last)):
                value = last
            if value is not None:
                self._feed(chan, t, value, states)   # clipped: at least the range limit
                return n + self._emit(chan, t, out)
        elif first:
            for st in states:
                if st.latched:
                    st.t_trip = t        # the hold runs from the start of the blindness
                    st.clear_ok = True   # a stale metric holds nothing once it has run out
        return n

    def tick(self, t):
        """Clears whose hold time has run out since the last sample. Returns AlarmEvents."""
        if not _is_int(t) or t < 0:
            raise ValueError("tick: t %r must be int seconds >= 0 from a monotonic clock" % (t,))
        out = []
        due = False
        for st in self._states:
            if st.latched and st.clear_ok and t - st.t_trip >= st.rule.hold_s:
                st.latched = False
                st.changed = -1
                due = True
        for c in self._chans:
            e = self._spike[c].esc
            if e is not None and t >= e[1]:
                due = True
        if due:
            for c in self._chans:
                self._emit(c, t, out)
        return out

    def next_due(self):
        """Earliest time at which tick() could clear something, or None."""
        best = None
        for st in self._states:
            if st.latched and st.clear_ok:
                d = st.t_trip + st.rule.hold_s
                if best is None or d < best:
                    best = d
        for c in self._chans:
            e = self._spike[c].esc
            if e is not None and (best is None or e[1] < best):
                best = e[1]
        return best

    # -- queries ---------------------------------------------------------------------------

    def level(self, chan=None):
        if chan is not None:
            return self._level.get(chan, 0)
        m = 0
        for c in self._chans:
            if self._level[c] > m:
                m = self._level[c]
        return m

    def near(self, chan=None):
        for st in self._states:
            if chan is not None and st.rule.chan != chan:
                continue
            if st.latched or (st.metric is not None and st.near()):
                return True
        return False

    def metric(self, rule_id):
        """The rule's current metric (value, rate/h, sum, seconds to failure) or None."""
        for st in self._states:
            if st.rule.rule_id == rule_id:
                return st.metric
        raise KeyError(rule_id)

    def latched(self, chan=None):
        """rule_ids of latched rules (of one channel, or all)."""
        out = []
        for st in self._states:
            if st.latched and (chan is None or st.rule.chan == chan):
                out.append(st.rule.rule_id)
        return out

    # -- internals -------------------------------------------------------------------------

    def _judge(self, st, t):
        if st.metric is None:
            st.clear_ok = False   # not enough data: keep whatever is latched, clear nothing
            return
        if st.latched:
            if st.clears():
                st.clear_ok = True
                if t - st.t_trip >= st.rule.hold_s:
                    st.latched = False
                    st.changed = -1
            else:
                st.clear_ok = False
        elif st.trips():
            st.latched = True
            st.t_trip = t
            st.clear_ok = False
            st.changed = 1

    def _max_level(self, chan):
        m = 0
        f = self._spike.get(chan)
        if f is not None and f.esc is not None:
            m = f.esc[0]
        states = self._by_chan.get(chan)
        if states:
            for st in states:
                if st.latched and st.rule.level > m:
                    m = st.rule.level
        return m

    def _emit(self, chan, t, out):
        states = self._by_chan[chan]
        prev = self._level[chan]
        f = self._spike[chan]
        e = f.esc
        if e is not None and t >= e[1]:
            f.esc = None             # a broken wire's escalation ends with its hold
        new = self._max_level(chan)
        n = 0
        if new != prev:
            cause = None
            want = 1 if new > prev else -1
            lvl = new if new > prev else prev
            for st in states:
                if cause is None and st.changed == want and st.rule.level == lvl:
                    cause = st
            if cause is None and e is not None:
                cause = e[2]
            if new > prev:
                ev = TRIP if prev == 0 else LEVEL
            else:
                ev = CLEAR if new == 0 else LEVEL
            out.append(self._event(ev, chan, cause, new, prev, t))
            self._level[chan] = new
            n = 1
        for st in states:
            st.changed = 0
        return n

    def _event(self, ev, chan, cause, new, prev, t):
        if cause is None:   # cannot happen by construction; keep the event rather than lose it
            return AlarmEvent(ev, chan, 255, 0, new, prev, 0, 0, t)
        m = cause.metric
        if m is None:
            m = NO_FAILURE if cause.rule.kind == INVVEL else 0
        return AlarmEvent(ev, chan, cause.rule.rule_id, cause.rule.kind, new, prev, m,
                          cause.rule.trip_threshold(), t)


def new_state(rule):
    """The state object that evaluates `rule` (run when rules are set, not per sample)."""
    from protocol.tripstate import InvVelState, RateState, SumState, ThresholdState
    k = rule.kind
    if k == 1:
        return ThresholdState(rule)
    if k == 2:
        return RateState(rule)
    if k == 3:
        return SumState(rule)
    if k == 5:
        # loaded only where a rule needs it: a node without tangent rules keeps its heap
        # (here, not in tripstate.py: tangent.py builds on tripstate's RateState, and
        # imports go one way)
        from protocol.tangent import TangentState
        return TangentState(rule)
    return InvVelState(rule)
