"""Uplink payloads and batching decisions, pure logic (no I/O, time passed in).

- `encode_batch`, `encode_alarm`, `encode_status`: the CBOR maps of SPEC "Uplink"
  (integer keys, scaled integers, readings grouped by node, then channel, then runs).
- `decode_batch_readings`: the inverse for tests, tools and consumers: one tuple per
  reading with its dedup key.
- `LanePolicy`: which lane the next batch comes from, or when to look again.

A run is a stretch of readings of one channel from one frame with consecutive idx and
a constant time step: [seq, idx, t0, step, [values], flags?]. Reading k of the run has
time t0 + k*step and dedup key (node, seq, idx + k).
"""
from operator import itemgetter

import cbor2

from gateway.records import NODE_STATUS_KEYS

SCHEMA = 1
LIVE = "live"
BACKLOG = "backlog"

_SEQ_IDX = itemgetter(2, 3)

STATE_OFFLINE = 0
STATE_ONLINE = 1


def _runs(rows):
    """rows: (id, node, seq, idx, chan, t, value, fault, flags) of one (node, chan),
    sorted by (seq, idx). Returns the list of runs."""
    runs = []
    run = None
    last_seq = last_idx = last_t = step = flags = None
    for r in rows:
        seq, idx, t, f = r[2], r[3], r[5], r[8]
        v = r[6] if r[7] is None else [r[7]]
        if (run is not None and seq == last_seq and idx == last_idx + 1 and f == flags
                and t > last_t and (step is None or t - last_t == step)):
            if step is None:
                step = t - last_t
                run[3] = step
            run[4].append(v)
        else:
            run = [seq, idx, t, 0, [v]]
            if f:
                run.append(f)
            runs.append(run)
            step = None
            flags = f
        last_seq, last_idx, last_t = seq, idx, t
    return runs


def node_blocks(rows):
    """Group reading rows into [[node, [[chan, [run, ...]], ...]], ...]."""
    by_node = {}
    for r in rows:
        chans = by_node.get(r[1])
        if chans is None:
            chans = by_node[r[1]] = {}
        lst = chans.get(r[4])
        if lst is None:
            lst = chans[r[4]] = []
        lst.append(r)
    out = []
    for node in sorted(by_node):
        chans = by_node[node]
        blocks = []
        for chan in sorted(chans):
            rs = chans[chan]
            rs.sort(key=_SEQ_IDX)
            blocks.append([chan, _runs(rs)])
        out.append([node, blocks])
    return out


def status_map(status):
    """A NodeStatus (or a tuple in its field order) -> SPEC node_status map."""
    m = {}
    for (_, key), v in zip(NODE_STATUS_KEYS, status, strict=False):
        if v is not None:
            m[key] = v
    return m


def encode_batch(site, gw, seq, created, rows, statuses=(), counters=None):
    """rows as `node_blocks` takes them; statuses: NodeStatus tuples; counters: {key: n}."""
    m = {0: SCHEMA, 1: site, 2: gw, 3: seq, 4: int(created), 5: node_blocks(rows)}
    if statuses:
        m[6] = [status_map(s) for s in statuses]
    m[7] = dict(counters or {})
    return cbor2.dumps(m)


def encode_alarm(site, gw, alarm):
    a = alarm
    return cbor2.dumps({0: SCHEMA, 1: site, 2: gw, 3: a.node, 4: a.seq, 15: a.index,
                        5: a.event, 6: a.level, 7: a.prev_level, 8: a.chan, 9: a.rule_id,
                        10: a.rule_kind, 11: a.value, 12: a.threshold, 13: a.t, 14: a.rx_ms})


def encode_status(site, gw, state, t, sw_version, last_seen=None):
    m = {0: SCHEMA, 1: site, 2: gw, 3: state, 4: int(t), 5: sw_version}
    if last_seen:
        m[6] = {int(k): int(v) for k, v in last_seen.items()}
    return cbor2.dumps(m)


def decode_batch_readings(payload):
    """(batch map, [(node, seq, idx, chan, t, value, flags)]): value is an int or
    [fault]. Raises ValueError if the payload is not a batch of this schema."""
    m = cbor2.loads(payload)
    if not isinstance(m, dict) or m.get(0) != SCHEMA or 5 not in m:
        raise ValueError("not a schema-%d batch: %r" % (SCHEMA, payload[:40]))
    out = []
    for node, chans in m[5]:
        for chan, runs in chans:
            for run in runs:
                seq, idx, t0, step, values = run[:5]
                flags = run[5] if len(run) > 5 else 0
                for k, v in enumerate(values):
                    out.append((node, seq, idx + k, chan, t0 + k * step, v, flags))
    return m, out


class LanePolicy:
    """Decides which lane feeds the next batch.

    Live data is batched when a batch is full or its oldest item has waited max_age_s.
    Backlog batches are always full-size and go whenever there is room. When both lanes
    are ready they alternate, so a draining backlog never starves live data and live
    data never stalls the drain. (Alarms are not batched at all: see alarmlane.py.)"""

    def __init__(self, max_items, max_age_s):
        self.max_items = max_items
        self.max_age_s = max_age_s
        self._last = BACKLOG

    def choose(self, now, live_items, live_since, backlog_ready, room):
        """-> (lane or None, wake_at or None): wake_at is the monotonic time at which the
        live lane becomes due by age, if it is not due yet."""
        if room <= 0:
            return None, None
        live_due_at = None
        if live_items > 0 and live_since is not None:
            live_due_at = live_since + self.max_age_s
        live_ready = live_items >= self.max_items or (live_due_at is not None
                                                      and now >= live_due_at)
        if live_ready and backlog_ready:
            lane = BACKLOG if self._last == LIVE else LIVE
        elif live_ready:
            lane = LIVE
        elif backlog_ready:
            lane = BACKLOG
        else:
            return None, live_due_at
        self._last = lane
        return lane, None
