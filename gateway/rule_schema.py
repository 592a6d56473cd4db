"""Trip rules as the gateway's users write them (site config `[[...rules]]`, the
platform's `set-rules` command).

protocol/ruleparse.py's PARAMS and OPTIONAL are the one source of every rule kind's
parameter names, wire order and ranges. What the gateway adds is an overlay keyed by
those wire names: how a value written by a person becomes the wire integer (a value in
the channel's unit is scaled, `op` is a word), and which parameters may be left out.
A new rule kind or parameter in ruleparse appears here without an edit."""
from protocol import ruleparse, trip

KINDS = tuple(trip.KIND_NAMES[k] for k in sorted(trip.KIND_NAMES))

# How a config value becomes the wire integer, by wire name; anything else is an int as
# it is. "value": a number in the channel's unit (rates and v0: per hour) -> scaled int.
UNITS = {"op": "op", "threshold": "value", "hysteresis": "value", "near": "value", "v0": "value"}
# Parameters a config may leave out, by wire name. alpha: the level's angle (ALPHA).
DEFAULTS = {"hysteresis": 0.0, "persist_s": 0, "hold_s": 0, "min_r2": 900}
ALPHA = (0, 450, 600, 800, 850)
# Names used before the schema was one: a config that still has one is told the new name.
RENAMED = {"debounce": "persist_s (seconds the value must stay beyond the threshold; "
                       "a sample count is no longer used)",
           "debounce_n": "persist_s (seconds the value must stay beyond the threshold; "
                         "a sample count is no longer used)",
           "min_r2_permille": "min_r2 (R^2 in per mille, 500..999)"}


def params(kind, optional, missing):
    """((name, name, conversion, default), ...) in wire order for config.py's RULE_PARAMS:
    default `missing` when required, `optional` for a trailing optional parameter."""
    k = KINDS.index(kind) + 1
    out = []
    for name, _lo, _hi in ruleparse.PARAMS[k]:
        out.append((name, name, UNITS.get(name, "int"), DEFAULTS.get(name, missing)))
    for name, _lo, _hi in ruleparse.OPTIONAL.get(k, ()):
        out.append((name, name, UNITS.get(name, "int"), optional))
    return tuple(out)


def int_range(kind, name):
    """(lo, hi) of an int parameter, from ruleparse."""
    k = KINDS.index(kind) + 1
    for p in ruleparse.PARAMS[k] + ruleparse.OPTIONAL.get(k, ()):
        if p[0] == name:
            return p[1], p[2]
    raise KeyError(name)


def renamed(table):
    """[(old key, hint)] for keys of `table` that were renamed."""
    return [(k, RENAMED[k]) for k in table if k in RENAMED]


def from_command(d):
    """A `set-rules` rule object (names as on the wire, `chan` as "kind.instance" or the
    id byte, `op` above/below, `level` a name, roman numeral or number) -> trip.Rule."""
    from protocol import levels
    d = dict(d)
    old = renamed(d)
    if old:
        raise ValueError("key %r was renamed: write %s" % old[0])
    op = d.get("op")
    if isinstance(op, str):
        if op not in ("above", "below"):
            raise ValueError("op %r: allowed \"above\" or \"below\"" % (op,))
        d["op"] = trip.ABOVE if op == "above" else trip.BELOW
    lv = d.get("level")
    if isinstance(lv, str):
        d["level"] = levels.parse(lv)
    return trip.Rule.from_dict(d)


def check_timing(c, dev, key):
    """A config error for a device's rule that could never fire at its poll interval
    (protocol/ruleparse.py check_timing)."""
    if dev.poll_s is None:
        return
    try:
        rules = [r.rule() for r in dev.rules]
    except (ValueError, TypeError, RuntimeError):
        return          # already reported under the rule's key
    bad = ruleparse.check_timing(rules, -(-int(dev.poll_s * 1000) // 1000))
    if bad:
        c.err("%s.rules[%d].window_s" % (key, bad[0]), bad[1] + " (poll_s %g)" % dev.poll_s)
