"""Storage: SQLite (WAL, the embedded default) or PostgreSQL (psycopg 3), one schema
(hub/schema.py) and one set of statements. Every write happens inside `with
store.tx():` and is committed when the block ends; the caller acks MQTT only after.

A database is named by a URL: `sqlite:///path/hub.db` or `postgresql://...` (any libpq
connection string). Each worker opens its own Store (connections are not shared
between threads)."""
import json
import sqlite3
from contextlib import contextmanager

from hub import schema

_COPY_MIN = 64      # from this many readings PostgreSQL stages them with COPY


def open_store(url):
    if url.startswith("sqlite:///"):
        return SqliteStore(url[len("sqlite:///"):])
    if url.startswith(("postgresql://", "postgres://")) or "dbname=" in url:
        return PgStore(url)
    raise ValueError("database url %r: use sqlite:///<path> or postgresql://..." % url)


class Store:
    dialect = None

    def _sql(self, q):
        return q

    def execute(self, q, args=()):
        cur = self.conn.cursor()
        cur.execute(self._sql(q), args)
        return cur

    def rows(self, q, args=()):
        return self.execute(q, args).fetchall()

    def init_schema(self):
        with self.tx():
            for stmt in schema.ddl(self.dialect):
                self.execute(stmt)

    # ------------------------------------------------------------ writes (in a tx)

    def insert_readings(self, rows):
        """rows as hub.uplink.batch_rows; returns how many were new (others: duplicates)."""
        if not rows:
            return 0
        cur = self.conn.cursor()
        cur.executemany(self._sql(
            "INSERT INTO readings VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"), rows)
        return cur.rowcount

    def insert_batch(self, row):
        return self.execute("INSERT INTO batches VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                            row).rowcount == 1

    def insert_alarm(self, row):
        return self.execute("INSERT INTO alarms VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,NULL,NULL)"
                            " ON CONFLICT DO NOTHING", row).rowcount == 1

    def upsert_gateway(self, site, gw, state, t, version, counters, rx_ms):
        """Keeps the newest status (by its time); counters only move forward."""
        self.execute(
            "INSERT INTO gateways VALUES (?,?,?,?,?,?,?) ON CONFLICT (site, gateway) DO UPDATE"
            " SET state = CASE WHEN excluded.t >= gateways.t THEN excluded.state"
            " ELSE gateways.state END, t = CASE WHEN excluded.t >= gateways.t THEN excluded.t"
            " ELSE gateways.t END, version = COALESCE(excluded.version, gateways.version),"
            " counters = COALESCE(excluded.counters, gateways.counters),"
            " hub_rx_ms = excluded.hub_rx_ms",
            (site, gw, state, t, version, json.dumps(counters) if counters else None, rx_ms))

    def upsert_node_status(self, site, st):
        self.execute(
            "INSERT INTO node_status VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (site, node) DO UPDATE"
            " SET t = excluded.t, battery_mv = excluded.battery_mv, log_depth ="
            " excluded.log_depth, seq_gaps = excluded.seq_gaps, rssi = excluded.rssi,"
            " firmware = excluded.firmware WHERE excluded.t >= node_status.t",
            (site, st[1], st[2], st.get(3), st.get(8), st.get(12), st.get(11),
             st.get(9) if isinstance(st.get(9), str) else None))

    def levels(self, site, node):
        return {r[0]: (r[1], r[2], r[3]) for r in self.rows(
            "SELECT chan, level, seq, aidx FROM levels WHERE site = ? AND node = ?", (site, node))}

    def set_level(self, site, node, chan, level, seq, aidx, t):
        self.execute("INSERT INTO levels VALUES (?,?,?,?,?,?,?) ON CONFLICT (site, node, chan)"
                     " DO UPDATE SET level = excluded.level, seq = excluded.seq,"
                     " aidx = excluded.aidx, t = excluded.t", (site, node, chan, level, seq, aidx, t))

    def warning(self, site, node):
        r = self.rows("SELECT level, identifier, refs, since FROM warnings WHERE site = ? AND"
                      " node = ?", (site, node))
        return r[0] if r else None

    def set_warning(self, site, node, level, identifier, refs, since):
        self.execute("INSERT INTO warnings VALUES (?,?,?,?,?,?) ON CONFLICT (site, node) DO"
                     " UPDATE SET level = excluded.level, identifier = excluded.identifier,"
                     " refs = excluded.refs, since = excluded.since",
                     (site, node, level, identifier, refs, since))

    def clear_warning(self, site, node):
        self.execute("DELETE FROM warnings WHERE site = ? AND node = ?", (site, node))

    def add_outbox(self, rows):
        """rows: (identifier, sink, msgtype, level, body, site, node, sample_t, hub_rx_ms,
        created_ms)"""
        cur = self.conn.cursor()
        cur.executemany(self._sql("INSERT INTO outbox VALUES (?,?,?,?,?,?,?,?,?,?,0,?,NULL,NULL)"
                                  " ON CONFLICT DO NOTHING"), [r + (r[9],) for r in rows])

    def unsent_outbox(self, limit=500):
        # Oldest first; rows made in the same millisecond go in a station's own order
        # (sample time, then the identifier with its numbers compared as numbers:
        # a shorter "site.node.seq.aidx" tail is the smaller seq), so an Update never
        # leaves before the Alert it refers to.
        return self.rows("SELECT identifier, sink, msgtype, level, body, site, node, attempts,"
                         " next_ms FROM outbox WHERE sent_ms IS NULL ORDER BY created_ms,"
                         " site, node, sample_t, LENGTH(identifier), identifier LIMIT ?",
                         (limit,))

    def mark_sent(self, identifier, sink, now_ms):
        self.execute("UPDATE outbox SET sent_ms = ?, attempts = attempts + 1, error = NULL"
                     " WHERE identifier = ? AND sink = ?", (now_ms, identifier, sink))

    def mark_retry(self, identifier, sink, next_ms, error):
        self.execute("UPDATE outbox SET attempts = attempts + 1, next_ms = ?, error = ? WHERE"
                     " identifier = ? AND sink = ?", (next_ms, error[:300], identifier, sink))

    def ack_alarm(self, site, node, seq, aidx, who, now_ms):
        return self.execute("UPDATE alarms SET acked_by = ?, acked_ms = ? WHERE site = ? AND"
                            " node = ? AND seq = ? AND aidx = ? AND acked_ms IS NULL",
                            (who, now_ms, site, node, seq, aidx)).rowcount == 1

    # ------------------------------------------------------------ reads

    def count(self, table):
        return self.rows("SELECT COUNT(*) FROM %s" % table)[0][0]

    def seq_gaps(self, site, node, limit=20):
        """Holes between the seqs of the readings and alarms received from a node:
        [(first missing, last missing)], newest first. Some holes are seqs the node spent on frames that carry no readings
        (status, hello) or skipped after a reboot (SPEC §2); a hole that stays open while
        the node's own gap count (status key 12) is 0 is one of those."""
        return [(r[0] + 1, r[1] - 1) for r in self.rows(
            "SELECT prev, seq FROM (SELECT seq, LAG(seq) OVER (ORDER BY seq) AS prev FROM"
            " (SELECT seq FROM readings WHERE site = ? AND node = ? UNION SELECT seq FROM alarms"
            " WHERE site = ? AND node = ?) s) g WHERE seq > prev + 1 ORDER BY seq DESC LIMIT ?",
            (site, node, site, node, limit))]

    def series(self, site, node, chan, since, limit=2000):
        return self.rows("SELECT t, value, fault FROM readings WHERE site = ? AND node = ? AND"
                         " chan = ? AND t >= ? ORDER BY t DESC LIMIT ?",
                         (site, node, chan, since, limit))[::-1]

    def latest(self):
        """Newest reading per (site, node, chan): [(site, node, chan, t, value, fault)]."""
        return self.rows("SELECT r.site, r.node, r.chan, r.t, r.value, r.fault FROM readings r"
                         " JOIN (SELECT site, node, chan, MAX(t) AS t FROM readings GROUP BY"
                         " site, node, chan) m ON r.site = m.site AND r.node = m.node AND"
                         " r.chan = m.chan AND r.t = m.t")

    def all_levels(self):
        return self.rows("SELECT site, node, MAX(level) FROM levels GROUP BY site, node")

    def recent_alarms(self, limit=100):
        return self.rows(
            "SELECT a.site, a.node, a.seq, a.aidx, a.event, a.level, a.prev, a.chan, a.value,"
            " a.threshold, a.t, a.gw_rx_ms, a.hub_rx_ms, a.acked_by, a.acked_ms,"
            " (SELECT MIN(o.sent_ms) FROM outbox o WHERE o.site = a.site AND o.node = a.node"
            "  AND o.sink <> 'broadcast' AND o.hub_rx_ms = a.hub_rx_ms AND o.sample_t = a.t)"
            " FROM alarms a ORDER BY a.hub_rx_ms DESC, a.seq DESC, a.aidx DESC LIMIT ?", (limit,))


class SqliteStore(Store):
    dialect = "sqlite"

    def __init__(self, path):
        self.conn = sqlite3.connect(path, timeout=5, isolation_level=None,
                                    check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")    # a commit survives a power cut
        self.conn.execute("PRAGMA busy_timeout=5000")     # then the worker retries

    @contextmanager
    def tx(self):
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self):
        self.conn.close()


class PgStore(Store):
    dialect = "postgres"

    def __init__(self, url):
        import psycopg
        self.conn = psycopg.connect(url, autocommit=True)
        self._staging = False

    def _sql(self, q):
        return q.replace("?", "%s")

    @contextmanager
    def tx(self):
        with self.conn.transaction():
            yield self

    def insert_readings(self, rows):
        if len(rows) < _COPY_MIN:
            return super().insert_readings(rows)
        cur = self.conn.cursor()
        if not self._staging:
            cur.execute("CREATE TEMP TABLE IF NOT EXISTS readings_in (LIKE readings)"
                        " ON COMMIT DELETE ROWS")
            self._staging = True
        with cur.copy("COPY readings_in FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)
        cur.execute("INSERT INTO readings SELECT DISTINCT ON (site, node, seq, idx) * FROM"
                    " readings_in ON CONFLICT DO NOTHING")
        n = cur.rowcount
        cur.execute("DELETE FROM readings_in")      # a second call in the same transaction
        return n

    def close(self):
        self.conn.close()
