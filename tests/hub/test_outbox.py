"""CAP delivery from the durable outbox: HTTP retried until the endpoint takes it,
nothing lost when the hub stops before delivering, MQTT on PUBACK, the village
broadcast coil set on red for the station's zone."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hubdata import alarm
from hubproc import wait_until
from lxml import etree

from hil.demo import ModbusSim
from hub import outbox, uplink
from hub.ingest import Context, commit
from hub.stations import load
from hub.store import open_store

HERE = Path(__file__).resolve().parent
SCHEMA = etree.XMLSchema(etree.parse(str(HERE / "data" / "CAP-v1.2.xsd")))
STATIONS = load(str(HERE.parents[1] / "hub" / "examples" / "stations.csv"))


class Endpoint:
    """A warning-release endpoint on loopback that refuses the first `fail` POSTs."""

    def __init__(self, fail=0):
        self.got, self.fail = [], fail
        ep = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if ep.fail > 0:
                    ep.fail -= 1
                    self.send_response(503)
                else:
                    ep.got.append((self.headers["X-CAP-Identifier"],
                                   self.headers["Content-Type"], body))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d/cap" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def raise_alarms(url, sinks, broadcast=False, levels=((3, 0), (4, 3))):
    s = open_store(url)
    s.init_schema()
    ctx = Context(STATIONS, "centre@county.example", "county", sinks, broadcast)
    for i, (lv, prev) in enumerate(levels):
        doc = uplink.decode("alarm", "demo", "gw1", alarm(101, 50 + i, lv, prev))
        commit(s, [("alarm", "demo", "gw1", doc, 1)], ctx)
    return s, ctx


def test_http_retries_and_survives_a_restart(tmp_path, db_url):
    ep = Endpoint(fail=3)
    try:
        s, ctx = raise_alarms(db_url, ("http",))
        # the hub "stops" before delivering anything: a new store, a new dispatcher
        s.close()
        s = open_store(db_url)
        d = outbox.Dispatcher(s, {"http": outbox.HttpSink(ep.url)}, threading.Event(),
                              retry_base_ms=0)
        while d.run_once():
            pass
        ids = [i for i, _, _ in ep.got]
        assert ids == ["county.demo.101.50.0", "county.demo.101.51.0"]
        for _, ctype, body in ep.got:
            assert ctype == "application/cap+xml"
            SCHEMA.assertValid(etree.fromstring(body))
        assert s.rows("SELECT COUNT(*), SUM(attempts) FROM outbox WHERE sent_ms IS NOT NULL") == \
            [(2, 5)]
        assert d.run_once() == 0          # delivered once, not again
        s.close()
    finally:
        ep.close()


def test_unreachable_endpoint_keeps_the_alert_with_backoff(tmp_path):
    url = "sqlite:///%s" % (tmp_path / "hub.db")
    s, _ = raise_alarms(url, ("http",), levels=((3, 0),))
    d = outbox.Dispatcher(s, {"http": outbox.HttpSink("http://127.0.0.1:9/none", timeout_s=1)},
                          threading.Event())
    d.run_once()
    (att, nxt, sent, err), = s.rows("SELECT attempts, next_ms, sent_ms, error FROM outbox")
    assert att == 1 and sent is None and "127.0.0.1:9" in err
    assert d.run_once() == 0              # not due again before its backoff


@pytest.mark.broker
def test_mqtt_sink_and_broadcast_coil(broker, tmp_path):
    got = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="cap-listener",
                    protocol=mqtt.MQTTv5)
    c.on_message = lambda c_, u, m: got.append((m.topic, m.payload, m.properties.ContentType))
    c.connect("127.0.0.1", broker.port)
    c.subscribe("warnings/cap/#", qos=1)
    c.loop_start()
    pubc = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hub-cap",
                       protocol=mqtt.MQTTv5)
    pubc.connect("127.0.0.1", broker.port)
    pubc.loop_start()
    relay = ModbusSim(device_id=3, values=[0] * 8).start()
    try:
        url = "sqlite:///%s" % (tmp_path / "hub.db")
        s, _ = raise_alarms(url, ("mqtt",), broadcast=True)
        hook = outbox.BroadcastHook({"liujiapo": 5, "xihe": 6}, "127.0.0.1", relay.port, 3)
        d = outbox.Dispatcher(s, {"mqtt": outbox.MqttSink(pubc, "warnings/cap"),
                                  "broadcast": hook}, threading.Event())
        assert relay.get(1, 5)[0] == 0
        while d.run_once():
            pass
        assert relay.get(1, 5)[0] == 1 and relay.get(1, 6)[0] == 0   # red, zone liujiapo only
        assert wait_until(lambda: len(got) == 2, 60)
        assert sorted(t for t, _, _ in got) == ["warnings/cap/county.demo.101.50.0",
                                                "warnings/cap/county.demo.101.51.0"]
        assert {ct for _, _, ct in got} == {"application/cap+xml"}
        for _, body, _ in got:
            SCHEMA.assertValid(etree.fromstring(body))
    finally:
        relay.stop()
        c.loop_stop()
        pubc.loop_stop()


def test_broadcast_over_http_on_red_only(tmp_path):
    ep = Endpoint(fail=1)
    try:
        url = "sqlite:///%s" % (tmp_path / "hub.db")
        s, _ = raise_alarms(url, ("spool",), broadcast=True, levels=((3, 0), (4, 3), (0, 4)))
        d = outbox.Dispatcher(s, {"spool": outbox.SpoolSink(str(tmp_path / "spool")),
                                  "broadcast": outbox.BroadcastHook({}, url=ep.url)},
                              threading.Event(), retry_base_ms=0)
        while d.run_once():
            pass
        # one call, for the red Update (not the orange Alert, not the Cancel), once
        assert [(i, ct) for i, ct, _ in ep.got] == [("county.demo.101.51.0", "application/json")]
        assert json.loads(ep.got[0][2]) == {"zone": "liujiapo", "level": "red",
                                            "identifier": "county.demo.101.51.0"}
        assert sorted(p.name for p in (tmp_path / "spool").iterdir()) == [
            "county.demo.101.50.0.xml", "county.demo.101.51.0.xml", "county.demo.101.52.0.xml"]
    finally:
        ep.close()


def test_unsent_rows_of_one_millisecond_leave_in_the_station_order(db_url):
    """Text order would send seq 10 before seq 9; the outbox must not."""
    s = open_store(db_url)
    s.init_schema()
    rows = [("county.demo.101.%d.0" % seq, "spool", "Alert", 3, "<alert/>", "demo", 101,
             1000, 5, 7) for seq in (10, 9, 100, 11)]
    with s.tx():
        s.add_outbox(rows)
    order = [r[0] for r in s.unsent_outbox()]
    s.close()
    assert order == ["county.demo.101.%d.0" % seq for seq in (9, 10, 11, 100)]
