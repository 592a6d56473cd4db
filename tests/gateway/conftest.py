"""Gateway-only fixtures: a store on a temp file, an MQTT subscriber that collects and
decodes what the gateway publishes, and readings/alarms made to order."""
import threading
import time

import cbor2
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway import uplink_schema
from gateway.batcher import decode_batch_readings
from gateway.records import Alarm, FrameSeen, Reading
from gateway.store import Store
from gateway.uplink import Uplink, UplinkSettings

SITE, GW = "lushi", "gw1"
RAIN = 1 << 3            # rain.0
_KINDS = {"data": "batch", "alarm": "alarm", "status": "status", "cmd-result": "cmd_result"}
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

    def wait_for(self, pred, timeout=60.0):
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

    def schema_errors(self, max_batches=24):
        """The messages received, checked against protocol/uplink.cddl at the end of the
        test (the check takes ~0.5 ms per reading: too slow for paho's network thread).
        Every alarm, status and command result; of the data batches, every one when there
        are at most `max_batches`, else that many spread evenly from first to last (a
        backlog drain publishes hundreds; tests/gateway/test_uplink_schema.py checks
        arbitrary batches)."""
        msgs = [(t, p) for t, p, _, _ in self.snapshot() if _KINDS.get(t.rsplit("/", 1)[-1])]
        data = [i for i, (t, _) in enumerate(msgs) if t.endswith("/data")]
        if len(data) > max_batches:
            keep = {data[round(k * (len(data) - 1) / (max_batches - 1))]
                    for k in range(max_batches)}
            msgs = [m for i, m in enumerate(msgs) if i in keep or not m[0].endswith("/data")]
        out, seen = [], set()
        for topic, payload in msgs:
            kind = _KINDS[topic.rsplit("/", 1)[-1]]
            if payload in seen:
                continue
            seen.add(payload)
            try:
                uplink_schema.check(kind, payload)
            except uplink_schema.SchemaError as e:
                out.append("%s: %s" % (topic, e))
        return out


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
    errors = [e for s in subs for e in s.schema_errors()]
    assert not errors, "the gateway published messages that break protocol/uplink.cddl: %s" % (
        errors[:3],)


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


@pytest.fixture
def site_base():
    """test_config.py's BASE site text and its key writer, for tests of further config
    sections (tests/gateway is not a package, so it is loaded by path)."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location(
        "gw_test_config", Path(__file__).resolve().parent / "test_config.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.BASE, mod.write_keys
