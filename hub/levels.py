"""Warning levels (SPEC §8.2) and what the hub publishes when a station's level
changes, pure logic.

A station's level is the highest of its channels' levels, and a channel's level is the
one its newest alarm reports (newest by node seq, then alarm index: alarms can arrive
out of order when a backlog drains). Publishing follows CAP's message types: a station
rising to orange or red gets an Alert; a change while one is in force an Update; a
fall below orange a Cancel."""
NAMES = ("normal", "blue", "yellow", "orange", "red")
ORANGE = 3
RED = 4

# national level -> (CAP severity, urgency, certainty, responseType, roman numeral)
CAP_MAP = {
    1: ("Minor", "Future", "Possible", "Monitor", "IV"),
    2: ("Moderate", "Expected", "Possible", "Monitor", "III"),
    3: ("Severe", "Expected", "Likely", "Prepare", "II"),
    4: ("Extreme", "Immediate", "Likely", "Evacuate", "I"),
}


def apply(chan_levels, chan, level, seq, aidx):
    """chan_levels {chan: (level, seq, aidx)} -> (new dict, changed?). An alarm older
    than the one a channel already shows changes nothing."""
    cur = chan_levels.get(chan)
    if cur is not None and (seq, aidx) <= (cur[1], cur[2]):
        return chan_levels, False
    new = dict(chan_levels)
    new[chan] = (level, seq, aidx)
    return new, True


def station_level(chan_levels):
    return max((v[0] for v in chan_levels.values()), default=0)


def decide(active, new_level):
    """active: the level of the station's CAP alert in force (None: none).
    -> "Alert", "Update", "Cancel" or None."""
    if active is None:
        return "Alert" if new_level >= ORANGE else None
    if new_level < ORANGE:
        return "Cancel"
    return "Update" if new_level != active else None
