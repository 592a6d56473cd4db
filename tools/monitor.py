"""`stationctl monitor --broker mqtt://HOST:PORT --site SITE`: a live view of a site.

Subscribes (QoS 1) to `<prefix>/<site>/<gw>/data`, `/alarm` and `/status` (all gateways
unless `--gateway`), decodes each CBOR message with tools/decode.py and prints one line
per message: a batch as its readings count and each channel's latest value, an alarm
with its level, a gateway going online or offline. On a terminal, alarm lines are
coloured by warning level (blue, yellow, orange, red) and an offline gateway in red.
`--count N` / `--duration S` stop it by itself; `--json` prints one JSON object per
line instead. The retained status of each gateway arrives first.
"""
import datetime
import json
import os
import queue
import sys
import time
import urllib.parse

import paho.mqtt.client as mqtt

from gateway import alarmtext
from tools.decode import describe_uplink, uplink_text, value_text
from tools.errors import BAD_INPUT, BROKER, ToolError

COLORS = alarmtext.ANSI
OFFLINE = "\x1b[1;31m"
RESET = alarmtext.ANSI_RESET
CONNECT_TIMEOUT_S = 10.0


def parse_broker(url):
    """mqtt://host[:port] or mqtts://host[:port] -> (host, port, tls)."""
    u = urllib.parse.urlsplit(url if "://" in url else "mqtt://" + url)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise ToolError(BAD_INPUT, "--broker %r: give mqtt://HOST:PORT (or mqtts:// for TLS), "
                        "e.g. mqtt://127.0.0.1:1883" % url)
    try:
        port = u.port or (8883 if u.scheme == "mqtts" else 1883)
    except ValueError:
        raise ToolError(BAD_INPUT, "--broker %r: the port must be a number 1..65535" % url) from None
    return u.hostname, port, u.scheme == "mqtts"


def topics(prefix, site, gateway="+"):
    base = "%s/%s/%s/" % (prefix, site, gateway)
    return [base + "data", base + "alarm", base + "status"]


def _clock():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%SZ")


def data_line(d):
    """A batch on one line: readings count and each channel's latest value."""
    parts = []
    for n in d["nodes"]:
        latest = []
        for c in n["channels"]:
            last = c["runs"][-1]
            latest.append("%s %s" % (c["label"], value_text(c["chan"], last["values"][-1])))
        parts.append("node %d %s" % (n["node"], ", ".join(latest)))
    dropped = d["counters"].get("readings_dropped", 0)
    return "DATA %s/%s #%s %d readings%s%s" % (
        d["site"], d["gateway"], d["seq"], d["readings"], ": " + "; ".join(parts) if parts else "",
        " (dropped so far: %d)" % dropped if dropped else "")


def event_line(topic, payload, color=False):
    """(text line, decoded dict or None) for one MQTT message."""
    try:
        d = describe_uplink(payload, topic)
    except ValueError as e:
        return "%s ? %s: %s (%d bytes)" % (_clock(), topic, e, len(payload)), None
    text = data_line(d) if d["kind"] == "batch" else uplink_text(d)[0]
    line = "%s %s" % (_clock(), text)
    if color:
        if d["kind"] == "alarm" and COLORS.get(d.get("level_n")):
            line = COLORS[d["level_n"]] + line + RESET
        elif d["kind"] == "status" and d["state"] == "offline":
            line = OFFLINE + line + RESET
    return line, d


class Monitor:
    def __init__(self, host, port, tls=False, cafile=None, username=None, password=None,
                 client_id=None):
        self.q = queue.Queue()
        self.connected = queue.Queue()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                        client_id=client_id or "stationctl-monitor-%d" % os.getpid(),
                        protocol=mqtt.MQTTv5)
        if tls:
            c.tls_set(ca_certs=cafile)
        if username:
            c.username_pw_set(username, password)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_message = lambda c, ud, msg: self.q.put((msg.topic, bytes(msg.payload)))
        self.client = c
        self.host, self.port = host, port
        self.subs = []
        self.qos = 1
        self._unacked = set()       # mids of SUBSCRIBEs not answered yet

    def _on_connect(self, client, userdata, flags, rc, props):
        if rc.is_failure:
            self.connected.put(str(rc))
            return
        self._unacked = {client.subscribe(t, qos=self.qos)[1] for t in self.subs}

    def _on_subscribe(self, client, userdata, mid, reason_codes, props):
        # "subscribed" means SUBACK, not CONNACK: only from then on can nothing published
        # pass the monitor by
        bad = [rc for rc in reason_codes if rc.is_failure]
        if bad:
            self.connected.put("subscription refused: %s" % bad[0])
            return
        self._unacked.discard(mid)
        if not self._unacked:
            self.connected.put(None)

    def start(self, subs, qos=1):
        self.subs, self.qos = subs, qos
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except OSError as e:
            raise ToolError(BROKER, "cannot reach the broker %s:%d: %s. Is it running, and is "
                            "--broker right?" % (self.host, self.port, e.strerror or e)) from None
        self.client.loop_start()
        try:
            err = self.connected.get(timeout=CONNECT_TIMEOUT_S)
        except queue.Empty:
            self.stop()
            raise ToolError(BROKER, "the broker %s:%d accepted TCP but sent no CONNACK/SUBACK in %g s: "
                            "is it an MQTT broker (mqtts:// for a TLS port)?"
                            % (self.host, self.port, CONNECT_TIMEOUT_S)) from None
        if err is not None:
            self.stop()
            raise ToolError(BROKER, "the broker %s:%d refused: %s (check "
                            "--username/--password-file, and the broker's ACL for these "
                            "topics)" % (self.host, self.port, err))

    def barrier(self, topic):
        """Subscribe to `topic` and wait for its SUBACK. The broker answers SUBSCRIBEs on
        one connection in order and sends a subscription's retained QoS 0 messages before
        it reads the next SUBSCRIBE, and paho calls on_message and on_subscribe from one
        thread in arrival order: once this returns, every retained message of the
        earlier QoS 0 subscriptions is in self.q. No wait that a slow machine can outrun."""
        self._unacked = {self.client.subscribe(topic, qos=0)[1]}
        try:
            err = self.connected.get(timeout=CONNECT_TIMEOUT_S)
        except queue.Empty:
            raise ToolError(BROKER, "the broker %s:%d sent no SUBACK in %g s"
                            % (self.host, self.port, CONNECT_TIMEOUT_S)) from None
        if err is not None:
            raise ToolError(BROKER, "the broker %s:%d refused a subscription: %s (check its "
                            "ACL)" % (self.host, self.port, err))

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


def watch(mon, out, count=None, duration=None, as_json=False, color=False):
    """Print events until `count` of them or `duration` seconds. Returns the count."""
    n = 0
    end = None if duration is None else time.monotonic() + duration
    while count is None or n < count:
        timeout = 0.5 if end is None else end - time.monotonic()
        if end is not None and timeout <= 0:
            break
        try:
            topic, payload = mon.q.get(timeout=min(timeout, 0.5))
        except queue.Empty:
            continue
        line, d = event_line(topic, payload, color)
        if as_json:
            line = json.dumps({"topic": topic, **(d or {"error": line})})
        out.write(line + "\n")
        out.flush()
        n += 1
    return n


def gateways_seen(mon, prefix):
    """{(site, gateway)} with a retained status on this broker: every gateway that has
    connected to it leaves one (online, or its offline will)."""
    # QoS 0: retained QoS 1 messages beyond the broker's inflight window (Mosquitto's
    # max_inflight_messages, 20) would wait for PUBACKs and could come after the barrier
    mon.start(["%s/+/+/status" % prefix], qos=0)
    seen = set()
    try:
        mon.barrier("%s/-/monitor-barrier-%d/none" % (prefix, os.getpid()))
        while True:
            try:
                topic, _payload = mon.q.get_nowait()
            except queue.Empty:
                break
            parts = topic.split("/")
            if len(parts) == len(prefix.split("/")) + 3:
                seen.add((parts[-3], parts[-2]))
    finally:
        mon.stop()
    return seen


def check_site(mon, prefix, site, gateway):
    """A typo in --site or --gateway would watch nothing, silently: refuse a site (or
    gateway) the broker has never heard of while it knows others."""
    seen = gateways_seen(mon, prefix)
    where = "%s:%d" % (mon.host, mon.port)
    if not seen:
        print("note: no gateway has published its status on %s under %s/ yet: waiting for "
              "site %s (check --site and --prefix if nothing comes)" % (where, prefix, site),
              file=sys.stderr)
        return
    sites = sorted({s for s, _g in seen})
    if site not in sites:
        raise ToolError(BAD_INPUT, "--site %s: no gateway of that site has connected to %s; "
                        "sites there: %s. Check the spelling (site.toml [site] id)"
                        % (site, where, ", ".join(sites)))
    gws = sorted(g for s, g in seen if s == site)
    if gateway != "+" and gateway not in gws:
        raise ToolError(BAD_INPUT, "--gateway %s: site %s has no such gateway on %s; its "
                        "gateways: %s" % (gateway, site, where, ", ".join(gws)))


def run(args):
    host, port, tls = parse_broker(args.broker)
    password = None
    if args.password_file:
        try:
            with open(args.password_file) as f:
                password = f.read().strip()
        except OSError as e:
            raise ToolError(BAD_INPUT, "--password-file %s: %s" % (args.password_file,
                                                                   e.strerror)) from None
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    check_site(Monitor(host, port, tls, args.cafile, args.username, password), args.prefix,
               args.site, args.gateway)
    mon = Monitor(host, port, tls, args.cafile, args.username, password)
    mon.start(topics(args.prefix, args.site, args.gateway))
    print("monitoring %s on %s:%d (Ctrl-C to stop)" % (" ".join(mon.subs), host, port),
          file=sys.stderr)
    try:
        watch(mon, sys.stdout, args.count, args.duration, args.json, color)
    finally:
        mon.stop()
    return 0
