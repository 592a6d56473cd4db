"""The map page and its JSON API (stdlib http.server, one thread per request, a
database connection per request). Everything the page needs is served from hub/static:
it works without the internet. Every /api/ request needs the token, as the gateway's
status page does it: `Authorization: Bearer <token>`, or the cookie that opening
`/?token=<token>` sets (then it redirects to `/`, so the token leaves the address bar);
the page also takes it from a `#token=` fragment, which browsers never send."""
import hmac
import json
import logging
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from hub.levels import NAMES
from hub.store import open_store
from protocol import channels

log = logging.getLogger("stationhub")
COOKIE = "stationhub_token"
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".png": "image/png"}


def _units(chan, v, fault):
    if fault is not None:
        return None
    try:
        return round(channels.to_units(chan, v), 4)
    except Exception:
        return v


class MapApi:
    """The data behind the page, from any Store."""

    def __init__(self, db_url, stations, geojson_path=None, stats=None):
        self.db_url, self.stations = db_url, stations
        self.geojson_path = geojson_path
        self.stats = stats
        self._local = threading.local()

    def store(self):
        s = getattr(self._local, "store", None)
        if s is None:
            s = self._local.store = open_store(self.db_url)
        return s

    def state(self):
        s = self.store()
        lv = {(r[0], r[1]): r[2] for r in s.all_levels()}
        latest = {}
        for site, node, chan, t, v, fault in s.latest():
            latest.setdefault((site, node), []).append({
                "chan": chan, "label": channels.label(chan), "unit": _unit(chan), "t": t,
                "value": _units(chan, v, fault), "fault": fault})
        status = {(r[0], r[1]): r[2:] for r in s.rows(
            "SELECT site, node, t, battery_mv, log_depth, seq_gaps FROM node_status")}
        out = []
        keys = set(self.stations) | set(latest) | set(lv)
        for key in sorted(keys, key=lambda k: (k[0], k[1])):
            st = self.stations.get(key)
            d = st.as_json() if st else {"id": "%s/%s" % key, "name": "unlisted node %s" % key[1],
                                         "site": key[0], "node": key[1], "lon": None,
                                         "lat": None, "type": "", "zone": ""}
            d["level"] = lv.get(key, 0)
            d["level_name"] = NAMES[d["level"]]
            d["latest"] = sorted(latest.get(key, []), key=lambda c: c["chan"])
            ns = status.get(key)
            d["status"] = {"t": ns[0], "battery_mv": ns[1], "log_depth": ns[2],
                           "seq_gaps": ns[3]} if ns else None
            d["gaps"] = s.seq_gaps(key[0], key[1], 5)
            out.append(d)
        gws = [{"site": r[0], "gateway": r[1], "state": r[2], "t": r[3]} for r in s.rows(
            "SELECT site, gateway, state, t FROM gateways ORDER BY site, gateway")]
        return {"stations": out, "gateways": gws, "now": time.time(),
                "ingest": self.stats.as_dict() if self.stats else None}

    def series(self, site, node, chan, hours):
        s = self.store()
        since = int(time.time() - hours * 3600)
        rows = s.series(site, node, chan, since)
        if not rows:   # a site whose clock is behind ours, or old data: its newest stretch
            last = s.rows("SELECT MAX(t) FROM readings WHERE site = ? AND node = ? AND chan = ?",
                          (site, node, chan))[0][0]
            if last is not None:
                rows = s.series(site, node, chan, int(last - hours * 3600))
        return {"chan": chan, "label": channels.label(chan), "unit": _unit(chan),
                "points": [[t, _units(chan, v, f), f] for t, v, f in rows]}

    def alarms(self, limit=100):
        out = []
        for r in self.store().recent_alarms(limit):
            (site, node, seq, aidx, event, level, prev, chan, value, thr, t, gw_rx, hub_rx,
             acked_by, acked_ms, cap_ms) = r
            st = self.stations.get((site, node))
            out.append({
                "site": site, "node": node, "seq": seq, "aidx": aidx,
                "station": st.id if st else "%s/%s" % (site, node),
                "name": st.name if st else "", "event": {1: "trip", 2: "level", 3: "clear"}
                .get(event, event), "level": level, "level_name": NAMES[level],
                "prev": prev, "chan": channels.label(chan), "value": _units(chan, value, None),
                "threshold": _units(chan, thr, None), "unit": _unit(chan), "t": t,
                "gw_rx_ms": gw_rx, "hub_rx_ms": hub_rx, "acked_by": acked_by,
                "acked_ms": acked_ms, "cap_sent_ms": cap_ms,
                # the figures the 15-minute rule is about
                "sample_to_cap_s": None if cap_ms is None else round(cap_ms / 1000 - t, 1),
                "mqtt_to_cap_s": None if cap_ms is None else round((cap_ms - hub_rx) / 1000, 3)})
        return out

    def ack(self, site, node, seq, aidx, who):
        s = self.store()
        with s.tx():
            return s.ack_alarm(site, node, seq, aidx, who, int(time.time() * 1000))

    def geojson(self):
        if not self.geojson_path:
            return {"type": "FeatureCollection", "features": []}
        with open(self.geojson_path, encoding="utf-8") as f:
            return json.load(f)


def _unit(chan):
    try:
        return channels.info(chan)[1]
    except Exception:
        return ""


def make_handler(api, token):
    tok = token.encode()

    class Handler(BaseHTTPRequestHandler):
        server_version = "stationhub"

        def log_message(self, fmt, *args):   # the query string may carry nothing secret,
            log.debug("http %s", fmt % args)  # but keep request lines out of the log anyway

        def _send(self, code, body, ctype="application/json"):
            if not isinstance(body, bytes):
                body = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:;"
                             " style-src 'self'; script-src 'self'")
            self.end_headers()
            self.wfile.write(body)

        def _cookie_token(self):
            for part in self.headers.get("Cookie", "").split(";"):
                k, _, v = part.strip().partition("=")
                if k == COOKIE:
                    return v.encode()
            return b""

        def _authorised(self):
            h = self.headers.get("Authorization", "")
            got = h[7:].encode() if h.startswith("Bearer ") else self._cookie_token()
            if not hmac.compare_digest(got, tok):
                self._send(401, {"error": "missing or wrong token: open the page with the URL"
                                 " stationhub printed (…/#token=…), or send Authorization:"
                                 " Bearer <token from the hub's token file>"})
                return False
            return True

        def do_GET(self):
            u = urlparse(self.path)
            if u.path in ("/", "/index.html"):
                t = parse_qs(u.query).get("token", [""])[0].encode()
                if t and hmac.compare_digest(t, tok):
                    self.send_response(303)
                    self.send_header("Location", "/")
                    self.send_header("Set-Cookie", "%s=%s; HttpOnly; SameSite=Strict; Path=/"
                                     % (COOKIE, t.decode()))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                return self._static("index.html")
            if u.path.startswith("/static/"):
                return self._static(u.path[8:])
            if not u.path.startswith("/api/") or not self._authorised():
                if not u.path.startswith("/api/"):
                    self._send(404, {"error": "no such page"})
                return
            q = {k: v[0] for k, v in parse_qs(u.query).items()}
            try:
                if u.path == "/api/state":
                    return self._send(200, api.state())
                if u.path == "/api/alarms":
                    return self._send(200, api.alarms())
                if u.path == "/api/geojson":
                    return self._send(200, api.geojson())
                if u.path == "/api/series":
                    return self._send(200, api.series(q["site"], int(q["node"]), int(q["chan"]),
                                                      float(q.get("hours", 6))))
            except (KeyError, ValueError) as e:
                return self._send(400, {"error": "bad query: %s (want site, node, chan, hours)"
                                        % e})
            self._send(404, {"error": "no such API"})

        def do_POST(self):
            u = urlparse(self.path)
            if u.path != "/api/alarms/ack":
                return self._send(404, {"error": "no such API"})
            if not self._authorised():
                return
            try:
                n = int(self.headers.get("Content-Length", "0"))
                d = json.loads(self.rfile.read(min(n, 4096)) or b"{}")
                ok = api.ack(str(d["site"]), int(d["node"]), int(d["seq"]), int(d["aidx"]),
                             str(d.get("who") or "duty officer")[:60])
            except (KeyError, ValueError, TypeError) as e:
                return self._send(400, {"error": "want JSON {site, node, seq, aidx, who}: %s" % e})
            self._send(200, {"acked": ok})

        def _static(self, name):
            path = os.path.normpath(os.path.join(STATIC, name))
            if not path.startswith(STATIC + os.sep) or not os.path.isfile(path):
                return self._send(404, {"error": "no such file"})
            with open(path, "rb") as f:
                self._send(200, f.read(), _TYPES.get(os.path.splitext(path)[1],
                                                     "application/octet-stream"))

    return Handler


class WebServer:
    def __init__(self, api, token, host="127.0.0.1", port=8090):
        self.httpd = ThreadingHTTPServer((host, port), make_handler(api, token))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="web", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
