"""Checking and building trip rules (TRIP.md section 2): a Rule's range checks, its wire
and config-table forms, the checks on a rule list, and which old state each rule keeps
when set_rules replaces the rules (TRIP.md section 7).

Needed only where rules are made (a node's boot and CONFIG downlinks, the gateway's
config and commands), not while the engine runs: protocol/trip.py imports it inside
the functions that need it, and a node without frozen modules drops it afterwards with
firmware/unload.py, unload("protocol.ruleparse"). A Rule built here keeps only ints and
a tuple, and an engine nothing of this module; the next call that needs it imports it
again."""
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from protocol import channels
from protocol.trip import (
    INVVEL,
    KIND_NAMES,
    LEVEL_NAMES,
    MAX_RULES,
    RATE,
    SUM,
    TANGENT,
    THRESHOLD,
    Rule,
    _is_int,
)
from protocol.tripstate import ABOVE, BELOW, VMAX

MAX_HOLD_S = const(604800)   # 7 days

# Parameters after [rule_id, chan, kind, level], in wire order: (name, lo, hi).
PARAMS = {
    THRESHOLD: (("op", ABOVE, BELOW), ("threshold", -VMAX, VMAX), ("hysteresis", 0, VMAX),
                ("persist_s", 0, 86400), ("hold_s", 0, MAX_HOLD_S)),
    RATE: (("window_s", 60, 86400), ("threshold", -VMAX, VMAX), ("hysteresis", 0, VMAX),
           ("hold_s", 0, MAX_HOLD_S)),
    SUM: (("window_s", 60, MAX_HOLD_S), ("threshold", 1, VMAX), ("hysteresis", 0, VMAX),
          ("hold_s", 0, MAX_HOLD_S)),
    INVVEL: (("window_s", 960, 172800), ("lead_s", 60, MAX_HOLD_S), ("min_r2", 500, 999),
             ("hold_s", 0, MAX_HOLD_S)),
    TANGENT: (("window_s", 600, 86400), ("v0", -VMAX, VMAX), ("alpha", 450, 899),
              ("hold_s", 0, MAX_HOLD_S)),
}
# Optional trailing parameters: THRESHOLD may carry an explicit near band, INVVEL the
# velocity (units per hour) below which a forecast is not believed, TANGENT a quiet
# period in which v0 is learnt.
OPTIONAL = {THRESHOLD: (("near", 0, VMAX),), INVVEL: (("v_min", 0, VMAX),),
            TANGENT: (("quiet_s", 0, MAX_HOLD_S),)}


_HEAD = ("rule_id", "chan", "kind", "level")


def _layout(kind):
    names = []
    for p in PARAMS[kind]:
        names.append(p[0])
    return "[rule_id, chan, kind, level, %s]" % ", ".join(names)


def init_rule(self, rule_id, chan, kind, level, params):
    """Rule.__init__: check every field, then set the attributes of `self`."""
    rid = rule_id if _is_int(rule_id) else "?"
    if not _is_int(rule_id) or not 0 <= rule_id <= 255:
        raise ValueError("rule %s: rule_id %r out of range: allowed 0..255" % (rid, rule_id))
    if not _is_int(chan) or not 0 <= chan <= 255:
        raise ValueError("rule %s: chan %r out of range: allowed a channel id byte 0..255" % (rid, chan))
    if (chan >> 3) not in channels.KINDS:
        raise ValueError("rule %s: chan 0x%02x has unknown channel kind %d: allowed kinds %s"
                         % (rid, chan, chan >> 3, sorted(channels.KINDS)))
    if not _is_int(kind) or kind not in PARAMS:
        raise ValueError("rule %s: kind %r unknown: allowed 1..5 (threshold, rate, sum, "
                         "invvel, tangent)" % (rid, kind))
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
    if kind == INVVEL and len(params) < 5:
        self.v_min = 0
    if kind == TANGENT:
        if self.v0 == 0:
            raise ValueError("rule %d: v0 0: allowed a rate per hour, not 0" % rule_id)
        if len(params) < 5:
            self.quiet_s = 0
        from math import pi, tan
        self.tan_pm = int(tan(self.alpha * pi / 1800) * 1000 + 0.5)
    if kind in (RATE, SUM) and self.hysteresis >= abs(self.threshold):
        raise ValueError("rule %d: hysteresis %d must be below |threshold| %d, or the rule "
                         "could never clear" % (rule_id, self.hysteresis, abs(self.threshold)))


def from_wire(arr):
    """Rule.from_wire: a Rule from its wire list [rule_id, chan, kind, level, p1, ...]."""
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


def from_dict(d):
    """Rule.from_dict: a Rule from a config table (see Rule.from_dict)."""
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
        raise ValueError("rule %s: kind %r unknown: allowed threshold, rate, sum, invvel, "
                         "tangent" % (rid, d["kind"]))
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
        if p[0] == "alpha" and p[0] not in d and _is_int(level) and 1 <= level <= 4:
            # left out: the level's angle of the improved tangent-angle method (0.1 deg)
            params.append((0, 450, 600, 800, 850)[level])
            continue
        if p[0] not in d:
            raise ValueError("rule %s: missing key %r: a %s rule needs %s"
                             % (rid, p[0], KIND_NAMES[kind], _layout(kind)))
        params.append(d[p[0]])
    for p in OPTIONAL.get(kind, ()):
        if p[0] in d:
            params.append(d[p[0]])
    return Rule(rid, chan, kind, level, params)


def check_rules(rules):
    """TripEngine(rules) and set_rules(rules): a list of distinct Rule objects."""
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


def check_timing(rules, sample_s, intensified_s=0):
    """The first rule that could never fire on a channel sampled every sample_s seconds,
    intensified_s while a rule is near (0: never intensified) (TRIP.md 2.1), as (index in
    rules, message), or None. A rate needs 3 samples in each half of its window, a
    forecast one in each of its 12 sub-windows to see a trend and two in each, at the
    intensified interval, to believe one (TRIP.md 4.4); until a metric is known it is
    never near, so the intensified interval never comes to its help."""
    fast = intensified_s or sample_s
    for i in range(len(rules)):
        r = rules[i]
        k = r.kind
        need = 6 * sample_s if k == RATE or k == TANGENT else 0
        if k == INVVEL:
            need = max(12 * sample_s, 24 * fast)
        if need and r.window_s < need:
            return i, ("rule %d: window_s %d cannot fire at sample_s %d%s: allowed >= %d"
                       % (r.rule_id, r.window_s, sample_s,
                          ", intensified_s %d" % fast if fast != sample_s else "", need))
    return None


# -- set_rules: which old state a new rule keeps or takes its history from --------------
def reuse(rule, old_states):
    """set_rules: the old state of a rule sent unchanged, or None."""
    for st in old_states:
        if st.rule == rule:
            return st
    return None


def _family(kind):
    return 3 if kind == SUM else (2 if kind in (RATE, INVVEL, TANGENT) else 1)


def carry_over(st, old_states):
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
