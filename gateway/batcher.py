"""Uplink payloads and batching decisions, pure logic (no I/O, time passed in).

- `encode_batch`, `encode_alarm`, `encode_status`: the CBOR maps of SPEC §9 (integer
  keys, scaled integers). Data batches are schema 2: readings grouped by node, then into
  groups of runs that share seq, times and flags; `encode_batch_v1` writes schema 1,
  which gateways still hold in their stores and consumers still read.
- `decode_batch_readings`: the inverse of both for tests, tools and consumers: one
  tuple per reading with its dedup key and absolute time.
- `CounterPolicy`: whether a batch carries the counters (key 7).
- `LanePolicy`: which lane the next batch comes from, or when to look again.

A run is a stretch of readings of one channel from one frame (or one window of Modbus
polls) with consecutive idx and a constant time step. A group (schema 2) is one or more
runs of one node with the same seq, count, start time, step and flags whose first idx
are evenly spaced (`stride`): [seq, idx, t, step, flags, stride, chan_run, ...], each
chan_run [chan, value, ...] with the values after the first sample delta-coded. Reading k
of chan_run j has time B + t + k*step (B: the batch's key 4) and dedup key
(node, seq, idx + j*stride + k): the channels of one Modbus poll window, or of one radio
frame sampled together, cost one header.
"""
from operator import itemgetter

import cbor2

from gateway.records import NODE_STATUS_KEYS

SCHEMA = 1             # alarm, status, cmd_result
BATCH_SCHEMA = 2       # data batches (SPEC §9.2); 1 is still read
COUNTERS_EVERY_S = 60  # a batch carries the counters at least this often
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


def encode_batch_v1(site, gw, seq, created, rows, statuses=(), counters=None):
    """Schema 1 (SPEC §9.2.1): rows as `node_blocks` takes them; statuses: NodeStatus
    tuples; counters: {key: n}. Kept for vectors and for consumers' tests: gateways
    upgraded from schema 1 re-send the batches their stores still hold as they are."""
    m = {0: SCHEMA, 1: site, 2: gw, 3: seq, 4: int(created), 5: node_blocks(rows)}
    if statuses:
        m[6] = [status_map(s) for s in statuses]
    m[7] = dict(counters or {})
    return cbor2.dumps(m)


def _deltas(values):
    """The first sample as it is, each later one as the difference from the sample
    before it; faults ([code]) as they are, outside the chain."""
    out = []
    prev = None
    for v in values:
        if isinstance(v, list):
            out.append(v)
        else:
            out.append(v if prev is None else v - prev)
            prev = v
    return out


def _undeltas(values):
    out = []
    prev = None
    for v in values:
        if isinstance(v, list):
            out.append(v)
        else:
            prev = v if prev is None else prev + v
            out.append(prev)
    return out


def node_groups(rows, base):
    """Group reading rows into schema-2 node blocks [[node, [group, ...]], ...], times
    relative to `base` (the batch's key 4)."""
    out = []
    for node, chans in node_blocks(rows):
        runs = []       # (seq, t0, step, flags, count, idx, chan, values)
        for chan, rs in chans:
            for r in rs:
                runs.append((r[0], r[2], r[3], r[5] if len(r) > 5 else 0, len(r[4]), r[1],
                             chan, r[4]))
        # runs that can share a header sort side by side, in idx order
        runs.sort(key=lambda r: r[:6])
        groups = []
        group = last = None
        for r in runs:
            if group is not None and r[:5] == last[:5] and r[5] - last[5] >= r[4] \
                    and group[5] in (0, r[5] - last[5]):
                group[5] = r[5] - last[5]
            else:
                group = [r[0], r[5], r[1] - base, r[2], r[3], 0]
                groups.append(group)
            group.append([r[6]] + _deltas(r[7]))
            last = r
        groups.sort(key=lambda g: (g[0], g[1]))
        out.append([node, groups])
    return out


def encode_batch(seq, created, rows, statuses=(), counters=None):
    """Schema 2 (SPEC §9.2): rows as `node_blocks` takes them; statuses: NodeStatus
    tuples; counters: {key: n}, or None to leave them out (see CounterPolicy). Site and
    gateway are the topic's."""
    created = int(created)
    m = {0: BATCH_SCHEMA, 3: seq, 4: created, 5: node_groups(rows, created)}
    if statuses:
        m[6] = [status_map(s) for s in statuses]
    if counters is not None:
        m[7] = dict(counters)
    return cbor2.dumps(m)


class CounterPolicy:
    """Whether the next batch carries the counters: in the first batch after a start,
    whenever one changed since the last batch that carried them, and at least every
    `every_s` seconds (gateway clock), so a consumer that joins late has them within
    that time. A batch re-encoded smaller (same seq) gets the same answer."""

    def __init__(self, every_s=COUNTERS_EVERY_S):
        self.every_s = every_s
        self._last = self._at = self._seq = self._pick = None

    def pick(self, seq, now, counters):
        """-> counters to put in batch `seq`, or None."""
        if seq == self._seq:
            return self._pick
        counters = dict(counters)
        include = (self._last is None or counters != self._last
                   or not 0 <= now - self._at < self.every_s)
        if include:
            self._last, self._at = counters, now
        self._seq, self._pick = seq, (counters if include else None)
        return self._pick


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
    """(batch map, [(node, seq, idx, chan, t, value, flags)]) for a schema 1 or 2 batch:
    value is an int or [fault], t absolute Unix s. Raises ValueError if the payload is
    not a batch of either schema."""
    m = cbor2.loads(payload)
    if not isinstance(m, dict) or m.get(0) not in (SCHEMA, BATCH_SCHEMA) or 5 not in m:
        raise ValueError("not a schema-1 or schema-2 batch: %r" % (payload[:40],))
    out = []
    if m[0] == SCHEMA:
        for node, chans in m[5]:
            for chan, runs in chans:
                for run in runs:
                    seq, idx, t0, step, values = run[:5]
                    flags = run[5] if len(run) > 5 else 0
                    for k, v in enumerate(values):
                        out.append((node, seq, idx + k, chan, t0 + k * step, v, flags))
        return m, out
    base = m[4]
    for node, groups in m[5]:
        for g in groups:
            seq, idx, t, step, flags, stride = g[:6]
            for j, chan_run in enumerate(g[6:]):
                for k, v in enumerate(_undeltas(chan_run[1:])):
                    out.append((node, seq, idx + j * stride + k, chan_run[0],
                                base + t + k * step, v, flags))
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
