"""The commit step on SQLite and PostgreSQL: one row per reading, duplicates no-ops,
gaps from seqs, alarms to levels and CAP messages in the outbox."""
import cbor2
import pytest
from hubdata import alarm, batch, readings

from hub import uplink
from hub.ingest import Context, commit
from hub.stations import load
from hub.store import open_store

EXAMPLES = uplink.__file__.rsplit("/", 1)[0] + "/examples/"


def items(*msgs):
    out = []
    for kind, payload in msgs:
        out.append((kind, "demo", "gw1", uplink.decode(kind, "demo", "gw1", payload), 1))
    return out


@pytest.fixture
def store(db_url):
    s = open_store(db_url)
    s.init_schema()
    yield s
    s.close()


def test_each_reading_once_whatever_is_resent(store):
    ctx = Context()
    b1 = batch(1, readings(101, [5, 6]) + readings(102, [9]))
    assert commit(store, items(("data", b1)), ctx)[:2] == (9, 0)
    # the same batch again (lost PUBACK) and a new batch that overlaps it
    b2 = batch(2, readings(101, [6, 7]))
    assert commit(store, items(("data", b1), ("data", b2)), ctx)[:2] == (3, 12)
    assert store.count("readings") == 12
    assert store.count("batches") == 2
    got = store.series("demo", 101, 0x10, 0)
    assert [v for _, v, _ in got] == [1000 + s * 10 + i for s in (5, 6, 7) for i in range(3)]


def test_schema_1_and_2_batches_give_the_same_rows(store):
    """A gateway upgraded to schema 2 re-sends the schema-1 batches its store holds: the
    hub reads both, and the same readings in either form are the same rows."""
    from gateway.modbus import WINDOW
    polls = [(9001, 7, i * WINDOW + k, chan, 1_780_000_000 + k, v + (k % 3) - i)
             for k in range(6) for i, (chan, v) in enumerate(((0x18, 1500), (0x38, 215)))]
    rows1 = uplink.batch_rows("demo", "gw1", uplink.decode("data", "demo", "gw1",
                                                           batch(1, polls, schema=1)))
    rows2 = uplink.batch_rows("demo", "gw1", uplink.decode("data", "demo", "gw1",
                                                           batch(1, polls)))
    assert sorted(rows1) == sorted(rows2)
    assert sorted(r[1:7] for r in rows2) == sorted(
        (n, s, x, c, t, v) for n, s, x, c, t, v in polls)
    ctx = Context()
    assert commit(store, items(("data", batch(1, polls, schema=1))), ctx)[:2] == (12, 0)
    assert commit(store, items(("data", batch(2, polls))), ctx)[:2] == (0, 12)


def test_a_batch_without_counters_keeps_the_last_ones(store):
    import json
    ctx = Context()
    commit(store, items(("data", batch(1, readings(101, [1]), counters={1: 4, 2: 0, 3: 1, 4: 0,
                                                                        5: 0}))), ctx)
    doc = cbor2.loads(batch(2, readings(101, [2])))
    del doc[7]                                   # schema 2: counters unchanged
    commit(store, items(("data", cbor2.dumps(doc))), ctx)
    (c,) = store.rows("SELECT counters FROM gateways")
    assert json.loads(c[0]) == {"1": 4, "2": 0, "3": 1, "4": 0, "5": 0}
    assert store.count("readings") == 6


def test_a_failed_transaction_leaves_nothing(store):
    good = items(("data", batch(1, readings(101, [1]))))
    bad = ("data", "demo", "gw1", {3: 2, 4: 0, 5: [[101, [[0x10, [[2, 0, 0, 0, [1]]]]]]]},
           1)   # no counters key: the commit step raises half-way
    with pytest.raises(KeyError):
        commit(store, good + [bad], Context())
    assert store.count("readings") == 0
    assert commit(store, good, Context())[0] == 3


def test_gaps_in_a_nodes_seqs(store):
    commit(store, items(("data", batch(1, readings(101, [1, 2, 3, 7, 8, 12])))), Context())
    assert store.seq_gaps("demo", 101) == [(9, 11), (4, 6)]
    commit(store, items(("data", batch(2, readings(101, [4, 5, 6, 9, 10, 11])))), Context())
    assert store.seq_gaps("demo", 101) == []


def test_faults_and_node_status_are_kept(store):
    from gateway.batcher import encode_batch
    rows = [(1, 103, 4, 0, 0x18, 1_780_000_000, None, 0x0108, 0)]
    st = [(103, 1_780_000_050, 3700, None, 215, None, None, 3, None, None, None, 2)]
    commit(store, items(("data", encode_batch(1, 1_780_000_060, rows, st,
                                              {k: 0 for k in range(1, 6)}))), Context())
    assert store.series("demo", 103, 0x18, 0) == [(1_780_000_000, None, 0x0108)]
    assert store.rows("SELECT battery_mv, log_depth, seq_gaps FROM node_status") == [(3700, 3, 2)]


def test_warning_chain_alert_update_cancel(store):
    ctx = Context(stations=load(EXAMPLES + "stations.csv"), sinks=("spool", "http"),
                  broadcast=True)
    # yellow: no CAP; orange: Alert; red on another channel: Update (+ broadcast);
    # the orange channel clearing changes nothing (red still holds); red clearing: Cancel
    steps = [(alarm(101, 10, 2, 0), 0), (alarm(101, 11, 3, 2), 1),
             (alarm(101, 12, 4, 0, chan=0x08), 1), (alarm(101, 13, 0, 3, event=3), 0),
             (alarm(101, 14, 0, 4, chan=0x08, event=3), 1)]
    for payload, caps in steps:
        assert commit(store, items(("alarm", payload)), ctx)[2] == caps
    # an old alarm arriving late (a backlog) and a re-sent one change nothing
    assert commit(store, items(("alarm", alarm(101, 9, 4, 0)), ("alarm", steps[1][0])),
                  ctx)[2] == 0
    out = store.rows("SELECT msgtype, sink, level, body FROM outbox ORDER BY created_ms, identifier, sink")
    kinds = [(m, s, lv) for m, s, lv, _ in out]
    assert kinds == [("Alert", "http", 3), ("Alert", "spool", 3), ("Update", "broadcast", 4),
                     ("Update", "http", 4), ("Update", "spool", 4), ("Cancel", "http", 0),
                     ("Cancel", "spool", 0)]
    assert [b for m, s, _, b in out if s == "broadcast"] == ["liujiapo"]
    cancel = [b for m, s, _, b in out if m == "Cancel"][0]
    alert_id = [b for m, _s, _, b in out if m == "Alert"][0].split("<identifier>")[1].split("<")[0]
    assert alert_id == "stationhub.demo.101.11.0"
    # the Cancel references both the Alert and the Update
    refs = cancel.split("<references>")[1].split("<")[0].split()
    assert [r.split(",")[1] for r in refs] == [alert_id, "stationhub.demo.101.12.0"]
    assert store.count("warnings") == 0


@pytest.mark.parametrize("doc, why", [
    ({0: 1, 1: "demo", 2: "gw1", 3: 1, 4: 5, 5: [[101, []]], 7: {}}, "node_block"),
    ({0: 1, 1: "demo", 2: "gw1", 3: 1, 4: 5, 5: [[101, [[16, [[1, 0, 5, 0, ["x"]]]]]]],
      7: {}}, "neither int"),
    ({0: 1, 1: "demo", 2: "gw1", 3: -1, 4: 5, 5: [], 7: {}}, "key 3"),
    ({0: 3, 1: "demo", 2: "gw1", 3: 1, 4: 5, 5: [], 7: {}}, "schema version"),
    ({0: 2, 1: "demo", 2: "gw1", 3: 1, 4: 5, 5: [], 7: {}}, "come from the topic"),
    ({0: 2, 3: 1, 4: 5, 5: [[101, [[1, 0, 0, 0, 0, 0]]]]}, "group"),
    ({0: 2, 3: 1, 4: 5, 5: [[101, [[1, 0, 0, 1, 0, 0, [16, 5]]]]]}, "inconsistent"),
    ({0: 2, 3: 1, 4: 5, 5: [[101, [[1, 0, 0, 1, 0, 0, [16, 5, 1], [17, 5, 1]]]]]},
     "inconsistent"),                                       # two chan_runs, stride 0
    ({0: 2, 3: 1, 4: 5, 5: [[101, [[1, 0, 0, 1, 0, 0, [16, 2**31 - 1, 1]]]]]}, "32-bit"),
    ({0: 2, 3: 1, 4: 5, 5: [[101, [[1, 0, 0, 0, 0, 0, [16, [-1]]]]]]}, "fault"),
    ({0: 1, 1: "demo", 2: "gw1", 3: 1, 4: 5, 5: [[101, [[16, [[1, 0, 5, 0, [1 << 70]]]]]]],
      7: {}}, "neither int"),
    ({0: 1, 1: "demo", 2: "gw1", 3: 1, 4: 5, 5: [], 7: {1: 0, 2: 0, 4: 0}}, "lacks counter"),
])
def test_bad_batches_are_rejected_with_the_reason(doc, why):
    if doc[0] != 2:
        doc.setdefault(7, {k: 0 for k in range(1, 6)})
    if 7 in doc and not doc[7]:
        doc[7] = {k: 0 for k in range(1, 6)}
    with pytest.raises(uplink.Rejected, match=why):
        uplink.decode("data", "demo", "gw1", cbor2.dumps(doc))


def test_site_must_match_the_topic():
    doc = {0: 1, 1: "other", 2: "gw1", 3: 1, 4: 5, 5: [], 7: {k: 0 for k in range(1, 6)}}
    with pytest.raises(uplink.Rejected, match="do not match the topic"):
        uplink.decode("data", "demo", "gw1", cbor2.dumps(doc))
    uplink.decode("data", "other", "gw1", cbor2.dumps(doc))     # the same batch on its topic


def test_garbage_and_bad_alarms_are_rejected():
    with pytest.raises(uplink.Rejected, match="not CBOR"):
        uplink.decode("data", "demo", "gw1", b"\xff\x00garbage")
    a = cbor2.loads(alarm(101, 1, 3, 0))
    a[6] = 7
    with pytest.raises(uplink.Rejected, match="level"):
        uplink.decode("alarm", "demo", "gw1", cbor2.dumps(a))
    del a[15]
    a[6] = 3
    with pytest.raises(uplink.Rejected, match="key 15"):
        uplink.decode("alarm", "demo", "gw1", cbor2.dumps(a))


def test_topics():
    assert uplink.parse_topic("stations/demo/gw1/data") == ("demo", "gw1", "data")
    assert uplink.parse_topic("a/b/demo/gw1/alarm", "a/b") == ("demo", "gw1", "alarm")
    for t in ("stations/demo/gw1/cmd/x", "stations/demo/gw1/cmd-result", "other/demo/gw1/data",
              "stations//gw1/data"):
        assert uplink.parse_topic(t) is None
