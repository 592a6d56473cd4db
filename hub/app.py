"""The running hub: N ingest workers, the CAP dispatcher and the map page in one
process. More processes (on more machines) with the same [mqtt] group share the load;
give each its own client_id."""
import logging
import os
import secrets
import signal
import threading

from hub import outbox
from hub.ingest import ALARMS, DATA, Context, Stats, Worker
from hub.stations import load as load_stations
from hub.store import open_store
from hub.web import MapApi, WebServer

log = logging.getLogger("stationhub")


def read_or_make_token(path):
    """The page's token: from token_file, or a new random one written to hub.token
    (0600) beside the config. There is no default token."""
    if os.path.exists(path):
        with open(path) as f:
            tok = f.read().strip()
        if len(tok) < 16:
            raise SystemExit("%s: the web token must be at least 16 characters" % path)
        return tok
    tok = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(tok + "\n")
    return tok


class Hub:
    def __init__(self, cfg, web=True):
        self.cfg = cfg
        self.stations = load_stations(cfg.stations) if cfg.stations else {}
        self.stats = Stats()
        sinks = {"spool": outbox.SpoolSink(cfg.spool)} if cfg.spool else {}
        if cfg.http_url:
            sinks["http"] = outbox.HttpSink(cfg.http_url)
        self._cap_client = None
        if cfg.cap_topic:
            import paho.mqtt.client as mqtt
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cfg.client_id + "-cap",
                            protocol=mqtt.MQTTv5)
            if cfg.username:
                c.username_pw_set(cfg.username, cfg.password)
            if cfg.tls:
                c.tls_set()
            c.connect_async(cfg.mqtt_host, cfg.mqtt_port, keepalive=15)
            c.loop_start()
            self._cap_client = c
            sinks["mqtt"] = outbox.MqttSink(c, cfg.cap_topic)
        broadcast = bool(cfg.bc_host or cfg.bc_url)
        if broadcast:
            sinks["broadcast"] = outbox.BroadcastHook(cfg.bc_zones, cfg.bc_host, cfg.bc_port,
                                                      cfg.bc_device, cfg.bc_url)
        self.ctx = Context(self.stations, cfg.sender, cfg.sender_id,
                           [s for s in sinks if s != "broadcast"], broadcast)
        first = open_store(cfg.database)
        first.init_schema()
        shared = cfg.subscription == "shared"

        def worker(name, store, group, kinds):
            return Worker(name, store, self.ctx, cfg.mqtt_host, cfg.mqtt_port, cfg.prefix, group,
                          cfg.session_expiry_s, username=cfg.username, password=cfg.password,
                          tls=cfg.tls, stats=self.stats, shared=shared, kinds=kinds)
        # the alarm lane first: alarms never queue behind a backlog of batches
        self.workers = [worker("%s-a" % cfg.client_id, first, cfg.group + "-alarms", ALARMS)]
        self.workers += [worker("%s-w%d" % (cfg.client_id, i + 1), open_store(cfg.database),
                                cfg.group, DATA) for i in range(cfg.workers)]
        self.dispatcher = outbox.Dispatcher(open_store(cfg.database), sinks,
                                            self.ctx.outbox_added, priority=self.ctx.priority)
        self.web = None
        if web:
            tok_path = cfg.token_file or os.path.join(os.path.dirname(os.path.abspath(
                cfg.file)), "hub.token")
            self.token = read_or_make_token(tok_path)
            self.token_path = tok_path
            self.web = WebServer(MapApi(cfg.database, self.stations, cfg.geojson, self.stats),
                                 self.token, cfg.web_listen, cfg.web_port)

    def start(self):
        for w in self.workers:
            w.start()
        self.dispatcher.start()
        if self.web:
            self.web.start()
        log.info("event=running workers=%d database=%s web_port=%s", len(self.workers),
                 self.cfg.database.split("://")[0], self.web.port if self.web else "-")
        return self

    def stop(self):
        for w in self.workers:
            w.stop()
        self.dispatcher.stop()
        if self.web:
            self.web.stop()
        if self._cap_client:
            self._cap_client.disconnect()
            self._cap_client.loop_stop()

    def run_forever(self):
        done = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *a: done.set())
        self.start()
        done.wait()
        self.stop()
