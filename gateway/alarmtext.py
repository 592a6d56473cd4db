"""An alarm's value and threshold in the units a duty officer reads (SPEC "alarm": value
and threshold are integers in the rule's metric, scaled like the rule's channel).

    metric_text(rule_kind=1, chan=displacement.0, value=1812) -> "18.12 mm"
"""
from protocol import channels, levels
from protocol.trip import INVVEL, RATE, SUM, TANGENT, THRESHOLD

# terminal colours of the national scheme (blue IV, yellow III, orange II, red I)
ANSI = {0: "", 1: "\x1b[1;34m", 2: "\x1b[1;33m", 3: "\x1b[1;38;5;208m", 4: "\x1b[1;97;41m"}
ANSI_RESET = "\x1b[0m"
KIND_NAMES = {THRESHOLD: "threshold", RATE: "rate", SUM: "sum", INVVEL: "inverse velocity",
              TANGENT: "tangent angle"}


def metric_text(rule_kind, chan, value):
    """The metric with its unit; the raw integer if the channel kind is unknown."""
    if value is None:
        return "-"
    if rule_kind == INVVEL:
        # seconds to the predicted failure time
        return "%.1f h to failure" % (value / 3600.0)
    if rule_kind == TANGENT:
        # tan(alpha) x 1000 (TRIP.md 4.5): the angle is what an operator grades by
        import math
        return "tangent angle %.1f°" % math.degrees(math.atan(value / 1000.0))
    try:
        name, unit, exp, _acc = channels.info(chan)
    except ValueError:
        return str(value)
    digits = max(0, -exp)
    x = value * (10.0 ** exp)
    if rule_kind == RATE:
        return "%.*f %s/h" % (digits, x, unit)
    return "%.*f %s" % (digits, x, unit)


def level_name(level):
    try:
        return levels.name(level)
    except (ValueError, IndexError, TypeError):
        return "level %r" % (level,)


def describe(a):
    """One line for an Alarm record: 'node 101 displacement.0 orange (was normal):
    18.12 mm over 15.00 mm (rule 1 threshold)'."""
    try:
        chan = channels.label(a.chan)
    except ValueError:
        chan = "chan 0x%02x" % a.chan
    return "node %d %s %s (was %s): %s, threshold %s (rule %d %s)" % (
        a.node, chan, level_name(a.level), level_name(a.prev_level),
        metric_text(a.rule_kind, a.chan, a.value),
        metric_text(a.rule_kind, a.chan, a.threshold), a.rule_id,
        KIND_NAMES.get(a.rule_kind, a.rule_kind))
