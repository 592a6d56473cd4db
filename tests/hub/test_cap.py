"""CAP 1.2 alerts against the official OASIS schema (tests/hub/data/CAP-v1.2.xsd), and
the four national levels mapped onto CAP's severity, urgency and certainty."""
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from hub import cap
from hub.levels import CAP_MAP, decide
from hub.stations import StationsError, load

HERE = Path(__file__).resolve().parent
SCHEMA = etree.XMLSchema(etree.parse(str(HERE / "data" / "CAP-v1.2.xsd")))
STATIONS = load(str(Path(cap.__file__).parent / "examples" / "stations.csv"))
NS = {"c": cap.NS}


def valid(xml):
    doc = etree.fromstring(xml)
    SCHEMA.assertValid(doc)
    return doc


def alarm(t=1_780_000_000):
    return {"site": "demo", "node": 101, "t": t, "value": "16 mm", "threshold": "15 mm",
            "chan_label": "displacement.0"}


@pytest.mark.parametrize("msgtype, level", [("Alert", 3), ("Alert", 4), ("Update", 4),
                                            ("Update", 3), ("Cancel", 0), ("Cancel", 2)])
@pytest.mark.parametrize("station", ["LJP-01", "XH-01", None])
def test_every_message_validates(msgtype, level, station):
    st_ = next((s for s in STATIONS.values() if s.id == station), None)
    refs = "" if msgtype == "Alert" else "c@x,stationhub.demo.101.3.0,2026-06-01T00:00:00+00:00"
    doc = valid(cap.build("stationhub.demo.101.4.0", "centre@county.example", 1_780_000_100,
                          msgtype, level, st_, alarm(), references=refs))
    assert doc.findtext("c:msgType", namespaces=NS) == msgtype
    info = doc.find("c:info", NS)
    if msgtype != "Cancel":
        sev, urg, cert, resp, _ = CAP_MAP[level]
        assert [info.findtext("c:" + k, namespaces=NS) for k in
                ("severity", "urgency", "certainty", "responseType")] == [sev, urg, cert, resp]
    else:
        assert info.findtext("c:responseType", namespaces=NS) == "AllClear"
    if st_ is not None:
        circle = info.findtext("c:area/c:circle", namespaces=NS)
        lat, lon = map(float, circle.split()[0].split(","))
        assert (lat, lon) == (round(st_.lat, 5), round(st_.lon, 5))   # CAP order: lat,lon
        assert float(circle.split()[1]) == st_.radius_m / 1000
        poly = info.findtext("c:area/c:polygon", namespaces=NS)
        assert (poly is not None) == bool(st_.polygon)
        if poly:
            pts = poly.split()
            assert pts[0] == pts[-1] and len(pts) >= 4
    assert ("<references>" in xml_text(doc)) == bool(refs)


def xml_text(doc):
    return etree.tostring(doc).decode()


def test_the_schema_catches_a_broken_alert():
    xml = cap.build("x", "s@x", 1_780_000_100, "Alert", 4, None, alarm())
    broken = xml.replace(b"<severity>Extreme</severity>", b"<severity>Red</severity>")
    with pytest.raises(etree.DocumentInvalid):
        valid(broken)


@given(t=st.integers(0, 4_000_000_000), node=st.integers(1, 65534), seq=st.integers(1, 2**32),
       site=st.text(min_size=1, max_size=12))
def test_identifiers_and_times_always_fit_cap(t, node, seq, site):
    ident = cap.identifier("stationhub", site, node, seq, 0)
    assert not set(ident) & set(" ,<&")
    assert ident == cap.identifier("stationhub", site, node, seq, 0)
    valid(cap.build(ident, "s@x", t, "Alert", 3, None, dict(alarm(t), site=site)))


def test_levels_to_message_types():
    assert [decide(None, lv) for lv in range(5)] == [None, None, None, "Alert", "Alert"]
    assert [decide(3, lv) for lv in range(5)] == ["Cancel", "Cancel", "Cancel", None, "Update"]
    assert [decide(4, lv) for lv in range(5)] == ["Cancel"] * 3 + ["Update", None]


def test_stations_file_errors_name_line_and_column(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("id,name,hazard_point,type,site,node,lon,lat,zone,radius_m,polygon\n"
                 "A,a,,volcano,demo,101,110.4,32.0,z,,\n"
                 "B,b,,river,demo,0,190,32.0,z,,1 2;3 4\n")
    with pytest.raises(StationsError) as e:
        load(str(p))
    msg = str(e.value)
    for part in (":2: column type", ":3: column node", ":3: column lon", ":3: column polygon"):
        assert part in msg
    p.write_text("id,name\nA,a\n")
    with pytest.raises(StationsError, match="header lacks"):
        load(str(p))
