"""Issue 12, defect 9: after a broker outage the uplink reconnects as soon as the broker
accepts connections again (a TCP probe between back-off steps), and the alarm held
during the outage is the first thing delivered. A real Mosquitto is stopped and
restarted on the same port. The back-off here is a minute, so only the probe can bring
the uplink back within the test's 20 s guard; latency figures: `python -m bench reconnect`."""
import time

import pytest

from gateway.store import Store
from gateway.uplink import Uplink, UplinkSettings

pytestmark = pytest.mark.broker


def wait(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


@pytest.mark.parametrize("probe_s", [0.1])
def test_alarm_first_as_soon_as_the_broker_is_back(tmp_path, broker, subscriber, mk, probe_s):
    sub = subscriber()
    store = Store(tmp_path / "s.db")
    up = Uplink(store, UplinkSettings(mk.SITE, mk.GW, port=broker.port, max_age_s=0.05,
                                      backoff_min_s=60.0, backoff_max_s=120.0,
                                      probe_s=probe_s)).start()
    try:
        assert wait(lambda: up.connected, 10)
        t0 = int(time.time())
        store.commit(mk.frame(101, 1, t0, [1, 2, 3]))
        assert sub.wait_for(lambda s: len(s.readings()) == 3, 10)
        broker.stop()
        assert wait(lambda: not up.connected, 10)
        for seq in range(2, 12):                     # a backlog piles up in the outage
            store.commit(mk.frame(101, seq, t0 + seq, [seq] * 50))
        store.commit([*mk.frame(101, 12, t0 + 12, [99]), mk.alarm(101, 12, t0 + 12)])
        time.sleep(1.0)                              # several probes fail meanwhile
        n_before = len(sub.snapshot())
        broker.start()
        assert sub.wait_for(lambda s: len(s.alarms()) == 1, 20), \
            "no alarm within 20 s of the broker's return: the uplink waited for its back-off"
        after = [t for t, _p, _ms, _ct in sub.snapshot()[n_before:]]
        first_data = next((i for i, t in enumerate(after) if t.endswith("/data")), len(after))
        assert after.index("stations/%s/%s/alarm" % (mk.SITE, mk.GW)) < first_data
        assert up.reconnects_by.get("probe", 0) >= 1
        # and the backlog follows
        assert sub.wait_for(lambda s: len(s.readings()) >= 3 + 500 + 1, 20)
    finally:
        up.stop(1.0)
        store.close()


def test_a_broker_that_refuses_the_connect_is_not_hammered(tmp_path, broker, mk):
    """The probe succeeds (the port answers) but the CONNECT is refused: the uplink waits
    its back-off instead of reconnecting every probe interval."""
    conf = broker.conf.read_text().replace("allow_anonymous true", "allow_anonymous false")
    broker.stop()
    broker.conf.write_text(conf)
    broker.start()
    store = Store(tmp_path / "s.db")
    up = Uplink(store, UplinkSettings(mk.SITE, mk.GW, port=broker.port, backoff_min_s=2.0,
                                      backoff_max_s=4.0, probe_s=0.05)).start()
    try:
        time.sleep(1.5)
        tries = sum(up.reconnects_by.values())
        assert 1 <= tries <= 2, up.reconnects_by      # first connect (+ one timer retry)
        assert not up.connected
    finally:
        up.stop(0.5)
        store.close()
