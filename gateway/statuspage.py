"""The site status page and /metrics: a read-only HTTP endpoint inside `stationgw run`,
off unless site.toml has `[http] enabled = true` (gateway/config_http.py).

    GET /             the page (gateway/web/: plain HTML, JS and SVG; works offline)
    GET /api/status   the JSON the page polls: snapshot, levels, alarms, trends
    GET /metrics      Prometheus text format (gateway/metrics.py)

Every request needs the token: `Authorization: Bearer <token>`, or the cookie that
`/?token=<token>` sets (then redirects to `/`, so the token leaves the address bar).
Anything else gets 401; methods other than GET/HEAD get 405: nothing here changes state.

The server is a thread of the daemon's process. It reads the daemon's status snapshot
(status.json) and keeps a History (gateway/history.py) fed by the store's commits, so
serving a page never holds the store's lock or waits on the radio.
"""
import hmac
import json
import logging
import threading
import time
from http import cookies
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from gateway import history as hist
from gateway import metrics
from gateway.logevent import log_event

log = logging.getLogger("stationgw.http")

COOKIE = "stationgw_token"
STATIC = {"/": ("status.html", "text/html; charset=utf-8"),
          "/status.js": ("status.js", "text/javascript; charset=utf-8"),
          "/status.css": ("status.css", "text/css; charset=utf-8")}
SECURITY_HEADERS = (("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
                    ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"),
                    ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "
                                                "frame-ancestors 'none'"))


class Source:
    """What the page shows: the snapshot file plus the in-memory history."""

    def __init__(self, cfg, read_snapshot, clock=time.time):
        self.cfg = cfg
        self.read_snapshot = read_snapshot
        self.clock = clock
        self.history = hist.History(clock)

    def snapshot(self):
        try:
            return self.read_snapshot()
        except (OSError, ValueError):
            return None

    def page_state(self):
        cfg = self.cfg
        return {
            "now": self.clock(),
            "snapshot": self.snapshot(),
            "node_levels": {str(k): v for k, v in self.history.node_levels().items()},
            "alarms": self.history.recent_alarms(),
            "trends": {"5min": self.history.trends("5min"),
                       "hour": self.history.trends("hour")},
            "site": {"id": cfg.site.id, "gateway": cfg.site.gateway_id,
                     "nodes": [{"id": n.id, "name": n.name} for n in cfg.nodes],
                     "devices": [{"name": d.name, "node": d.node, "bus": d.bus}
                                 for d in cfg.modbus.devices]},
        }


class StatusServer:
    def __init__(self, http_cfg, source):
        self.cfg = http_cfg
        self.source = source
        self.token = http_cfg.read_token().encode()
        self.registry = metrics.registry(source)
        self.static = {path: (resources.files("gateway.web").joinpath(name).read_bytes(), ctype)
                       for path, (name, ctype) in STATIC.items()}
        self.httpd = ThreadingHTTPServer((http_cfg.bind, http_cfg.port), _handler(self))
        self.httpd.daemon_threads = True
        self.thread = None

    @property
    def address(self):
        return self.httpd.server_address[:2]

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="http",
                                       daemon=True)
        self.thread.start()
        log_event(log, "http_started", address="%s:%d" % self.address)
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def authorised(self, token):
        return token is not None and hmac.compare_digest(token.encode(), self.token)


def _handler(server):
    class Handler(BaseHTTPRequestHandler):
        server_version = "stationgw"
        sys_version = ""
        timeout = 10           # a client that stalls mid-request loses its thread after 10 s

        def log_message(self, fmt, *args):      # requests are not logged: tokens ride in them
            pass

        def _send(self, code, body, ctype="text/plain; charset=utf-8", extra=()):
            self.send_response(code)
            for k, v in SECURITY_HEADERS + tuple(extra):
                self.send_header(k, v)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _token(self, query):
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                return auth[7:].strip()
            jar = cookies.SimpleCookie()
            try:
                jar.load(self.headers.get("Cookie", ""))
            except cookies.CookieError:
                pass
            if COOKIE in jar:
                return jar[COOKIE].value
            return (query.get("token") or [None])[0]

        def do_GET(self):
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            token = self._token(query)
            if not server.authorised(token):
                log_event(log, "http_refused", path=url.path, client=self.client_address[0],
                          reason="no token" if token is None else "wrong token")
                self._send(401, b"401: this page needs the gateway's status token. Open "
                                b"/?token=<token> once, or send 'Authorization: Bearer "
                                b"<token>'. The token is in the file named by [http] "
                                b"token_file in site.toml.\n",
                           extra=(("WWW-Authenticate", 'Bearer realm="stationgw"'),))
                return
            if "token" in query and url.path == "/":
                # keep the token out of the address bar, history and screenshots
                self._send(303, b"", extra=(("Location", "/"), (
                    "Set-Cookie", "%s=%s; HttpOnly; SameSite=Strict; Path=/"
                    % (COOKIE, token))))
                return
            if url.path in server.static:
                body, ctype = server.static[url.path]
                self._send(200, body, ctype)
            elif url.path == "/api/status":
                body = json.dumps(server.source.page_state(), default=str).encode()
                self._send(200, body, "application/json")
            elif url.path == "/metrics":
                self._send(200, generate_latest(server.registry), CONTENT_TYPE_LATEST)
            else:
                self._send(404, b"404: not here; the pages are /, /api/status and /metrics\n")

        do_HEAD = do_GET

        def _read_only(self):
            self._send(405, b"405: the status page is read-only\n",
                       extra=(("Allow", "GET, HEAD"),))

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _read_only

    return Handler


def attach(cfg, read_snapshot):
    """For `gateway.daemon.main(cfg, attach=...)`: start the server now and feed its
    history from the daemon's store once the daemon has opened it. Returns the
    function the daemon calls with itself."""
    source = Source(cfg, read_snapshot)
    server = StatusServer(cfg.http, source).start()

    def on_daemon(daemon):
        def watch():
            while daemon.store is None:
                time.sleep(0.05)
            # seed first: a reading both seeded and tapped would count its rain twice
            source.history.seed(cfg.storage.path)
            source.history.tap(daemon.store)
        threading.Thread(target=watch, name="http-history", daemon=True).start()
        return server
    return on_daemon
