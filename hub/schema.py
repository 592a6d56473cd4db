"""The hub's tables, described once; `ddl(dialect)` renders them for SQLite or
PostgreSQL. Types: "text", "int" (64-bit). A column ending in "?" may be NULL."""

TABLES = (
    # one row per reading; the key is SPEC §9.2's dedup key, qualified by site because
    # node ids are unique within a site's gateways, not across a county
    ("readings", ("site text", "node int", "seq int", "idx int", "chan int", "t int",
                  "value int?", "fault int?", "flags int", "gateway text", "bseq int"),
     ("site", "node", "seq", "idx")),
    ("batches", ("site text", "gateway text", "bseq int", "created int", "readings int",
                 "hub_rx_ms int"), ("site", "gateway", "bseq")),
    ("alarms", ("site text", "node int", "seq int", "aidx int", "gateway text", "event int",
                "level int", "prev int", "chan int", "rule int", "kind int", "value int",
                "threshold int", "t int", "gw_rx_ms int", "hub_rx_ms int", "acked_by text?",
                "acked_ms int?"), ("site", "node", "seq", "aidx")),
    # latest per gateway / node
    ("gateways", ("site text", "gateway text", "state int", "t int", "version text?",
                  "counters text?", "hub_rx_ms int"), ("site", "gateway")),
    ("node_status", ("site text", "node int", "t int", "battery_mv int?", "log_depth int?",
                     "seq_gaps int?", "rssi int?", "firmware text?"), ("site", "node")),
    # warning state: the level per channel from the newest alarm (by node seq), and the
    # CAP alert chain of each station
    ("levels", ("site text", "node int", "chan int", "level int", "seq int", "aidx int",
                "t int"), ("site", "node", "chan")),
    ("warnings", ("site text", "node int", "level int", "identifier text", "refs text",
                  "since int"), ("site", "node")),
    # CAP messages (and broadcast triggers) waiting for / delivered to each sink
    ("outbox", ("identifier text", "sink text", "msgtype text", "level int", "body text",
                "site text", "node int", "sample_t int", "hub_rx_ms int", "created_ms int",
                "attempts int", "next_ms int", "sent_ms int?", "error text?"),
     ("identifier", "sink")),
)

INDEXES = (
    ("readings_series", "readings", ("site", "node", "chan", "t")),
    ("alarms_recent", "alarms", ("hub_rx_ms",)),
    ("outbox_due", "outbox", ("sent_ms", "next_ms")),
)

_TYPES = {"sqlite": {"text": "TEXT", "int": "INTEGER"},
          "postgres": {"text": "TEXT", "int": "BIGINT"}}


def columns(table):
    for name, cols, _pk in TABLES:
        if name == table:
            return [c.split()[0] for c in cols]
    raise KeyError(table)


def ddl(dialect):
    types = _TYPES[dialect]
    out = []
    for name, cols, pk in TABLES:
        defs = []
        for c in cols:
            col, typ = c.split()
            null = typ.endswith("?")
            defs.append("%s %s%s" % (col, types[typ.rstrip("?")], "" if null else " NOT NULL"))
        defs.append("PRIMARY KEY (%s)" % ", ".join(pk))
        out.append("CREATE TABLE IF NOT EXISTS %s (%s)" % (name, ", ".join(defs)))
    for iname, table, cols in INDEXES:
        out.append("CREATE INDEX IF NOT EXISTS %s ON %s (%s)" % (iname, table, ", ".join(cols)))
    return out
