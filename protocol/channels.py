"""Channel kinds, units and integer scaling (SPEC.md, "Channels").

A channel id is one byte: kind << 3 | instance. The kind fixes the unit and the
scale, so a frame is self-describing without a per-node channel table: a value v on
the wire means v * 10**exp units. Rain is an increment (mm fallen since the previous
sample of that channel); every other kind is an instantaneous sample."""

# kind: (name, unit, exp, accumulating)
KINDS = {
    1: ("rain", "mm", -1, True),
    2: ("displacement", "mm", -2, False),
    3: ("water_level", "m", -3, False),
    4: ("tilt", "deg", -3, False),
    5: ("battery", "V", -3, False),
    6: ("supply", "V", -3, False),
    7: ("temperature", "degC", -1, False),
    8: ("acceleration", "mg", 0, False),
    9: ("soil_moisture", "%", -1, False),
    10: ("pore_pressure", "kPa", -2, False),
    11: ("mud_level", "m", -3, False),
}

MAX_INSTANCE = 7

_BY_NAME = {}
for _k in KINDS:
    _BY_NAME[KINDS[_k][0]] = _k


def chan_id(kind, instance=0):
    if kind not in KINDS:
        raise ValueError("unknown channel kind %r: allowed %s" % (kind, sorted(KINDS)))
    if not 0 <= instance <= MAX_INSTANCE:
        raise ValueError("channel instance %r out of range: allowed 0..7" % (instance,))
    return (kind << 3) | instance


def kind_of(chan):
    return chan >> 3


def instance_of(chan):
    return chan & 7


def kind_by_name(name):
    k = _BY_NAME.get(name)
    if k is None:
        raise ValueError("unknown channel kind %r: allowed %s" % (name, ", ".join(sorted(_BY_NAME))))
    return k


def info(chan):
    """(name, unit, exp, accumulating) for a channel id; ValueError if the kind is unknown."""
    k = chan >> 3
    if k not in KINDS:
        raise ValueError("unknown channel kind %d in channel id 0x%02x" % (k, chan))
    return KINDS[k]


def label(chan):
    return "%s.%d" % (info(chan)[0], chan & 7)


def to_units(chan, value):
    """Scaled integer -> float in the kind's unit."""
    return value * (10.0 ** info(chan)[2])


def from_units(chan, x):
    """Float in the kind's unit -> nearest scaled integer."""
    v = x / (10.0 ** info(chan)[2])
    return int(v + 0.5) if v >= 0 else -int(-v + 0.5)
