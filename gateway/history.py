"""What the status page shows beyond the daemon's snapshot: recent alarms, the current
warning level of every (node, channel), and rain / displacement / water-level trends.

It is a view, not a record: it lives in memory, starts empty at each start of the
gateway (seeded from what the store still holds), and is fed by `tap(store)` with what
each `Store.commit` newly stored. The authoritative data goes to the platform.

Trend buckets per (node, chan): 5-minute buckets for the last 24 h and hourly buckets
for the last 7 days. Rain is a sum of increments (mm fallen in the bucket); every other
kind keeps its last sample of the bucket.
"""
import collections
import os
import sqlite3
import threading
from pathlib import Path

from gateway import alarmtext
from gateway.records import Alarm, Reading
from protocol import channels

TREND_KINDS = (1, 2, 3, 11)        # rain, displacement, water_level, mud_level
SCALES = (("5min", 300, 24 * 3600), ("hour", 3600, 7 * 24 * 3600))
MAX_ALARMS = 200


class History:
    def __init__(self, clock):
        self.clock = clock
        self._lock = threading.Lock()
        self.alarms = collections.deque(maxlen=MAX_ALARMS)
        self.levels = {}           # (node, chan) -> level of its newest alarm event
        self._newest = {}          # (node, chan) -> t of that event
        self._buckets = {scale: {} for scale, _w, _span in SCALES}   # -> {(node, chan): {start: v}}

    # ------------------------------------------------------------------ feeding
    def add(self, records, duplicate_frames=()):
        """Records just stored (gateway.records); readings and alarms of a duplicate
        frame (node, seq) were ignored by the store and are ignored here too."""
        dups = set(duplicate_frames)
        with self._lock:
            for r in records:
                t = type(r)
                if t is Reading:
                    if (r.node, r.seq) not in dups and r.value is not None:
                        self._reading(r)
                elif t is Alarm and (r.node, r.seq) not in dups:
                    self._alarm(r)

    def _reading(self, r):
        kind = r.chan >> 3
        if kind not in TREND_KINDS:
            return
        x = channels.to_units(r.chan, r.value)
        accumulate = channels.KINDS[kind][3]
        now = self.clock()
        for scale, width, span in SCALES:
            if r.t < now - span:
                continue
            b = self._buckets[scale].setdefault((r.node, r.chan), {})
            start = int(r.t // width * width)
            b[start] = b.get(start, 0.0) + x if accumulate else x
            if len(b) > span // width + 2:
                for old in sorted(b)[:len(b) - span // width - 2]:
                    del b[old]

    def _alarm(self, a):
        key = (a.node, a.chan)
        if a.t is not None and a.t >= self._newest.get(key, a.t):
            self._newest[key] = a.t
            self.levels[key] = a.level
        try:
            chan = channels.label(a.chan)
        except ValueError:
            chan = "0x%02x" % a.chan
        self.alarms.appendleft({
            "node": a.node, "seq": a.seq, "chan": chan, "t": a.t, "rx_ms": a.rx_ms,
            "level": a.level, "level_name": alarmtext.level_name(a.level),
            "prev_level": a.prev_level, "event": a.event, "rule_id": a.rule_id,
            "rule": alarmtext.KIND_NAMES.get(a.rule_kind, a.rule_kind),
            "value": alarmtext.metric_text(a.rule_kind, a.chan, a.value),
            "threshold": alarmtext.metric_text(a.rule_kind, a.chan, a.threshold)})

    def tap(self, store):
        """Record what every later `store.commit` newly stores. The store's listeners are
        told about alarms only, so the commit itself is wrapped; the wrapper adds the
        records after the commit returned and never raises into the committing code."""
        commit = store.commit

        def commit_and_record(arrivals):
            result = commit(arrivals)
            try:
                self.add(arrivals, result.duplicate_frames)
            except Exception:      # a view must never make a stored frame look unstored
                pass
            return result

        store.commit = commit_and_record

    def seed(self, store_path):
        """What the store still holds (unsent readings, unacked alarms): read-only."""
        if not os.path.exists(store_path):
            return
        db = sqlite3.connect(Path(os.path.abspath(store_path)).as_uri() + "?mode=ro", uri=True,
                             timeout=5.0)
        try:
            since = int(self.clock()) - SCALES[-1][2]
            kinds = ",".join(str(k) for k in TREND_KINDS)
            rows = db.execute("SELECT node, seq, idx, chan, t, value, fault, flags FROM readings "
                              "WHERE t >= ? AND value IS NOT NULL AND (chan >> 3) IN (%s) "
                              "ORDER BY id" % kinds, (since,)).fetchall()
            alarms = db.execute("SELECT node, seq, idx, event, level, prev_level, chan, rule_id, "
                                "rule_kind, value, threshold, t, rx_ms FROM alarms ORDER BY id"
                                ).fetchall()
        except sqlite3.DatabaseError:
            return                 # the daemon reports a broken store; the page stays empty
        finally:
            db.close()
        self.add([Reading(*r) for r in rows] + [Alarm(*a) for a in alarms])

    # ------------------------------------------------------------------ reading
    def node_levels(self):
        with self._lock:
            out = {}
            for (node, _chan), lv in self.levels.items():
                out[node] = max(out.get(node, 0), lv)
            return out

    def recent_alarms(self, n=50):
        with self._lock:
            return list(self.alarms)[:n]

    def trends(self, scale):
        """[{node, chan, unit, kind, points: [[t, v], ...]}] for one scale ("5min", "hour")."""
        with self._lock:
            out = []
            for (node, chan), b in sorted(self._buckets[scale].items()):
                name, unit, _exp, acc = channels.info(chan)
                out.append({"node": node, "chan": channels.label(chan), "kind": name,
                            "unit": unit, "sum": acc,
                            "points": [[t, round(b[t], 4)] for t in sorted(b)]})
            return out
