"""Faults with real parts: the broker stopped and kill -9'd while the gateway publishes,
the gateway process kill -9'd mid-flow (repeatedly), an alarm during a big backlog."""
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import cbor2

from gateway.records import Reading
from gateway.store import Store

ROOT = Path(__file__).resolve().parents[2]


def first_arrival_order_per_node(readings):
    seen, order = set(), {}
    for node, seq, idx, *_ in readings:
        if (node, seq, idx) not in seen:
            seen.add((node, seq, idx))
            order.setdefault(node, []).append((seq, idx))
    return order


def wait(pred, timeout):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_broker_stop_and_kill_while_publishing(broker, make_store, make_uplink, subscriber, mk):
    sub = subscriber()
    broker.save()                    # the subscriber's session is on disk before any kill -9
    store = make_store()
    up = make_uplink(store, max_readings=40)
    committed = set()
    stop = threading.Event()

    def produce():
        seq = {n: 0 for n in (11, 12, 13)}
        while not stop.is_set():
            for n in seq:
                seq[n] += 1
                recs = mk.frame(n, seq[n], int(time.time()) - 30, [seq[n] * 10 + k
                                                                     for k in range(4)])
                store.commit(recs)
                committed.update((r.node, r.seq, r.idx) for r in recs[1:])
            time.sleep(0.005)

    def acks_after(n_connects):
        """Wait until the uplink has connected n_connects times and has had a PUBACK on
        that connection: each fault below hits a gateway that is really publishing, on
        a machine of any speed (events, not sleeps)."""
        n = up.stats()["readings_acked"]
        assert wait(lambda: up.stats()["connects"] >= n_connects
                    and up.stats()["readings_acked"] > n, 60), up.stats()

    th = threading.Thread(target=produce)
    th.start()
    try:
        acks_after(1)
        broker.stop()                                   # orderly stop
        assert wait(lambda: not up.connected, 60)
        broker.start()
        acks_after(2)
        broker.save()                                   # the broker crashes with its sessions
        broker.stop(kill=True)                          # kill -9
        assert wait(lambda: not up.connected, 60)
        broker.start()
        acks_after(3)
    finally:
        stop.set()
        th.join(60)                 # ends within one commit; the set must be final below
        assert not th.is_alive()
    assert sub.wait_for(lambda s: s.keys() >= committed, 60), \
        "lost: %d readings" % len(committed - sub.keys())
    assert up.stats()["connects"] >= 3
    got = sub.readings()
    # duplicates are allowed only as exact copies with the same dedup key
    by_key = {}
    for r in got:
        assert by_key.setdefault(r[:3], r) == r
    # order per node: first arrivals come in commit (seq, idx) order
    for node, order in first_arrival_order_per_node(got).items():
        assert order == sorted(order), "node %d out of order" % node
    # a batch seen twice is the same batch (same seq, same bytes)
    seen = {}
    for t, p, _, _ in sub.snapshot():
        if t.endswith("/data"):
            assert seen.setdefault(cbor2.loads(p)[3], p) == p


CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, %(root)r)
    from gateway.records import FrameSeen, Reading
    from gateway.store import Store
    from gateway.uplink import Uplink, UplinkSettings
    path, port, node, seq = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    store = Store(path)
    up = Uplink(store, UplinkSettings("lushi", "gw1", port=port, max_readings=25,
                                      max_age_s=0.01, backoff_min_s=0.05,
                                      backoff_max_s=0.2)).start()
    if seq == 0:                          # drain mode: publish what is left, then stay
        while True:
            time.sleep(1)
    while True:
        t = int(time.time()) - 20
        store.commit([FrameSeen(node, seq)] + [Reading(node, seq, k, 24, t + k, seq * 100 + k)
                                               for k in range(6)])
        sys.stdout.write("%%d\\n" %% seq)
        sys.stdout.flush()
        seq += 1
        time.sleep(0.002)
""") % {"root": str(ROOT)}


def test_gateway_kill_9_repeatedly_loses_nothing(broker, subscriber, tmp_path):
    sub = subscriber()
    path = str(tmp_path / "store.db")
    rnd = random.Random(7)
    committed = set()
    seq = 1
    for _ in range(5):
        p = subprocess.Popen([sys.executable, "-c", CHILD, path, str(broker.port), "21", str(seq)],
                             stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60     # a hang guard: it stops at `want` lines
        acked = []
        want = rnd.randint(20, 120)
        while len(acked) < want and time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            acked.append(int(line))
        os.kill(p.pid, 9)                               # mid-flow: commits and publishes
        p.wait(5)
        p.stdout.close()
        assert acked, "the child committed nothing"
        committed.update(acked)
        seq = acked[-1] + 1     # a frame committed but not yet reported is a harmless dup
        s = Store(path)                                 # integrity check runs at open
        assert s.integrity_ok()
        s.close()
    p = subprocess.Popen([sys.executable, "-c", CHILD, path, str(broker.port), "21", "0"])
    try:
        want = {(21, q, k) for q in committed for k in range(6)}
        assert sub.wait_for(lambda s: s.keys() >= want, 60), \
            "lost %d readings of committed frames" % len(want - sub.keys())
        for r in sub.readings():
            assert r[5] == r[1] * 100 + r[2]
        seen = {}
        for t, pl, _, _ in sub.snapshot():
            if t.endswith("/data"):
                assert seen.setdefault(cbor2.loads(pl)[3], pl) == pl, "batch seq reused"
    finally:
        p.kill()
        p.wait(5)


def test_alarm_overtakes_a_draining_backlog(broker, make_store, make_uplink, subscriber, mk):
    """The alarm waits behind at most the batches already in flight. Staged with the
    broker frozen (SIGSTOP) mid-drain: no PUBACK comes back, so the batches handed to
    paho before the alarm's commit are exactly those in the store's unacked table, and
    every later batch must arrive after the alarm. Positions in the subscriber's stream
    would depend on how fast each side ran; batch seqs do not."""
    sub = subscriber()
    store = make_store()
    now = int(time.time())
    t0 = now - 7 * 86400
    for f in range(400):                                # 200,000 old readings
        store.commit([Reading(1 + f % 50, 1 + f // 50, k, mk.LEVEL, t0 + f * 600 + k * 60,
                              1000 + k) for k in range(500)])
    n_batches = 200_000 // 2000
    up = make_uplink(store, max_readings=2000, inflight=8)
    assert sub.wait_for(lambda s: len(s.batches()) >= 1, 60), "drain did not start"
    broker.proc.send_signal(signal.SIGSTOP)
    try:
        # frozen: the window fills and stays full (8 in flight, nothing acked)
        assert wait(lambda: up.stats()["inflight_batches"] == 8, 60), up.stats()
        store.commit([mk.alarm(7, 99_999, now)])
        taken = [b.seq for b in store.unacked_batches()]
    finally:
        broker.proc.send_signal(signal.SIGCONT)
    last_before = max(taken)
    assert len(taken) <= 8, taken            # the window: all the alarm may wait behind
    assert last_before < n_batches, "the backlog drained before the freeze: nothing to overtake"
    assert sub.wait_for(lambda s: len(s.alarms()) == 1, 60)
    assert sub.wait_for(lambda s: len({b[3] for b in s.batches()}) >= n_batches, 120)
    msgs = sub.snapshot()
    pos = next(i for i, m in enumerate(msgs) if m[0].endswith("/alarm"))
    ahead = {cbor2.loads(m[1])[3] for m in msgs[:pos] if m[0].endswith("/data")}
    assert max(ahead) <= last_before, \
        "batches %s, taken after the alarm, went out before it" % sorted(
            q for q in ahead if q > last_before)
    assert any(cbor2.loads(m[1])[3] > last_before for m in msgs[pos:] if m[0].endswith("/data"))
    assert up.alarms.stats()["acked"] == 1


def test_broker_refusal_is_not_an_ack(broker, make_store, make_uplink, subscriber, mk, tmp_path):
    """A v5 PUBACK with a failure reason (here: not authorised by an ACL) must leave the
    batch in the store to be published again; once allowed, it goes through."""
    broker.stop()
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite stations/lushi/gw1/status\ntopic read #\n")   # no data
    broker.conf.write_text(broker.conf.read_text() + "acl_file %s\n" % acl)
    broker.start()
    sub = subscriber()
    store = make_store()
    up = make_uplink(store, retry_refused_s=0.3)
    store.commit(mk.frame(4, 1, int(time.time()), [1, 2]))
    wait(lambda: any(r[1] == "b" for r in up._retry), 60)
    assert any(r[1] == "b" for r in up._retry), "the refused batch was not queued for a retry"
    assert store.stats()["lanes"]["unacked_batches"]["depth"] == 1
    assert up.stats()["readings_acked"] == 0
    acl.write_text("topic readwrite #\n")                 # now allowed
    broker.proc.send_signal(1)                          # SIGHUP: Mosquitto reloads the ACL
    assert sub.wait_for(lambda s: s.keys() == {(4, 1, 0), (4, 1, 1)}, 60)
    assert sub.wait_for(lambda s: up.stats()["readings_acked"] == 2, 60)
    assert store.stats()["lanes"]["unacked_batches"]["depth"] == 0
