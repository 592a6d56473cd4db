"""Data batches under an MQTT 5 topic alias against a real Mosquitto (SPEC §9.1): the
full topic once per connection, an empty topic after; batches that were in flight when
the connection died reach the subscriber after the reconnect (an alias does not outlive
its connection, so they must go out with their full topic again); a broker that allows
no alias gets full topics."""
import signal
import time

from gateway.batcher import decode_batch_readings


def _wait(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def _commit_frames(store, mk, node, seqs, now):
    for seq in seqs:
        store.commit(mk.frame(node, seq, now - 30, [100 + seq, 101 + seq, 102 + seq], step=5))


def test_alias_once_per_connection_and_in_flight_batches_survive_a_broker_kill(
        broker, make_store, make_uplink, subscriber, mk):
    sub = subscriber()
    store = make_store()
    up = make_uplink(store)
    now = int(time.time())
    _commit_frames(store, mk, 11, range(1, 6), now)
    assert sub.wait_for(lambda s: len(s.keys()) == 15, 60)
    assert _wait(lambda: up.stats()["unacked_messages"] == 0, 30)
    topic = len(up.topics.data)
    assert up.data_topic_bytes == topic           # one full topic, then the alias
    assert up.connects == 1

    # Freeze the broker: batches go out under the alias and wait for PUBACKs that do
    # not come; then kill it and start it again. paho re-sends them on the new connection.
    broker.proc.send_signal(signal.SIGSTOP)
    for seq in range(6, 16):
        _commit_frames(store, mk, 11, [seq], now)
        _wait(lambda n=seq - 5: up.stats()["inflight_batches"] >= n, 2)
    assert _wait(lambda: up.stats()["inflight_batches"] >= 2, 30), up.stats()
    broker.stop(kill=True)
    broker.start()
    want = {(11, s, i) for s in range(1, 16) for i in range(3)}
    assert sub.wait_for(lambda s: s.keys() >= want, 60), sorted(want - sub.keys())
    assert _wait(lambda: up.stats()["unacked_messages"] == 0, 30), up.stats()
    # the re-sent batches took their full topic back (no "topic alias invalid" loop)
    assert up.data_topic_bytes >= 2 * topic
    assert up.connects <= 3, up.connects
    got = {r[:3]: r[5] for r in sub.readings()}
    assert got == {(11, s, i): 100 + s + i for s in range(1, 16) for i in range(3)}


def test_a_broker_without_aliases_gets_full_topics(broker, make_store, make_uplink, subscriber,
                                                   mk):
    broker.stop()
    broker.conf.write_text(broker.conf.read_text() + "max_topic_alias 0\n")
    broker.start()
    sub = subscriber()
    store = make_store()
    up = make_uplink(store)
    now = int(time.time())
    for seq in range(1, 4):
        _commit_frames(store, mk, 12, [seq], now)
        assert sub.wait_for(lambda s, n=seq: len(s.keys()) == 3 * n, 60)
    assert _wait(lambda: up.stats()["batches_acked"] == 3, 30)
    assert up.data_topic_bytes == 3 * len(up.topics.data)
    assert all(decode_batch_readings(p)[0][0] == 2 for t, p, _, _ in sub.snapshot()
               if t.endswith("/data"))


def test_batch_schema_1_for_consumers_not_yet_on_2(broker, make_store, make_uplink, subscriber,
                                                   mk):
    sub = subscriber()
    store = make_store()
    make_uplink(store, batch_schema=1)
    now = int(time.time())
    _commit_frames(store, mk, 13, [1, 2], now)
    assert sub.wait_for(lambda s: len(s.keys()) == 6, 60)
    batches = sub.batches()
    assert all(b[0] == 1 and b[1] == mk.SITE and b[2] == mk.GW and 7 in b for b in batches)
    assert sorted(r[5] for r in sub.readings()) == [101, 102, 102, 103, 103, 104]
