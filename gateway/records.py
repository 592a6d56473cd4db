"""Plain records that flow into the gateway store (`Store.commit`).

The radio ingest and the Modbus bridge turn what they receive into these records and
commit a whole group of them in one transaction; the store, the batcher and the uplink
read them back. They are immutable namedtuples so they are cheap to build on the hot
path and cannot be changed after validation.

Time stamps are absolute unix seconds (int) on the gateway's clock; `rx_ms` is unix
milliseconds. Values are the scaled integers of protocol/channels.py.

Dedup keys (DESIGN.md I2): a reading is identified by (node, seq, idx), an alarm by
(node, seq, index). For Modbus "virtual nodes" the gateway reserves seqs with
`Store.next_seq(node, n)` so the keys work the same way as for radio nodes.
"""
from collections import namedtuple

# Reading flags (the run flags of the uplink batch, SPEC "batch").
FLAG_TIME_APPROX = 1   # the node had lost its clock base: t is the gateway's best guess
FLAG_THINNED = 2       # kept by quota thinning; rain values hold the merged sum

Reading = namedtuple("Reading", "node seq idx chan t value fault flags")
Reading.__new__.__defaults__ = (None, 0)
Reading.__doc__ = """One sample of one channel.

node, seq, idx: the dedup key (idx = position of the reading in its frame).
chan: channel id byte (kind << 3 | instance, protocol/channels.py).
t: unix seconds. value: scaled int, or None when `fault` holds a sensor fault code.
flags: FLAG_TIME_APPROX | FLAG_THINNED."""

Alarm = namedtuple(
    "Alarm",
    "node seq index event level prev_level chan rule_id rule_kind value threshold t rx_ms")
Alarm.__doc__ = """One alarm event (trip, level change or clear), SPEC "alarm".

(node, seq, index) is the dedup key; index is the alarm's position in its frame.
event: 1 trip, 2 level change, 3 clear. level/prev_level: protocol/levels.py.
rule_kind: 1 threshold, 2 rate, 3 sum, 4 inverse velocity.
value/threshold: ints in the rule's metric. t: unix s when it tripped.
rx_ms: unix ms when the gateway received it (radio) or computed it (Modbus)."""

EVENT_TRIP = 1
EVENT_LEVEL_CHANGE = 2
EVENT_CLEAR = 3

NodeStatus = namedtuple(
    "NodeStatus",
    "node t battery_mv supply_mv temp_decic free_heap reset_cause log_depth fw "
    "config_version rssi_dbm seq_gaps")
NodeStatus.__new__.__defaults__ = (None,) * 10
NodeStatus.__doc__ = """A node's health report, SPEC "node_status". Unknown fields are None
and are left out of the uplink map."""

FrameSeen = namedtuple("FrameSeen", "node seq floor")
FrameSeen.__new__.__defaults__ = (None,)
FrameSeen.__doc__ = """Frame `seq` of `node` is committed (the link may ack it).

floor: if not None, the node's new floor: every seq below it counts as received and
the store forgets the individual seqs under it. Readings and alarms of a frame whose
(node, seq) is already committed are ignored by `Store.commit` (a re-delivered frame
is a no-op)."""

Count = namedtuple("Count", "name n")
Count.__new__.__defaults__ = (1,)
Count.__doc__ = """Add n to a named counter, e.g. Count("frames_rejected", 1).

Counters on the wire (SPEC "counters"): readings_thinned, readings_dropped,
frames_rejected, frames_duplicate, alarms_dropped. Any other name (for example
"rejected_bad_mic") is kept and shown by `stationgw status` but not sent upstream."""

WIRE_COUNTERS = (
    ("readings_thinned", 1),
    ("readings_dropped", 2),
    ("frames_rejected", 3),
    ("frames_duplicate", 4),
    ("alarms_dropped", 5),
)

NODE_STATUS_KEYS = (
    ("node", 1), ("t", 2), ("battery_mv", 3), ("supply_mv", 4), ("temp_decic", 5),
    ("free_heap", 6), ("reset_cause", 7), ("log_depth", 8), ("fw", 9),
    ("config_version", 10), ("rssi_dbm", 11), ("seq_gaps", 12),
)
