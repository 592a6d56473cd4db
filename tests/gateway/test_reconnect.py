"""Issue 12, defect 9: after a broker outage the uplink reconnects as soon as the broker
accepts connections again (a TCP probe between back-off steps), and the alarm held
during the outage is the first thing delivered. A real Mosquitto is stopped and
restarted on the same port. The back-off here is an hour, so only the probe can bring
the uplink back: the tests wait for events (failed probes, the alarm), never for a time,
and their bounds only catch a hang. Latency figures: `python -m bench reconnect`."""
import threading
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


HANG_S = 60          # a bound that only catches a hang, never a speed claim
NO_TIMER_S = 3600.0  # a back-off no test outlives: only the probe can reconnect


@pytest.mark.parametrize("probe_s", [0.1])
def test_alarm_first_as_soon_as_the_broker_is_back(tmp_path, broker, subscriber, mk, probe_s):
    sub = subscriber()
    store = Store(tmp_path / "s.db")
    up = Uplink(store, UplinkSettings(mk.SITE, mk.GW, port=broker.port, max_age_s=0.05,
                                      backoff_min_s=NO_TIMER_S, backoff_max_s=NO_TIMER_S,
                                      probe_s=probe_s))
    probes = []                                      # each probe's answer, in order
    real_probe = up._probe
    up._probe = lambda: probes.append(real_probe()) or probes[-1]
    up.start()
    try:
        assert wait(lambda: up.connected, HANG_S)
        t0 = int(time.time())
        store.commit(mk.frame(101, 1, t0, [1, 2, 3]))
        assert sub.wait_for(lambda s: len(s.readings()) == 3, HANG_S)
        broker.stop()
        assert wait(lambda: not up.connected, HANG_S)
        for seq in range(2, 12):                     # a backlog piles up in the outage
            store.commit(mk.frame(101, seq, t0 + seq, [seq] * 50))
        store.commit([*mk.frame(101, 12, t0 + 12, [99]), mk.alarm(101, 12, t0 + 12)])
        n_failed = probes.count(False)               # several probes fail meanwhile
        assert wait(lambda: probes.count(False) >= n_failed + 3, HANG_S), probes
        n_before = len(sub.snapshot())
        broker.start()
        assert sub.wait_for(lambda s: len(s.alarms()) == 1, HANG_S), \
            "no alarm after the broker's return: the uplink waited for its back-off"
        after = [t for t, _p, _ms, _ct in sub.snapshot()[n_before:]]
        first_data = next((i for i, t in enumerate(after) if t.endswith("/data")), len(after))
        assert after.index("stations/%s/%s/alarm" % (mk.SITE, mk.GW)) < first_data
        # the first connect is the only one the timer made: with an hour's back-off the
        # way back can only have been the probe, however long the machine took
        assert up.reconnects_by.get("timer") == 1 and up.reconnects_by.get("probe", 0) >= 1, \
            up.reconnects_by
        # and the backlog follows
        assert sub.wait_for(lambda s: len(s.readings()) >= 3 + 500 + 1, HANG_S)
    finally:
        up.stop(1.0)
        store.close()


class CountingEvent(threading.Event):
    """The network thread's stop event: every wait() is one idle turn of its loop (one
    probe interval), so a test can watch the loop go round instead of the clock."""

    def __init__(self):
        super().__init__()
        self.waits = 0

    def wait(self, timeout=None):
        self.waits += 1
        return super().wait(timeout)


def test_a_broker_that_refuses_the_connect_is_not_hammered(tmp_path, broker, mk):
    """The probe succeeds (the port answers) but the CONNECT is refused: the uplink waits
    its back-off instead of reconnecting every probe interval. Watched over 40 turns of
    the network loop and at least twice the probes' own retry spacing, so a loaded
    machine that turns the loop slowly cannot hide a reconnect storm."""
    from gateway.uplink import PROBE_RETRY_S
    conf = broker.conf.read_text().replace("allow_anonymous true", "allow_anonymous false")
    broker.stop()
    broker.conf.write_text(conf)
    broker.start()
    store = Store(tmp_path / "s.db")
    up = Uplink(store, UplinkSettings(mk.SITE, mk.GW, port=broker.port,
                                      backoff_min_s=NO_TIMER_S, backoff_max_s=NO_TIMER_S,
                                      probe_s=0.05))
    up._net_stop = turns = CountingEvent()
    up.start()
    try:
        assert wait(lambda: up._refused, HANG_S), "the broker's refusal was not seen"
        t_refused, n_turns = time.monotonic(), turns.waits
        assert wait(lambda: turns.waits >= n_turns + 40
                    and time.monotonic() - t_refused >= 2 * PROBE_RETRY_S, HANG_S)
        assert up.reconnects_by == {"timer": 1}, up.reconnects_by   # the first connect only
        assert not up.connected
    finally:
        up.stop(0.5)
        store.close()
