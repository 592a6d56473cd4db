"""The map page in Debian's headless chromium (tests/browser.py): stations at their
coordinates coloured by level over the operator's GeoJSON, a station's trend charts,
the alarm list and its acknowledge button, and no data without the token."""
import sys
from pathlib import Path

import pytest
from hubdata import alarm, batch, readings
from hubproc import HubProcess, Publisher, wait_until, write_config

from hub.store import open_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import browser  # noqa: E402

TOPIC = "stations/demo/gw1/"
TOKEN = "test-token-0123456789abcdef"
RED = (0xd7, 0x19, 0x1c)


@pytest.mark.broker
def test_map_page(broker, tmp_path):
    url = "sqlite:///%s" % (tmp_path / "hub.db")
    hub = HubProcess(write_config(tmp_path / "hub", broker.port, url)).start()
    pub = Publisher(broker.port)
    try:
        rows = readings(101, range(1, 30), per=1) + readings(103, range(1, 30), per=1,
                                                              chan=0x18)
        pub.send(TOPIC + "data", batch(1, rows))
        pub.send(TOPIC + "alarm", alarm(101, 40, 3, 0))
        pub.send(TOPIC + "alarm", alarm(101, 41, 4, 3))
        pub.send(TOPIC + "alarm", alarm(103, 42, 2, 0, chan=0x18))
        s = open_store(url)
        assert wait_until(lambda: s.count("alarms") == 3 and s.count("readings") == 58, 60)
        base = "http://127.0.0.1:%d/" % hub.web_port()
        with browser.session(tmp_path) as drv:
            drv.get(base)               # no token: the page says so, shows no station
            err = browser.wait_for(drv, "#error:not([hidden])")[0]
            assert "token" in err.text and not drv.find_elements("css selector", "g.station")
            drv.get(base + "?token=" + TOKEN)      # sets the cookie, redirects to /
            st = browser.wait_for(drv, "g.station", count=4)
            assert "token" not in drv.current_url
            levels = browser.retry(lambda: {g.get_attribute("data-station"):
                                            g.get_attribute("data-level") for g in
                                            drv.find_elements("css selector", "g.station")})
            assert levels == {"LJP-01": "red", "LJP-02": "normal", "XH-01": "yellow",
                              "LH-01": "normal"}
            # the operator's layer: three rivers and the hazard polygon
            assert len(drv.find_elements("css selector", "path.river")) == 3
            assert len(drv.find_elements("css selector", "path.hazard")) == 1
            # stations sit where their coordinates say: LH-01 east of LJP-01, XH-01 south
            pos = {g.get_attribute("data-station"): g.find_element("css selector", "circle")
                   for g in st}
            x = {k: float(c.get_attribute("cx")) for k, c in pos.items()}
            y = {k: float(c.get_attribute("cy")) for k, c in pos.items()}
            assert x["LH-01"] > x["XH-01"] > x["LJP-01"] and y["XH-01"] > y["LJP-01"]
            rows_ = browser.wait_for(drv, "#alarms tbody tr", count=3)
            texts = [r.text for r in rows_]     # newest first
            assert "XH-01" in texts[0] and "yellow" in texts[0]
            assert "LJP-01" in texts[1] and "red" in texts[1] and "orange" in texts[2]
            png = browser.screenshot(drv, tmp_path / "map.png")
            assert png.count(RED, tol=20) > 50
            # a station's panel: one trend chart per channel with a line
            browser.retry(lambda: drv.find_element(
                "css selector", 'g.station[data-station="XH-01"] circle').click())
            chart = browser.wait_for(drv, "#panel svg.chart polyline")[0]
            assert len(chart.get_attribute("points").split()) == 29
            assert "water_level" in drv.find_element("css selector", "#panel").text
            # acknowledge the newest alarm
            browser.retry(lambda: drv.find_elements("css selector", "#alarms button.ack")[0]
                          .click())
            assert wait_until(lambda: s.rows("SELECT COUNT(*) FROM alarms WHERE acked_by ="
                                             " 'duty officer'")[0][0] == 1, 10)
            browser.wait_for(drv, "#alarms tr.acked")
        s.close()
    finally:
        pub.close()
        hub.stop()
