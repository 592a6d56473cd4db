"""OASIS CAP 1.2 alerts for station warnings (pure: the caller passes the time).

The national four levels map onto severity/urgency/certainty in hub/levels.py; the
area is the station's circle (and polygon, when the stations file has one). CAP
coordinates are "lat,lon" (WGS 84), a circle's radius in km."""
import re
import time
import xml.etree.ElementTree as ET

from hub.levels import CAP_MAP, NAMES

NS = "urn:oasis:names:tc:emergency:cap:1.2"
CONTENT_TYPE = "application/cap+xml"
_BAD = re.compile(r"[^A-Za-z0-9_.:-]")
# characters XML 1.0 cannot carry (ids and names come from the network)
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(v):
    return _NOT_XML.sub("\ufffd", str(v))

EVENTS = {
    "river": ("Met", "Flood warning", "water level"),
    "landslide": ("Geo", "Landslide warning", "slope movement"),
    "collapse": ("Geo", "Rock collapse warning", "slope movement"),
    "debris_flow": ("Geo", "Debris flow warning", "debris flow"),
    "subsidence": ("Geo", "Ground subsidence warning", "ground movement"),
}


def identifier(sender_id, site, node, seq, aidx):
    """Stable: the same alarm always yields the same identifier."""
    return _BAD.sub("_", "%s.%s.%d.%d.%d" % (sender_id, site, node, seq, aidx))


def cap_time(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(int(t)))


def reference(sender, ident, sent):
    return "%s,%s,%s" % (sender, ident, sent)


def _sub(parent, tag, text=None):
    e = ET.SubElement(parent, "{%s}%s" % (NS, tag))
    if text is not None:
        e.text = _text(text)
    return e


def build(ident, sender, sent_t, msgtype, level, station, alarm, references="",
          status="Actual", sender_name="County monitoring centre"):
    """One CAP 1.2 <alert> as UTF-8 bytes. station: hub.stations.Station or None;
    alarm: dict with chan_label, value, threshold, t (sample time), level."""
    ET.register_namespace("", NS)
    a = ET.Element("{%s}alert" % NS)
    _sub(a, "identifier", ident)
    _sub(a, "sender", sender)
    _sub(a, "sent", cap_time(sent_t))
    _sub(a, "status", status)
    _sub(a, "msgType", msgtype)
    _sub(a, "scope", "Public")
    if references:
        _sub(a, "references", references)
    stype = station.type if station else "landslide"
    category, event, what = EVENTS[stype]
    info = _sub(a, "info")
    _sub(info, "language", "en")
    _sub(info, "category", category)
    _sub(info, "event", event)
    name = station.name if station else "site %s node %s" % (alarm["site"], alarm["node"])
    if msgtype == "Cancel":
        _sub(info, "responseType", "AllClear")
        _sub(info, "urgency", "Past")
        _sub(info, "severity", "Minor")
        _sub(info, "certainty", "Observed")
    else:
        sev, urg, cert, resp, roman = CAP_MAP[level]
        _sub(info, "responseType", resp)
        _sub(info, "urgency", urg)
        _sub(info, "severity", sev)
        _sub(info, "certainty", cert)
    _sub(info, "eventCode").extend([_kv("valueName", "level"),
                                    _kv("value", NAMES[level])])
    _sub(info, "onset", cap_time(alarm["t"]))
    _sub(info, "senderName", sender_name)
    if msgtype == "Cancel":
        head = "%s at %s lifted (now %s)" % (event, name, NAMES[level])
    else:
        head = "%s %s (level %s) at %s" % (NAMES[level].upper(), event.lower(),
                                          CAP_MAP[level][4], name)
    _sub(info, "headline", head)
    _sub(info, "description", "%s %s: %s = %s (threshold %s) at %s UTC." % (
        name, "(hazard point %s)" % station.hazard_point if station and station.hazard_point
        else "", alarm["chan_label"], alarm["value"], alarm["threshold"],
        cap_time(alarm["t"])[:19].replace("T", " ")))
    if msgtype != "Cancel":
        _sub(info, "instruction", "Evacuate the area now along the marked routes."
             if level >= 4 else "Prepare to evacuate; keep away from the %s." % (
                 "river bank" if stype == "river" else "slope"))
    for k, v in (("station", station.id if station else ""), ("site", alarm["site"]),
                 ("node", alarm["node"]), ("sampleTime", cap_time(alarm["t"]))):
        _sub(info, "parameter").extend([_kv("valueName", k), _kv("value", v)])
    if station is not None:
        area = _sub(info, "area")
        _sub(area, "areaDesc", "%s%s" % (station.name, ", zone %s" % station.zone
                                          if station.zone else ""))
        if station.polygon:
            _sub(area, "polygon", " ".join("%.5f,%.5f" % (lat, lon) for lon, lat in
                                           station.polygon))
        _sub(area, "circle", "%.5f,%.5f %.3f" % (station.lat, station.lon,
                                                 station.radius_m / 1000.0))
    return ET.tostring(a, encoding="utf-8", xml_declaration=True)


def _kv(tag, text):
    e = ET.Element("{%s}%s" % (NS, tag))
    e.text = _text(text)
    return e
