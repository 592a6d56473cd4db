"""Trip engine: channel samples in, warning-level events out (normative: TRIP.md).

Pure logic, shared by the node (its own sensors) and the gateway (Modbus sensors):
time is injected as int seconds on a monotonic clock, nothing here does I/O.

    eng = TripEngine([Rule.from_wire([1, 0x10, THRESHOLD, RED, ABOVE, 3000, 100, 2, 600])])
    for ev in eng.update(0x10, now, value):   # value None = sensor fault
        ...                                   # TRIP / LEVEL / CLEAR AlarmEvent
    eng.tick(now)                             # clears that fall due with no new sample
    eng.near()                                # drive the intensified sampling interval
"""
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from protocol import channels
from protocol.tripstate import ABOVE, BELOW, NO_FAILURE, VMAX, new_state

THRESHOLD = const(1)
RATE = const(2)
SUM = const(3)
INVVEL = const(4)

TRIP = const(1)
LEVEL = const(2)
CLEAR = const(3)

MAX_RULES = const(32)
MAX_HOLD_S = const(604800)   # 7 days

KIND_NAMES = {THRESHOLD: "threshold", RATE: "rate", SUM: "sum", INVVEL: "invvel"}
EVENT_NAMES = {TRIP: "trip", LEVEL: "level", CLEAR: "clear"}
LEVEL_NAMES = ("normal", "blue", "yellow", "orange", "red")

# Parameters after [rule_id, chan, kind, level], in wire order: (name, lo, hi).
PARAMS = {
    THRESHOLD: (("op", ABOVE, BELOW), ("threshold", -VMAX, VMAX), ("hysteresis", 0, VMAX),
                ("debounce_n", 1, 255), ("hold_s", 0, MAX_HOLD_S)),
    RATE: (("window_s", 60, 86400), ("threshold", -VMAX, VMAX), ("hysteresis", 0, VMAX),
           ("hold_s", 0, MAX_HOLD_S)),
    SUM: (("window_s", 60, MAX_HOLD_S), ("threshold", 1, VMAX), ("hysteresis", 0, VMAX),
          ("hold_s", 0, MAX_HOLD_S)),
    INVVEL: (("window_s", 960, 172800), ("lead_s", 60, MAX_HOLD_S), ("min_r2", 500, 999),
             ("hold_s", 0, MAX_HOLD_S)),
}
# Optional trailing parameters: THRESHOLD may carry an explicit near band.
OPTIONAL = {THRESHOLD: (("near", 0, VMAX),)}

_HEAD = ("rule_id", "chan", "kind", "level")


def _is_int(x):
    return isinstance(x, int) and x is not True and x is not False


def _layout(kind):
    names = []
    for p in PARAMS[kind]:
        names.append(p[0])
    return "[rule_id, chan, kind, level, %s]" % ", ".join(names)


class Rule:
    """One warning rule on one channel. Attributes: rule_id, chan, kind, level, params
    (tuple in wire order) and each parameter by name (op, threshold, window_s, ...)."""

    def __init__(self, rule_id, chan, kind, level, params):
        rid = rule_id if _is_int(rule_id) else "?"
        if not _is_int(rule_id) or not 0 <= rule_id <= 255:
            raise ValueError("rule %s: rule_id %r out of range: allowed 0..255" % (rid, rule_id))
        if not _is_int(chan) or not 0 <= chan <= 255:
            raise ValueError("rule %s: chan %r out of range: allowed a channel id byte 0..255" % (rid, chan))
        if (chan >> 3) not in channels.KINDS:
            raise ValueError("rule %s: chan 0x%02x has unknown channel kind %d: allowed kinds %s"
                             % (rid, chan, chan >> 3, sorted(channels.KINDS)))
        if not _is_int(kind) or kind not in PARAMS:
            raise ValueError("rule %s: kind %r unknown: allowed 1 (threshold), 2 (rate), 3 (sum), "
                             "4 (invvel)" % (rid, kind))
        if not _is_int(level) or not 1 <= level <= 4:
            raise ValueError("rule %s: level %r out of range: allowed 1..4 (blue, yellow, orange, red)"
                             % (rid, level))
        spec = PARAMS[kind]
        opt = OPTIONAL.get(kind, ())
        params = tuple(params)
        if not len(spec) <= len(params) <= len(spec) + len(opt):
            raise ValueError("rule %s: a %s rule needs %d items %s, got %d"
                             % (rid, KIND_NAMES[kind], 4 + len(spec), _layout(kind), 4 + len(params)))
        self.rule_id = rule_id
        self.chan = chan
        self.kind = kind
        self.level = level
        self.params = params
        self.near = -1
        allp = spec + opt
        for j in range(len(params)):
            name, lo, hi = allp[j]
            v = params[j]
            if not _is_int(v) or not lo <= v <= hi:
                raise ValueError("rule %d: %s %r out of range: allowed %d..%d" % (rule_id, name, v, lo, hi))
            setattr(self, name, v)
        if kind == RATE and self.threshold == 0:
            raise ValueError("rule %d: threshold 0 is not allowed for a rate rule: use a positive "
                             "rate for rising, a negative one for falling" % rule_id)
        if kind in (RATE, SUM) and self.hysteresis >= abs(self.threshold):
            raise ValueError("rule %d: hysteresis %d must be below |threshold| %d, or the rule "
                             "could never clear" % (rule_id, self.hysteresis, abs(self.threshold)))

    @staticmethod
    def from_wire(arr):
        """Rule from its wire list [rule_id, chan, kind, level, p1, p2, ...]."""
        if not isinstance(arr, (list, tuple)):
            raise ValueError("rule ?: expected a list of ints [rule_id, chan, kind, level, params...], "
                             "got %s" % type(arr).__name__)
        rid = arr[0] if len(arr) and _is_int(arr[0]) else "?"
        for j in range(len(arr)):
            if not _is_int(arr[j]):
                what = _HEAD[j] if j < 4 else "parameter %d" % (j - 3)
                raise ValueError("rule %s: item %d (%s) is %r: allowed integers only" % (rid, j, what, arr[j]))
        if len(arr) < 4:
            raise ValueError("rule %s: needs at least [rule_id, chan, kind, level], got %d items" % (rid, len(arr)))
        return Rule(arr[0], arr[1], arr[2], arr[3], arr[4:])

    @staticmethod
    def from_dict(d):
        """Rule from a config table: "rule_id" (or "id"), "chan" (id byte or a name like
        "water_level.0"), "kind" (name or number), "level" (name or number) and the
        kind's parameters by their wire names (section 2 of TRIP.md)."""
        if not isinstance(d, dict):
            raise ValueError("rule ?: expected a table of rule settings, got %s" % type(d).__name__)
        rid = d.get("rule_id", d.get("id", "?"))
        if rid == "?":
            raise ValueError("rule ?: missing key 'rule_id': every rule needs its own id 0..255")
        for key in ("chan", "kind", "level"):
            if key not in d:
                raise ValueError("rule %s: missing key %r: every rule needs rule_id, chan, kind, "
                                 "level and the kind's parameters" % (rid, key))
        kind = d["kind"]
        if isinstance(kind, str):
            low = kind.lower()
            for k in KIND_NAMES:
                if KIND_NAMES[k] == low:
                    kind = k
        if not _is_int(kind) or kind not in PARAMS:
            raise ValueError("rule %s: kind %r unknown: allowed threshold, rate, sum, invvel"
                             % (rid, d["kind"]))
        level = d["level"]
        if isinstance(level, str):
            if level.lower() not in LEVEL_NAMES[1:]:
                raise ValueError("rule %s: level %r unknown: allowed blue, yellow, orange, red"
                                 % (rid, level))
            level = LEVEL_NAMES.index(level.lower())
        chan = d["chan"]
        if isinstance(chan, str):
            parts = chan.split(".")
            if len(parts) != 2 or not parts[1].isdigit():
                raise ValueError("rule %s: chan %r is not a channel name: write kind.instance, "
                                 "e.g. rain.0, or the channel id byte" % (rid, chan))
            try:
                chan = channels.chan_id(channels.kind_by_name(parts[0]), int(parts[1]))
            except ValueError as e:
                raise ValueError("rule %s: chan %r: %s" % (rid, chan, e))
        spec = PARAMS[kind] + OPTIONAL.get(kind, ())
        allowed = ["rule_id", "id", "chan", "kind", "level"]
        for p in spec:
            allowed.append(p[0])
        for key in d:
            if key not in allowed:
                raise ValueError("rule %s: unknown key %r for a %s rule: allowed %s"
                                 % (rid, key, KIND_NAMES[kind], ", ".join(allowed)))
        params = []
        for p in PARAMS[kind]:
            if p[0] not in d:
                raise ValueError("rule %s: missing key %r: a %s rule needs %s"
                                 % (rid, p[0], KIND_NAMES[kind], _layout(kind)))
            params.append(d[p[0]])
        for p in OPTIONAL.get(kind, ()):
            if p[0] in d:
                params.append(d[p[0]])
        return Rule(rid, chan, kind, level, params)

    def to_wire(self):
        return [self.rule_id, self.chan, self.kind, self.level] + list(self.params)

    def trip_threshold(self):
        """The number an AlarmEvent reports as `threshold` (lead_s for INVVEL)."""
        if self.kind == INVVEL:
            return self.lead_s
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


def _check_rules(rules):
    if not isinstance(rules, (list, tuple)):
        raise ValueError("rules: expected a list of Rule, got %s" % type(rules).__name__)
    if len(rules) > MAX_RULES:
        raise ValueError("rules: %d rules, allowed at most %d" % (len(rules), MAX_RULES))
    seen = []
    for r in rules:
        if not isinstance(r, Rule):
            raise ValueError("rules: expected Rule objects (use Rule.from_wire), got %s" % type(r).__name__)
        if r.rule_id in seen:
            raise ValueError("rules: rule_id %d appears twice: each rule needs its own id 0..255" % r.rule_id)
        seen.append(r.rule_id)


class TripEngine:
    def __init__(self, rules):
        _check_rules(rules)
        self._states = []
        self._by_chan = {}
        self._chans = []
        self._level = {}
        self._last_t = {}
        self._install(rules, None)

    # -- configuration -------------------------------------------------------------------

    def _install(self, rules, old_states):
        states = []
        by_chan = {}
        chans = []
        for r in rules:
            st = None
            if old_states:
                st = _reuse(r, old_states)
            if st is None:
                st = new_state(r)
                if old_states:
                    _carry_over(st, old_states)
            states.append(st)
            if r.chan not in by_chan:
                by_chan[r.chan] = []
                chans.append(r.chan)
            by_chan[r.chan].append(st)
        self._states = states
        self._by_chan = by_chan
        self._chans = chans
        for c in chans:
            if c not in self._level:
                self._level[c] = 0

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
        _check_rules(rules)
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

    def update(self, chan, t, value):
        """Feed one sample (value None = sensor fault). Returns a list of AlarmEvent."""
        out = []
        self.update_into(chan, t, value, out)
        return out

    def update_into(self, chan, t, value, out):
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
        if value is None:
            return 0   # a fault says nothing about the hazard: no trip, no clear, no window change
        if not _is_int(value) or not -VMAX <= value <= VMAX:
            raise ValueError("update: value %r on channel 0x%02x must be a scaled int within "
                             "+-%d, or None for a sensor fault" % (value, chan, VMAX))
        self._last_t[chan] = t
        for st in states:
            st.feed(t, value)
            self._judge(st, t)
        return self._emit(chan, t, out)

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
        states = self._by_chan.get(chan)
        if states:
            for st in states:
                if st.latched and st.rule.level > m:
                    m = st.rule.level
        return m

    def _emit(self, chan, t, out):
        states = self._by_chan[chan]
        prev = self._level[chan]
        new = self._max_level(chan)
        n = 0
        if new != prev:
            cause = None
            want = 1 if new > prev else -1
            lvl = new if new > prev else prev
            for st in states:
                if cause is None and st.changed == want and st.rule.level == lvl:
                    cause = st
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


def _reuse(rule, old_states):
    for st in old_states:
        if st.rule == rule:
            return st
    return None


def _family(kind):
    return 3 if kind == SUM else (2 if kind in (RATE, INVVEL) else 1)


def _carry_over(st, old_states):
    """Give a new or changed rule the history of an old rule on the same channel."""
    r = st.rule
    donor = None
    for o in old_states:
        if o.rule.chan != r.chan or _family(o.rule.kind) != _family(r.kind):
            continue
        if o.rule.rule_id == r.rule_id and o.rule.kind == r.kind:
            donor = o
            break
        if donor is None or (o.rule.kind != THRESHOLD and o.rule.window_s > donor.rule.window_s):
            donor = o
    if donor is None:
        return
    st.take_history(donor)
    o = donor.rule
    if o.rule_id == r.rule_id and o.kind == r.kind and o.level == r.level and donor.latched:
        st.latched = True
        st.t_trip = donor.t_trip
        st.metric = donor.metric
        # clear_ok stays False: a clear needs a fresh sample judged by the new parameters.
