"""Uplink against a real Mosquitto: what the subscriber decodes is what was committed."""
import time

import cbor2

from gateway.records import NodeStatus
from gateway.uplink import Backoff


def test_batches_decode_to_committed_values_times_and_keys(broker, make_store, make_uplink,
                                                           subscriber, mk):
    sub = subscriber()
    store = make_store()
    up = make_uplink(store)
    now = int(time.time())
    sent = []
    for seq in range(1, 21):
        recs = mk.frame(101, seq, now - 60, [1000 + seq * 10 + k for k in range(5)], step=12)
        recs += mk.frame(101, seq, now - 60, [k % 3 for k in range(5)], chan=mk.RAIN, idx0=5)[1:]
        sent += [r for r in recs if type(r).__name__ == "Reading"]
        store.commit(recs)
    store.commit([NodeStatus(101, now, battery_mv=3711, fw="1.2.0", seq_gaps=0)])
    want = {(r.node, r.seq, r.idx): (r.chan, r.t, r.value) for r in sent}
    assert sub.wait_for(lambda s: s.keys() >= set(want), 60), "not all readings arrived"
    got = {r[:3]: (r[3], r[4], r[5]) for r in sub.readings()}
    assert got == want
    batches = sub.batches()
    assert [b[3] for b in batches] == list(range(1, len(batches) + 1))
    assert all(b[0] == 2 and 1 not in b and 2 not in b for b in batches)
    # counters in the first batch, then only when changed or a minute on (none here)
    assert set(batches[0][7]) == {1, 2, 3, 4, 5}
    assert all(7 not in b for b in batches[1:] if b[4] - batches[0][4] < 60)
    assert sub.wait_for(lambda s: any(6 in b for b in s.batches()), 60)
    st = [m for b in sub.batches() for m in b.get(6, [])]
    assert st == [{1: 101, 2: now, 3: 3711, 9: "1.2.0", 12: 0}]
    # v5: alarms and status say they are CBOR; data batches, under their alias, do not
    # (the subscriber sees the full topic: the broker resolves the alias)
    assert {(tp.rsplit("/", 1)[1], ct) for tp, _, _, ct in sub.snapshot()} <= {
        ("data", None), ("status", "application/cbor")}
    assert up.data_topic_bytes == len(up.topics.data)        # sent once, then the alias
    assert sub.wait_for(lambda s: up.stats()["readings_acked"] == len(sent), 60)
    # the status-only batch carries no reading: its PUBACK may come after the last
    # reading's (seen under load), so wait for it rather than look once
    assert sub.wait_for(lambda s: store.stats()["lanes"]["unacked_batches"]["depth"] == 0, 60)
    lanes = store.stats()["lanes"]
    assert lanes["live"]["depth"] == lanes["backlog"]["depth"] == 0


def test_runs_compress_a_regular_frame(broker, make_store, make_uplink, subscriber, mk):
    sub = subscriber()
    store = make_store()
    make_uplink(store)
    now = int(time.time())
    store.commit(mk.frame(7, 3, now - 100, list(range(50, 60)), step=10))
    assert sub.wait_for(lambda s: len(s.batches()) == 1, 60)
    (b,) = sub.batches()
    assert b[5] == [[7, [[3, 0, now - 100 - b[4], 10, 0, 0, [mk.LEVEL, 50] + [1] * 9]]]]


def test_birth_is_retained_and_alarm_published_alone(broker, make_store, make_uplink, subscriber,
                                                     mk):
    store = make_store()
    t = int(time.time())
    store.commit(mk.frame(5, 9, t, [1]) + [mk.alarm(5, 9, t, level=3)])
    up = make_uplink(store)                 # its birth lists node 5 as last seen at t
    late = subscriber(client_id="late")   # joins after the birth: gets it as retained
    assert late.wait_for(lambda s: any(m[0].endswith("/status") for m in s.snapshot()), 60)
    status = [cbor2.loads(p) for tp, p, _, _ in late.snapshot() if tp.endswith("/status")][-1]
    assert status[3] == 1 and status[1] == mk.SITE and status[2] == mk.GW
    assert status[6] == store.last_seen() and set(status[6]) == {5}
    sub = subscriber(client_id="sub2")
    store.commit(mk.frame(5, 10, t, [2]) + [mk.alarm(5, 10, t, level=4)])
    assert sub.wait_for(lambda s: len(s.alarms()) == 1, 60)
    a = sub.alarms()[0]
    assert (a[3], a[4], a[15], a[5], a[6], a[8], a[11], a[12], a[13]) == \
        (5, 10, 0, 1, 4, mk.LEVEL, 4200, 4000, t)
    assert sub.wait_for(lambda s: store.stats()["lanes"]["alarm"]["depth"] == 0, 60)
    assert up.alarms.stats()["acked"] == 2


def test_mqtt_311_option(broker, make_store, make_uplink, subscriber, mk):
    sub = subscriber()
    store = make_store()
    make_uplink(store, protocol="v311")
    now = int(time.time())
    store.commit(mk.frame(8, 1, now, [5, 6, 7]))
    assert sub.wait_for(lambda s: len(s.keys()) == 3, 60)
    assert {ct for _, _, _, ct in sub.snapshot()} == {None}


def test_clean_stop_publishes_offline_status(broker, make_store, make_uplink, subscriber):
    store = make_store()
    up = make_uplink(store)
    assert _wait(lambda: up.connected, 60)
    up.stop(timeout=30)
    sub = subscriber()
    assert sub.wait_for(lambda s: any(m[0].endswith("/status") for m in s.snapshot()), 60)
    status = [cbor2.loads(p) for tp, p, _, _ in sub.snapshot() if tp.endswith("/status")][-1]
    assert status[3] == 0


def test_backoff_grows_with_jitter_and_resets():
    draws = iter([0.0, 1.0, 0.5, 1.0, 1.0, 1.0, 0.0])
    b = Backoff(1.0, 8.0, rand=lambda: next(draws))
    assert [b.next() for _ in range(6)] == [0.5, 2.0, 3.0, 8.0, 8.0, 8.0]
    b.reset()
    assert b.next() == 0.5


def _wait(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_broker_state_is_kept_in_the_store_for_status(broker, make_store, make_uplink):
    store = make_store()
    make_uplink(store)
    assert _wait(lambda: store.stats()["broker_state"] == "connected", 60)
    broker.stop()
    assert _wait(lambda: store.stats()["broker_state"] == "disconnected", 60)
    broker.start()
    assert _wait(lambda: store.stats()["broker_state"] == "connected", 60)


SITE_TOML = """
[site]
id = "valley-3"
gateway_id = "gw7"
[storage]
path = "store.db"
[batch]
max_readings = 1234
max_age_s = 0.2
[mqtt]
host = "127.0.0.1"
port = %d
protocol = "v311"
client_id = "gw7-client"
topic_prefix = "county/geo"
inflight = 9
[[modbus.buses]]
name = "net"
type = "tcp"
host = "127.0.0.1"
port = 1502
[[modbus.devices]]
name = "gauge"
bus = "net"
node = 9001
device_id = 1
poll_s = 5
[[modbus.devices.points]]
chan = "water_level.0"
table = "holding"
address = 4
type = "i16"
"""


def test_settings_from_the_site_config_reach_the_broker(broker, make_store, subscriber, mk,
                                                        tmp_path):
    from gateway import config as gconfig
    from gateway.uplink import Uplink, UplinkSettings
    cfg = gconfig.parse(SITE_TOML % broker.port, str(tmp_path / "site.toml"))
    s = UplinkSettings.from_config(cfg, backoff_min_s=0.05)
    assert (s.site, s.gateway_id, s.protocol, s.client_id, s.inflight, s.max_readings,
            s.max_age_s) == ("valley-3", "gw7", "v311", "gw7-client", 9, 1234, 0.2)
    sub = subscriber(topic="county/geo/#")
    store = make_store()
    up = Uplink(store, s).start()
    try:
        store.commit(mk.frame(9001, 1, int(time.time()), [3210]))
        assert sub.wait_for(lambda x: any(t == "county/geo/valley-3/gw7/data"
                                          for t, *_ in x.snapshot()), 60)
        assert sub.keys() == {(9001, 1, 0)}
    finally:
        up.stop(timeout=1.0)
