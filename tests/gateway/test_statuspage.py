"""The status page and /metrics of a real `stationgw run` (a subprocess): three simulated
radio nodes on a pty, a pymodbus gauge, a real Mosquitto broker, and Debian's headless
chromium reading the page (tests/browser.py)."""
import json
import os
import secrets
import urllib.error
import urllib.request

import browser
import pytest
from harness import Broker
from prometheus_client.parser import text_string_to_metric_families

from hil.demo import (
    NODES,
    Air,
    GatewayProcess,
    Gauge,
    demo_nodes,
    free_port,
    make_keys,
    wait_until,
    write_site,
)

ORANGE = (0xEF, 0x6C, 0x00)      # gateway/web/status.css .lv3
YELLOW = (0xFF, 0xD6, 0x00)      # .lv2


def http_section(d, port, token):
    path = os.path.join(d, "http.token")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return '\n[http]\nenabled = true\nbind = "127.0.0.1"\nport = %d\ntoken_file = "%s"\n' % (
        port, path)


def get(url, token=None, method="GET"):
    req = urllib.request.Request(url, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One running site for the module's tests (each would take seconds to start)."""
    tmp_path = tmp_path_factory.mktemp("statuspage")
    broker = Broker(tmp_path / "mq").start()
    token = secrets.token_hex(16)
    port = free_port()
    keys = make_keys([n[0] for n in NODES])
    air = Air(demo_nodes(keys), speed=12.0)
    gauge = Gauge(speed=12.0).start()
    d = str(tmp_path / "site")
    os.makedirs(d)
    cfg = write_site(d, broker.port, air.path, keys, modbus_port=gauge.port,
                     extra=http_section(d, port, token))
    gw = GatewayProcess(cfg, str(tmp_path)).start()
    air.start()
    try:
        yield "http://127.0.0.1:%d" % port, token, gw
    finally:
        air.stop()
        gw.close()
        gauge.stop()
        air.close()
        broker.stop()


def status_json(base, token):
    code, body = get(base + "/api/status", token)
    assert code == 200, body
    return json.loads(body)


def has_orange_alarm(base, token):
    return any(a["level"] == 3 and a["node"] == 101 for a in status_json(base, token)["alarms"])


@pytest.mark.broker
def test_page_shows_nodes_devices_and_an_alarm_in_its_colour(site, tmp_path):
    base, token, gw = site
    # node 101's crack opens 8 mm at demo time 50 s: its orange rule trips (hil/demo.py)
    assert wait_until(lambda: has_orange_alarm(base, token), 60, 0.3), gw.text()[-3000:]
    st = status_json(base, token)
    a = next(a for a in st["alarms"] if a["node"] == 101)
    assert a["chan"] == "displacement.0" and a["value"].endswith(" mm")
    assert a["threshold"] == "15.00 mm"            # the rule's 1500 in 0.01 mm
    with browser.session(tmp_path) as drv:
        drv.get(base + "/?token=" + token)
        assert drv.current_url == base + "/", "the token must leave the address bar"
        rows = browser.retry(lambda: [(r.get_attribute("data-node"), r.text) for r in
                                      browser.wait_for(drv, "#nodes tr[data-node]", count=3)])
        assert [r[0] for r in rows] == ["101", "102", "103"]
        assert "liujiapo-crack" in rows[0][1]
        browser.wait_for(drv, "#nodes tr[data-node='101'] .lv3")      # its level: orange
        alarm_png = tmp_path / "alarm-row.png"

        def alarm_row():
            row = browser.wait_for(drv, "#alarms tr[data-alarm-level='3']")[0]
            text = row.text
            row.screenshot(str(alarm_png))
            return text
        text = browser.retry(alarm_row)
        assert "displacement.0" in text and "15.00 mm" in text
        dev = browser.retry(lambda: browser.wait_for(
            drv, "#devices tr[data-device='river-radar']")[0].text)
        assert "river-radar" in dev
        browser.wait_for(drv, "#trends .chart svg")
        assert browser.retry(lambda: browser.wait_for(drv, "#uplink-state")[0].text) == \
            "CONNECTED"
        drv.save_screenshot(str(tmp_path / "status.png"))     # for a human, when it fails
        row = browser.read_png(alarm_png)
    # the orange badge is really painted, and it is not the yellow one
    assert row.count(ORANGE) > 100, "no orange pixels in the alarm row"
    assert row.count(YELLOW) == 0


@pytest.mark.broker
def test_everything_needs_the_token_and_nothing_can_be_changed(site, tmp_path):
    base, token, _gw = site
    for path in ("/", "/api/status", "/metrics", "/status.js"):
        code, body = get(base + path)
        assert code == 401 and b"token" in body, path
        assert get(base + path, "x" * 32)[0] == 401
        assert get(base + path, token)[0] == 200
    code, _ = get(base + "/api/status", token, method="POST")
    assert code == 405
    wrong = token[:-1] + ("0" if token[-1] != "0" else "1")    # off by its last digit
    assert get(base + "/?token=" + wrong)[0] == 401
    with browser.session(tmp_path) as drv:
        drv.get(base + "/")
        body = drv.find_element("tag name", "body").text
        assert body.startswith("401") and "token" in body
        assert not drv.find_elements("id", "nodes")


@pytest.mark.broker
def test_metrics_parse_with_prometheus_client(site):
    base, token, gw = site
    assert wait_until(lambda: has_orange_alarm(base, token), 60, 0.3), gw.text()[-3000:]

    def families():
        code, body = get(base + "/metrics", token)
        assert code == 200
        return {f.name: f for f in text_string_to_metric_families(body.decode())}

    assert wait_until(lambda: any(s.labels["node"] == "101" and s.value == 3 for s in
                                  families()["stationgw_node_warning_level"].samples), 60, 0.3)
    # the daemon's snapshot (every 2 s) catches up with the alarm's PUBACK
    assert wait_until(lambda: families()["stationgw_alarms_acked"].samples[0].value >= 1, 60, 0.3)
    fams = families()
    assert fams["stationgw_uplink_connected"].samples[0].value == 1
    assert {s.labels["lane"] for s in fams["stationgw_lane_depth"].samples} >= {
        "alarm", "live", "backlog"}
    ages = {s.labels["node"]: s.value for s in fams["stationgw_node_last_heard_age_seconds"].samples}
    assert set(ages) == {"101", "102", "103"} and all(v < 60 for v in ages.values())
    assert fams["stationgw_store_events"].type == "counter"
    assert "frames_rejected" in {s.labels["event"] for s in fams["stationgw_store_events"].samples}
    assert fams["stationgw_modbus_device_online"].samples[0].labels["device"] == "river-radar"
    assert any(s.labels["quantile"] == "0.5" for s in
               fams["stationgw_alarm_publish_wait_seconds"].samples)
