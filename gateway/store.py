"""Durable store-and-forward for the site gateway (DESIGN.md I1, I3, I4).

SQLite in WAL mode with synchronous=FULL: `commit(arrivals)` writes a whole group of
records (readings, alarms, node statuses, frame seqs, counters) in ONE transaction,
so one fsync covers a group of radio frames. When `commit` returns, the data is on
disk and the radio link may ack the frames.

Life of a reading:  commit -> `readings` table -> `take_batch` moves it, in one
transaction, into the encoded payload of a `batches` row (the batch seq is persisted
with it) -> published -> `ack_batches` deletes the row on PUBACK. A crash at any point
leaves the reading either in `readings` or inside a stored batch that is re-sent with
the same seq and bytes after a restart: nothing is lost, duplicates carry the same
dedup keys.

Lanes: alarms have their own table and are handed to listeners the moment they are
committed. Readings are "live" if they were committed within the live horizon and
their time is within it too; everything else is "backlog", drained oldest first
(commit order, which per node is seq order).

Quota (I4): `enforce_quota` thins old routine readings (keep every 2nd per channel, the
kept one absorbing a rain increment; repeated passes double k) before it drops
anything; alarms and readings within `alarm_window_s` of an alarm on the same node are
never touched. Every thinned or dropped reading is counted.

Threading: one connection guarded by a lock, so the ingest (commit), the Modbus bridge
(next_seq, commit) and the uplink may share one Store. `take_batch` and
`enforce_quota` must be called from one thread only (the uplink worker).
"""
import bisect
import collections
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from gateway.logevent import event_line
from gateway.records import (
    FLAG_THINNED,
    WIRE_COUNTERS,
    Alarm,
    Count,
    FrameSeen,
    NodeStatus,
    Reading,
)
from protocol import channels

log = logging.getLogger("stationgw.store")

SCHEMA_VERSION = 1
QUICK_CHECK_ABOVE_BYTES = 256 * 1024 * 1024
MAX_THIN_LEVEL = 6          # k = 2**6 = 64 before the store starts dropping
THIN_CHUNK = 5000           # rows per thinning transaction: keeps the lock short
LOW_WATER = 0.9             # thin down to 90 % of the quota, so it does not run per commit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node INTEGER NOT NULL, seq INTEGER NOT NULL, idx INTEGER NOT NULL,
    chan INTEGER NOT NULL, t INTEGER NOT NULL, value INTEGER, fault INTEGER,
    flags INTEGER NOT NULL DEFAULT 0, thin INTEGER NOT NULL DEFAULT 0,
    UNIQUE (node, seq, idx));
CREATE TABLE IF NOT EXISTS alarms (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node INTEGER NOT NULL, seq INTEGER NOT NULL, idx INTEGER NOT NULL,
    event INTEGER, level INTEGER, prev_level INTEGER, chan INTEGER, rule_id INTEGER,
    rule_kind INTEGER, value INTEGER, threshold INTEGER, t INTEGER, rx_ms INTEGER,
    committed_ms INTEGER NOT NULL,
    UNIQUE (node, seq, idx));
CREATE TABLE IF NOT EXISTS alarm_marks (node INTEGER NOT NULL, t INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS alarm_marks_node ON alarm_marks (node, t);
CREATE TABLE IF NOT EXISTS status_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT, node INTEGER NOT NULL,
    t INTEGER, battery_mv INTEGER, supply_mv INTEGER, temp_decic INTEGER,
    free_heap INTEGER, reset_cause INTEGER, log_depth INTEGER, fw TEXT,
    config_version INTEGER, rssi_dbm INTEGER, seq_gaps INTEGER);
CREATE TABLE IF NOT EXISTS nodes (
    node INTEGER PRIMARY KEY, last_seen INTEGER,
    t INTEGER, battery_mv INTEGER, supply_mv INTEGER, temp_decic INTEGER,
    free_heap INTEGER, reset_cause INTEGER, log_depth INTEGER, fw TEXT,
    config_version INTEGER, rssi_dbm INTEGER, seq_gaps INTEGER);
CREATE TABLE IF NOT EXISTS frame_seqs (
    node INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (node, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seq_floor (node INTEGER PRIMARY KEY, floor INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS seq_alloc (node INTEGER PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY, lane TEXT NOT NULL, created INTEGER NOT NULL,
    n_readings INTEGER NOT NULL, oldest_t INTEGER, payload BLOB NOT NULL);
"""

_READING_COLS = "id, node, seq, idx, chan, t, value, fault, flags"
_STATUS_FIELDS = NodeStatus._fields
_ALARM_COLS = ("node, seq, idx, event, level, prev_level, chan, rule_id, rule_kind, value, "
               "threshold, t, rx_ms")

LIVE = "live"
BACKLOG = "backlog"


class StoreError(Exception):
    """The store cannot be used; the message says what is wrong and what to do."""


CommitResult = collections.namedtuple("CommitResult", "readings alarms duplicate_frames")
CommitResult.__doc__ = """readings: rows newly stored; alarms: [(alarm_id, Alarm)] newly
stored; duplicate_frames: [(node, seq)] already committed before (their content ignored)."""

Batch = collections.namedtuple("Batch", "seq lane created n_readings payload")


class Store:
    def __init__(self, path, quota_bytes=None, live_horizon_s=300.0, alarm_window_s=3600,
                 clock=time.time, monotonic=time.monotonic):
        self.path = str(path)
        self.quota_bytes = quota_bytes
        self.live_horizon_s = live_horizon_s
        self.alarm_window_s = alarm_window_s
        self._clock = clock
        self._mono = monotonic
        self._lock = threading.RLock()
        self._listeners = []
        self._db = self._open()
        with self._lock:
            row = self._db.execute("SELECT coalesce(max(id), 0), count(*) FROM readings").fetchone()
        # (monotonic commit time, highest reading id after that commit): the live floor.
        self._commits = collections.deque()
        self._live_floor = row[0]
        self._live_n = 0
        self._live_since = None
        self._backlog_hint = row[1] > 0
        self._status_n = self._db.execute("SELECT count(*) FROM status_queue").fetchone()[0]

    # ------------------------------------------------------------------ opening
    def _open(self):
        existed = os.path.exists(self.path) and os.path.getsize(self.path) > 0
        d = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(d):
            raise StoreError("store directory %s does not exist: create it (the systemd unit's "
                             "StateDirectory does) or set storage.path" % d)
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                 timeout=30.0)
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError("store %s: SQLite refused WAL mode (got %r); put the store on a "
                                 "local file system" % (self.path, mode))
            db.execute("PRAGMA synchronous=FULL")
            if existed:
                self._check_integrity(db)
            db.executescript(_SCHEMA)
            ver = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if ver is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
                db.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)",
                           (int(self._clock()),))
            elif ver[0] != SCHEMA_VERSION:
                raise StoreError("store %s has schema version %r, this gateway reads version %d: "
                                 "use the gateway version that wrote it to drain it first"
                                 % (self.path, ver[0], SCHEMA_VERSION))
        except sqlite3.DatabaseError as e:
            raise StoreError("store %s cannot be opened (%s): move the file aside (keep it, it "
                             "may hold unsent readings) and restart to begin a new store"
                             % (self.path, e)) from e
        return db

    def _check_integrity(self, db):
        size = os.path.getsize(self.path)
        pragma = "quick_check" if size > QUICK_CHECK_ABOVE_BYTES else "integrity_check"
        rows = [r[0] for r in db.execute("PRAGMA %s(20)" % pragma)]
        if rows != ["ok"]:
            raise StoreError("store %s failed PRAGMA %s: %s. Move the file aside (keep it for "
                             "recovery, e.g. with the sqlite3 '.recover' command) and restart to "
                             "begin a new store" % (self.path, pragma, "; ".join(rows[:5])))

    def integrity_ok(self):
        with self._lock:
            return [r[0] for r in self._db.execute("PRAGMA integrity_check")] == ["ok"]

    def close(self):
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def add_listener(self, fn):
        """fn(new_alarms, n_live, n_backlog, n_status) runs after every commit, outside the
        store lock, in the committing thread. new_alarms is [(alarm_id, Alarm)]."""
        self._listeners.append(fn)

    def remove_listener(self, fn):
        if fn in self._listeners:
            self._listeners.remove(fn)

    # ------------------------------------------------------------------ ingest side
    def commit(self, arrivals):
        """Store a group of records in one transaction (one fsync). Returns CommitResult.

        A frame whose FrameSeen (node, seq) is already committed is a duplicate: its
        readings and alarms in this group are ignored. Raises TypeError for anything
        that is not a gateway.records record, before touching the database."""
        readings, alarms, statuses, frames, counts = [], [], [], [], []
        for r in arrivals:
            t = type(r)
            if t is Reading:
                readings.append(r)
            elif t is Alarm:
                alarms.append(r)
            elif t is NodeStatus:
                statuses.append(r)
            elif t is FrameSeen:
                frames.append(r)
            elif t is Count:
                counts.append(r)
            else:
                raise TypeError("Store.commit takes gateway.records records (Reading, Alarm, "
                                "NodeStatus, FrameSeen, Count), got %r" % (r,))
        for r in readings:
            if not _good_reading(r):
                raise ValueError("reading %r: node, seq, idx, chan and t must be ints and the "
                                 "value an int (or None with a fault code); nothing of this "
                                 "group was stored" % (r,))
        now = self._clock()
        new_alarms = []
        dups = []
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if frames:
                    dups = self._frames(db, frames)
                    if dups:
                        gone = set(dups)
                        readings = [r for r in readings if (r.node, r.seq) not in gone]
                        alarms = [a for a in alarms if (a.node, a.seq) not in gone]
                n_new = 0
                if readings:
                    cur = db.executemany(
                        "INSERT OR IGNORE INTO readings (node, seq, idx, chan, t, value, fault, "
                        "flags) VALUES (?,?,?,?,?,?,?,?)", readings)
                    n_new = cur.rowcount
                committed_ms = int(now * 1000)
                for a in alarms:
                    cur = db.execute("INSERT OR IGNORE INTO alarms (%s, committed_ms) VALUES "
                                     "(?,?,?,?,?,?,?,?,?,?,?,?,?,?)" % _ALARM_COLS,
                                     tuple(a) + (committed_ms,))
                    if cur.rowcount == 1:
                        new_alarms.append((cur.lastrowid, a))
                        db.execute("INSERT INTO alarm_marks VALUES (?, ?)", (a.node, a.t))
                for s in statuses:
                    db.execute("INSERT INTO status_queue (%s) VALUES (%s)"
                               % (", ".join(_STATUS_FIELDS), ",".join("?" * len(_STATUS_FIELDS))),
                               tuple(s))
                    sets = ", ".join("%s=excluded.%s" % (f, f) for f in _STATUS_FIELDS[1:])
                    db.execute("INSERT INTO nodes (%s) VALUES (%s) ON CONFLICT (node) DO UPDATE "
                               "SET %s" % (", ".join(_STATUS_FIELDS),
                                           ",".join("?" * len(_STATUS_FIELDS)), sets), tuple(s))
                for c in counts:
                    db.execute("INSERT INTO counters VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
                               "SET value = value + excluded.value", (c.name, int(c.n)))
                seen = {r.node for r in readings} | {f.node for f in frames} | \
                    {a.node for a in alarms} | {s.node for s in statuses}
                if seen:
                    db.executemany("INSERT INTO nodes (node, last_seen) VALUES (?, ?) ON CONFLICT "
                                   "(node) DO UPDATE SET last_seen = excluded.last_seen",
                                   [(n, int(now)) for n in seen])
                top = db.execute("SELECT seq FROM sqlite_sequence WHERE name='readings'").fetchone()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            # Lane bookkeeping, still under the lock so take_batch sees it consistently.
            cutoff = int(now - self.live_horizon_s)          # as take_batch draws the line
            n_live = sum(1 for r in readings if r.t >= cutoff) if n_new else 0
            n_live = min(n_live, n_new)
            n_back = n_new - n_live
            mono = self._mono()
            if top is not None:
                self._commits.append((mono, top[0]))
            if n_live or statuses:
                if self._live_n == 0:
                    self._live_since = mono
                self._live_n += n_live + len(statuses)
            self._status_n += len(statuses)
            if n_back:
                self._backlog_hint = True
        for fn in list(self._listeners):
            try:
                fn(new_alarms, n_live, n_back, len(statuses))
            except Exception:
                # The data is committed: a listener's failure must not make the caller
                # think otherwise (it would withhold acks for stored frames).
                log.exception("%s", event_line("store_listener_failed", listener=repr(fn)))
        return CommitResult(n_new, new_alarms, dups)

    def _frames(self, db, frames):
        dups = []
        floors = {}
        for f in frames:
            if f.node not in floors:
                row = db.execute("SELECT floor FROM seq_floor WHERE node=?", (f.node,)).fetchone()
                floors[f.node] = row[0] if row else None
            floor = floors[f.node]
            if (floor is not None and f.seq < floor) or db.execute(
                    "SELECT 1 FROM frame_seqs WHERE node=? AND seq=?", (f.node, f.seq)).fetchone():
                dups.append((f.node, f.seq))
            else:
                db.execute("INSERT INTO frame_seqs VALUES (?, ?)", (f.node, f.seq))
            if f.floor is not None and (floor is None or f.floor > floor):
                floors[f.node] = f.floor
                db.execute("INSERT INTO seq_floor VALUES (?, ?) ON CONFLICT (node) DO UPDATE "
                           "SET floor = excluded.floor", (f.node, f.floor))
                db.execute("DELETE FROM frame_seqs WHERE node=? AND seq<?", (f.node, f.floor))
        return dups

    def committed_seqs(self, node):
        """(floor, [(lo, hi), ...]): the committed frame seqs of `node` at or above its
        floor, as sorted disjoint inclusive ranges. floor is None if never set."""
        with self._lock:
            row = self._db.execute("SELECT floor FROM seq_floor WHERE node=?", (node,)).fetchone()
            seqs = [r[0] for r in self._db.execute(
                "SELECT seq FROM frame_seqs WHERE node=? ORDER BY seq", (node,))]
        ranges = []
        for s in seqs:
            if ranges and s == ranges[-1][1] + 1:
                ranges[-1][1] = s
            else:
                ranges.append([s, s])
        return (row[0] if row else None), [tuple(r) for r in ranges]

    def known_nodes(self):
        with self._lock:
            return sorted(r[0] for r in self._db.execute(
                "SELECT node FROM seq_floor UNION SELECT node FROM frame_seqs "
                "UNION SELECT node FROM nodes"))

    def next_seq(self, node, n=1):
        """Reserve n consecutive seqs for a gateway-made (virtual) node; returns the first.
        Persisted before it returns, so a seq is never handed out twice, even after a crash."""
        if n < 1:
            raise ValueError("next_seq needs n >= 1, got %r" % (n,))
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT next FROM seq_alloc WHERE node=?", (node,)).fetchone()
                first = row[0] if row else 1
                db.execute("INSERT INTO seq_alloc VALUES (?, ?) ON CONFLICT (node) DO UPDATE SET "
                           "next = excluded.next", (node, first + n))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return first

    # ------------------------------------------------------------------ uplink side
    def pending_alarms(self):
        """[(alarm_id, Alarm)] not yet acknowledged by the broker, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT id, %s FROM alarms ORDER BY id" % _ALARM_COLS).fetchall()
        return [(r[0], Alarm(*r[1:])) for r in rows]

    def ack_alarms(self, ids):
        self._delete_acked("alarms", "id", ids)

    def ack_batches(self, seqs):
        self._delete_acked("batches", "seq", seqs)

    def _delete_acked(self, table, key, keys):
        keys = list(keys)
        if not keys:
            return
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("DELETE FROM %s WHERE %s=?" % (table, key), [(k,) for k in keys])
                db.execute("INSERT OR REPLACE INTO meta VALUES ('last_puback', ?)",
                           (self._clock(),))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def unacked_batches(self):
        """Batches taken but not acknowledged (after a restart: to re-send), by seq."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, lane, created, n_readings, payload FROM batches ORDER BY seq").fetchall()
        return [Batch(*r) for r in rows]

    def lane_hint(self):
        """(live_items, live_since_monotonic, backlog_maybe): cheap in-memory view for the
        batcher. live_items counts live readings and statuses committed since the last
        live batch; it can overestimate (items age into the backlog)."""
        with self._lock:
            return self._live_n, self._live_since, self._backlog_hint

    def _floor(self):
        horizon = self._mono() - self.live_horizon_s
        while self._commits and self._commits[0][0] <= horizon:
            self._live_floor = self._commits.popleft()[1]
        return self._live_floor

    def take_batch(self, lane, max_readings, encode, max_bytes, max_statuses=64):
        """Move up to max_readings readings of `lane` (and queued node statuses) into a
        new batch: encode(seq, created, rows, statuses, counters) -> bytes, where rows are
        (id, node, seq, idx, chan, t, value, fault, flags) in commit order. The payload is
        cut until it fits max_bytes. Returns the Batch, or None if there was nothing."""
        now = self._clock()
        cutoff = int(now - self.live_horizon_s)
        with self._lock:
            floor = self._floor()
            if lane == LIVE:
                where = "id > ? AND t >= ?"
            else:
                where = "(id <= ? OR t < ?)"
            rows = self._db.execute("SELECT %s FROM readings WHERE %s ORDER BY id LIMIT ?"
                                    % (_READING_COLS, where), (floor, cutoff, max_readings)).fetchall()
            statuses = []
            if self._status_n:
                statuses = self._db.execute("SELECT id, %s FROM status_queue ORDER BY id LIMIT ?"
                                            % ", ".join(_STATUS_FIELDS), (max_statuses,)).fetchall()
            counters = self._wire_counters()
            seq = self._meta("batch_seq", 0) + 1
            if lane == LIVE and len(rows) < max_readings:
                self._live_n, self._live_since = 0, None
                # A reading counted live at its commit may have aged past the horizon
                # since (a late batch on a busy gateway): it is backlog now, and no
                # commit will say so. Without this it waits for the next restart.
                if not self._backlog_hint and self._db.execute(
                        "SELECT 1 FROM readings WHERE id <= ? OR t < ? LIMIT 1",
                        (floor, cutoff)).fetchone():
                    self._backlog_hint = True
            elif lane == LIVE:
                # A full batch: more may be waiting even if the estimate says none (it
                # is only an estimate), so the lane stays due until a batch comes short.
                self._live_n = max(1, self._live_n - len(rows))
            if lane == BACKLOG and len(rows) < max_readings:
                self._backlog_hint = False
        if not rows and not statuses:
            return None
        # Encode outside the lock: only this thread deletes readings, and new rows get
        # higher ids, so the id range below still names exactly these rows.
        created = int(now)
        st = [s[1:] for s in statuses]
        payload = encode(seq, created, rows, st, counters)
        cut = False
        while len(payload) > max_bytes and len(rows) > 1:
            keep = max(1, int(len(rows) * max_bytes * 0.9 / len(payload)))
            rows = rows[:min(keep, len(rows) - 1)]
            payload = encode(seq, created, rows, st, counters)
            cut = True
        oldest = min((r[5] for r in rows), default=None)
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?)",
                           (seq, lane, created, len(rows), oldest, payload))
                if rows:
                    db.execute("DELETE FROM readings WHERE id <= ? AND %s" % where,
                               (rows[-1][0], floor, cutoff))
                if statuses:
                    db.execute("DELETE FROM status_queue WHERE id <= ?", (statuses[-1][0],))
                db.execute("INSERT OR REPLACE INTO meta VALUES ('batch_seq', ?)", (seq,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._status_n = max(0, self._status_n - len(statuses))
            if cut and lane == BACKLOG:
                self._backlog_hint = True
            elif cut and self._live_since is None:
                self._live_n, self._live_since = 1, self._mono()
        return Batch(seq, lane, created, len(rows), payload)

    def _meta(self, key, default=None):
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else row[0]

    def _wire_counters(self):
        have = dict(self._db.execute("SELECT name, value FROM counters"))
        return {k: have.get(name, 0) for name, k in WIRE_COUNTERS}

    def counters(self):
        with self._lock:
            have = dict(self._db.execute("SELECT name, value FROM counters"))
        for name, _ in WIRE_COUNTERS:
            have.setdefault(name, 0)
        return have

    def last_seen(self):
        with self._lock:
            return dict(self._db.execute(
                "SELECT node, last_seen FROM nodes WHERE last_seen IS NOT NULL"))

    def set_meta(self, key, value):
        """Small persisted facts for `stationgw status` (e.g. broker state)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------------ status
    def stats(self):
        """Everything `stationgw status` shows from the store: per lane depth and oldest
        age (s), unacked batches, counters, nodes, last PUBACK, size vs quota. Runs on
        its own read connection, so counting a big backlog never blocks ingest."""
        return read_stats(self.path, self.live_horizon_s, self.quota_bytes, self._clock)

    def _used_bytes(self):
        db = self._db
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * db.execute("PRAGMA page_size").fetchone()[0]

    def used_bytes(self):
        with self._lock:
            return self._used_bytes()

    # ------------------------------------------------------------------ quota
    def enforce_quota(self):
        """If the store uses more than its quota, thin (then, only if thinning to
        k = 2**MAX_THIN_LEVEL is not enough, drop) old routine readings until it is
        under LOW_WATER * quota. Returns (thinned, dropped) for this call."""
        if not self.quota_bytes or self.used_bytes() <= self.quota_bytes:
            return 0, 0
        target = self.quota_bytes * LOW_WATER
        thinned = dropped = 0
        for level in range(1, MAX_THIN_LEVEL + 1):
            thinned += self._thin_pass(level, target)
            if self.used_bytes() <= target:
                return thinned, dropped
        dropped = self._drop_oldest(target)
        return thinned, dropped

    def _marks(self):
        marks = {}
        for node, t in self._db.execute("SELECT node, t FROM alarm_marks ORDER BY node, t"):
            marks.setdefault(node, []).append(t)
        return marks

    def _protected(self, marks, node, t):
        ts = marks.get(node)
        if not ts:
            return False
        i = bisect.bisect_left(ts, t - self.alarm_window_s)
        return i < len(ts) and ts[i] <= t + self.alarm_window_s

    def _eligible(self, marks, row, cutoff, level):
        # row: id, node, seq, idx, chan, t, value, fault, flags, thin
        return (row[5] < cutoff and row[7] is None and row[9] < level
                and not self._protected(marks, row[1], row[5]))

    def _thin_pass(self, level, target):
        """Halve the eligible readings below `level`, oldest chunk first, per (node, chan):
        of each pair the later one is kept (a rain increment absorbs the earlier one)."""
        def plan(rows, marks, cutoff):
            groups = {}
            for r in rows:
                if self._eligible(marks, r, cutoff, level):
                    groups.setdefault((r[1], r[4]), []).append(r)
            return plan_thinning(groups.values(), level)
        return self._rewrite_chunks(plan, "readings_thinned", target)

    def _drop_oldest(self, target):
        def plan(rows, marks, cutoff):
            return [], [r[0] for r in rows
                        if self._eligible(marks, r, cutoff, MAX_THIN_LEVEL + 1)]
        return self._rewrite_chunks(plan, "readings_dropped", target)

    def _rewrite_chunks(self, plan, counter, target):
        """Walk the readings oldest first in chunks; plan(rows, marks, cutoff) -> (updates,
        deletes). Each chunk is rewritten in one transaction: its id range is deleted and
        the survivors put back with their ids, so they pack into fewer pages and the space
        really comes free (deleting every other row would only leave half-empty pages)."""
        total = 0
        last_id = 0
        while True:
            with self._lock:
                db = self._db
                cutoff = int(self._clock() - self.live_horizon_s)
                marks = self._marks()
                rows = db.execute("SELECT %s, thin FROM readings WHERE id > ? ORDER BY id LIMIT ?"
                                  % _READING_COLS, (last_id, THIN_CHUNK)).fetchall()
                if not rows:
                    return total
                last_id = rows[-1][0]
                updates, deletes = plan(rows, marks, cutoff)
                if not deletes:
                    continue
                gone = set(deletes)
                changed = {u[3]: u for u in updates}
                keep = []
                for r in rows:
                    if r[0] in gone:
                        continue
                    u = changed.get(r[0])
                    if u is not None:
                        r = r[:6] + (u[0], r[7], u[1], u[2])
                    keep.append(r)
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.execute("DELETE FROM readings WHERE id >= ? AND id <= ?",
                               (rows[0][0], last_id))
                    db.executemany("INSERT INTO readings (%s, thin) VALUES (?,?,?,?,?,?,?,?,?,?)"
                                   % _READING_COLS, keep)
                    db.execute("INSERT INTO counters VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
                               "SET value = value + excluded.value", (counter, len(deletes)))
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                total += len(deletes)
                if self._used_bytes() <= target:
                    return total

    def prune_alarm_marks(self):
        """Forget alarm marks that no stored reading can fall near any more. The oldest
        reading time is found on a read connection, so the scan never holds the lock."""
        db = sqlite3.connect(Path(os.path.abspath(self.path)).as_uri() + "?mode=ro", uri=True,
                             timeout=5.0)
        try:
            oldest = db.execute("SELECT min(t) FROM readings").fetchone()[0]
        finally:
            db.close()
        if oldest is None:
            oldest = int(self._clock())
        with self._lock:
            cur = self._db.execute("DELETE FROM alarm_marks WHERE t < ?",
                                   (oldest - self.alarm_window_s,))
            return cur.rowcount


def read_stats(path, live_horizon_s=300.0, quota_bytes=None, clock=time.time):
    """Store.stats() for another process (`stationgw status`): opens the store read-only,
    without the integrity check, and never writes."""
    if not os.path.exists(path):
        raise StoreError("no store at %s: check storage.path (the gateway creates it on its "
                         "first run)" % path)
    db = sqlite3.connect(Path(os.path.abspath(path)).as_uri() + "?mode=ro", uri=True,
                         timeout=5.0)
    try:
        return _stats(db, clock(), live_horizon_s, quota_bytes)
    except sqlite3.DatabaseError as e:
        raise StoreError("store %s cannot be read (%s)" % (path, e)) from e
    finally:
        db.close()


def _stats(db, now, live_horizon_s, quota_bytes):
    cutoff = now - live_horizon_s
    db.execute("BEGIN")                      # one consistent snapshot
    n_all, n_live, t_min = db.execute(
        "SELECT count(*), coalesce(sum(t >= ?), 0), min(t) FROM readings", (cutoff,)).fetchone()
    t_live = db.execute("SELECT min(t) FROM readings WHERE t >= ?", (cutoff,)).fetchone()[0]
    a_n, a_ms = db.execute("SELECT count(*), min(committed_ms) FROM alarms").fetchone()
    b_n, b_r, b_created = db.execute(
        "SELECT count(*), coalesce(sum(n_readings), 0), min(created) FROM batches").fetchone()
    floors = dict(db.execute("SELECT node, floor FROM seq_floor"))
    nodes = {}
    for r in db.execute("SELECT node, last_seen, %s FROM nodes" % ", ".join(_STATUS_FIELDS[1:])):
        d = {"last_seen": r[1], "floor": floors.get(r[0])}
        d.update((k, v) for k, v in zip(_STATUS_FIELDS[1:], r[2:], strict=True) if v is not None)
        nodes[r[0]] = d
    meta = dict(db.execute("SELECT key, value FROM meta"))
    counters = dict(db.execute("SELECT name, value FROM counters"))
    for name, _ in WIRE_COUNTERS:
        counters.setdefault(name, 0)
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    size = (pages - free) * db.execute("PRAGMA page_size").fetchone()[0]
    db.execute("COMMIT")
    n_back = n_all - n_live
    return {
        "lanes": {
            "alarm": {"depth": a_n, "oldest_age_s": _age(now, a_ms / 1000.0 if a_ms else None)},
            "live": {"depth": n_live, "oldest_age_s": _age(now, t_live)},
            "backlog": {"depth": n_back, "oldest_age_s": _age(now, t_min if n_back else None)},
            "unacked_batches": {"depth": b_n, "readings": b_r,
                                "oldest_age_s": _age(now, b_created)},
        },
        "counters": counters,
        "nodes": nodes,
        "last_puback": meta.get("last_puback"),
        "batch_seq": meta.get("batch_seq", 0),
        "broker_state": meta.get("broker_state"),
        "used_bytes": size,
        "quota_bytes": quota_bytes,
    }


def _good_reading(r):
    if not (type(r.node) is int and type(r.seq) is int and type(r.idx) is int
            and type(r.chan) is int and type(r.t) is int and type(r.flags) is int):
        return False
    if r.value is None:
        return type(r.fault) is int
    return type(r.value) is int and r.fault is None


def _age(now, t):
    return None if t is None else round(max(0.0, now - t), 3)


def plan_thinning(groups, level):
    """Pure thinning decision. groups: lists of reading rows (id, node, seq, idx, chan, t,
    value, fault, flags, ...) of one (node, chan) each, in commit order. Pairs rows in
    time order; of each pair the later row is kept and marked thinned at `level`; for an
    accumulating kind (rain) it absorbs the earlier row's value. An odd last row stays.
    Returns (updates [(value, flags, level, id)], deletes [id])."""
    updates, deletes = [], []
    for rows in groups:
        if len(rows) < 2:
            continue
        rows = sorted(rows, key=lambda r: (r[5], r[2], r[3]))
        try:
            accumulating = channels.info(rows[0][4])[3]
        except ValueError:
            accumulating = False
        for i in range(0, len(rows) - 1, 2):
            early, late = rows[i], rows[i + 1]
            value = late[6] + early[6] if accumulating else late[6]
            flags = late[8] | early[8] | FLAG_THINNED
            updates.append((value, flags, level, late[0]))
            deletes.append(early[0])
    return updates, deletes
