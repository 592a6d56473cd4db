"""Gateway-only fixtures: a store on a temp file, an MQTT subscriber that collects and
decodes what the gateway publishes, and readings/alarms made to order."""
import threading
import time

import cbor2
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.batcher import decode_batch_readings
from gateway.records import Alarm, FrameSeen, Reading
from gateway.store import Store
from gateway.uplink import Uplink, UplinkSettings

SITE, GW = "lushi", "gw1"
RAIN = 1 << 3            # rain.0
LEVEL = 3 << 3           # water_level.0


class Subscriber:
    """A real MQTT client on the broker with a persistent session, so messages queued
    while it or the broker was away still arrive. Keeps every message in order."""

    def __init__(self, port, topic="stations/#", client_id="test-sub"):
        self.msgs = []                      # (topic, payload, recv_ms, content_type)
        self._cond = threading.Condition()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv5)
        c.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        c.on_message = self._on_message
        self._subscribed = threading.Event()
        c.on_subscribe = lambda *a: self._subscribed.set()
        c.reconnect_delay_set(0.05, 0.2)
        p = Properties(PacketTypes.CONNECT)
        p.SessionExpiryInterval = 3600
        c.connect("127.0.0.1", port, keepalive=5, clean_start=False, properties=p)
        c.loop_start()
        self.client = c
        assert self._subscribed.wait(60), "subscriber did not get its SUBACK"

    def _on_message(self, client, userdata, msg):
        ct = getattr(msg.properties, "ContentType", None) if msg.properties else None
        with self._cond:
            self.msgs.append((msg.topic, msg.payload, time.time() * 1000.0, ct))
            self._cond.notify_all()

    def wait_for(self, pred, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
        return True

    def snapshot(self):
        with self._cond:
            return list(self.msgs)

    def batches(self):
        return [cbor2.loads(p) for t, p, _, _ in self.snapshot() if t.endswith("/data")]

    def readings(self):
        """[(node, seq, idx, chan, t, value, flags)] in arrival order, duplicates kept."""
        out = []
        for t, p, _, _ in self.snapshot():
            if t.endswith("/data"):
                out.extend(decode_batch_readings(p)[1])
        return out

    def keys(self):
        return {r[:3] for r in self.readings()}

    def alarms(self):
        return [cbor2.loads(p) for t, p, _, _ in self.snapshot() if t.endswith("/alarm")]

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber(broker):
    subs = []

    def make(**kw):
        s = Subscriber(broker.port, **kw)
        subs.append(s)
        return s
    yield make
    for s in subs:
        s.close()


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "store.db"


@pytest.fixture
def make_store(store_path):
    opened = []

    def make(path=store_path, **kw):
        s = Store(path, **kw)
        opened.append(s)
        return s
    yield make
    for s in opened:
        s.close()


@pytest.fixture
def make_uplink(broker):
    started = []

    def make(store, **kw):
        kw.setdefault("backoff_min_s", 0.05)
        kw.setdefault("backoff_max_s", 0.5)
        kw.setdefault("max_age_s", 0.05)
        settings = UplinkSettings(SITE, GW, port=broker.port, **kw)
        u = Uplink(store, settings).start()
        started.append(u)
        return u
    yield make
    for u in started:
        u.stop(timeout=1.0)


class Make:
    """Record makers for tests (a fixture, so test files need no import from here)."""
    SITE, GW, RAIN, LEVEL = SITE, GW, RAIN, LEVEL

    @staticmethod
    def frame(node, seq, t0, values, chan=LEVEL, step=10, idx0=0):
        """The records of one radio frame: FrameSeen plus one reading per value."""
        recs = [FrameSeen(node, seq)]
        for k, v in enumerate(values):
            recs.append(Reading(node, seq, idx0 + k, chan, t0 + k * step, v))
        return recs

    @staticmethod
    def alarm(node, seq, t, level=4, index=0, rx_ms=None):
        return Alarm(node, seq, index, 1, level, 0, LEVEL, 7, 1, 4200, 4000, t,
                     int(time.time() * 1000) if rx_ms is None else rx_ms)


@pytest.fixture
def mk():
    return Make
