"""hub.toml: the hub's one config file. Paths are relative to the file. Every problem
is reported at once as `file: key: what is wrong (allowed values)`.

    [hub]       database = "sqlite:///hub.db" | "postgresql://user@host/db"
                stations = "stations.csv"   sender = "warnings@county.example"
                sender_id = "county"        (CAP identifier prefix)
    [mqtt]      host, port, prefix = "stations", group = "stationhub", workers = 2,
                client_id = "stationhub-1" (stable: the broker keeps each worker's
                session under client_id-wN), session_expiry_s = 604800,
                subscription = "shared" | "exclusive" (no $share, workers = 1),
                username, password_file, tls = false
    [web]       listen = "127.0.0.1", port = 8090, token_file, geojson
    [cap]       spool = "cap-out", http_url, mqtt_topic
    [broadcast] modbus_host, modbus_port = 502, device_id = 1, url;
                [broadcast.zones] zone = coil address
"""
import os
import tomllib

_ALLOWED = {
    "hub": {"database", "stations", "sender", "sender_id"},
    "mqtt": {"host", "port", "prefix", "group", "workers", "client_id", "session_expiry_s",
             "username", "password_file", "tls", "subscription"},
    "web": {"listen", "port", "token_file", "geojson"},
    "cap": {"spool", "http_url", "mqtt_topic"},
    "broadcast": {"modbus_host", "modbus_port", "device_id", "url", "zones"},
}


class ConfigError(Exception):
    pass


class HubConfig:
    pass


def load(path):
    errs = []
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as e:
        raise ConfigError("%s: cannot read (%s)" % (path, e.strerror)) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("%s: not valid TOML: %s" % (path, e)) from None
    base = os.path.dirname(os.path.abspath(path))

    def bad(key, why):
        errs.append("%s: %s: %s" % (path, key, why))

    for sec, val in raw.items():
        if sec not in _ALLOWED:
            bad(sec, "unknown section; allowed: %s" % ", ".join(sorted(_ALLOWED)))
        elif not isinstance(val, dict):
            bad(sec, "must be a table [%s]" % sec)
        else:
            for k in val:
                if k not in _ALLOWED[sec]:
                    bad("%s.%s" % (sec, k), "unknown key; allowed: %s" % ", ".join(
                        sorted(_ALLOWED[sec])))

    def get(sec, key, typ, default, check=None, allowed=""):
        v = raw.get(sec, {}).get(key, default) if isinstance(raw.get(sec, {}), dict) else default
        if v is None:
            return None
        if not isinstance(v, typ) or isinstance(v, bool) and typ is int or (check and not check(v)):
            bad("%s.%s" % (sec, key), "%r is not allowed; %s" % (v, allowed))
            return default
        return v

    def path_of(v):
        return v if v is None or os.path.isabs(v) else os.path.join(base, v)

    c = HubConfig()
    c.file = path
    db = get("hub", "database", str, "sqlite:///hub.db", lambda v: v.startswith((
        "sqlite:///", "postgresql://", "postgres://")), "want sqlite:///<path> or postgresql://...")
    if db.startswith("sqlite:///") and not os.path.isabs(db[10:]):
        db = "sqlite:///" + os.path.join(base, db[10:])
    c.database = db
    c.stations = path_of(get("hub", "stations", str, None, None, "a CSV file path"))
    c.sender = get("hub", "sender", str, "stationhub@localhost", lambda v: v and not set(v) & set(
        " ,<&"), "text without spaces, commas, < or &")
    c.sender_id = get("hub", "sender_id", str, "stationhub", lambda v: v.replace("-", "").replace(
        "_", "").replace(".", "").isalnum(), "letters, digits, - _ .")
    c.mqtt_host = get("mqtt", "host", str, "127.0.0.1")
    def port_ok(v):
        return (1 <= v <= 65535)
    c.mqtt_port = get("mqtt", "port", int, 1883, port_ok, "1..65535")
    c.prefix = get("mqtt", "prefix", str, "stations", lambda v: v and "+" not in v and
                   "#" not in v, "a topic prefix without wildcards")
    c.group = get("mqtt", "group", str, "stationhub", lambda v: v and not set(v) & set("/+#"),
                  "a name without / + #")
    c.workers = get("mqtt", "workers", int, 2, lambda v: 1 <= v <= 64, "1..64")
    c.subscription = get("mqtt", "subscription", str, "shared", lambda v: v in (
        "shared", "exclusive"), 'allowed "shared" ($share, several workers) or "exclusive"')
    if c.subscription == "exclusive" and c.workers != 1:
        bad("mqtt.workers", "%d workers with subscription = \"exclusive\": each would get every"
            " message; use workers = 1, or subscription = \"shared\"" % c.workers)
    c.client_id = get("mqtt", "client_id", str, "stationhub-1", lambda v: 0 < len(v) <= 20,
                      "1..20 characters (the workers add -wN)")
    c.session_expiry_s = get("mqtt", "session_expiry_s", int, 7 * 86400,
                             lambda v: 60 <= v <= 2**32 - 1, "60..4294967295")
    c.username = get("mqtt", "username", str, None)
    pw = path_of(get("mqtt", "password_file", str, None))
    c.password = None
    if pw:
        try:
            with open(pw) as f:
                c.password = f.read().strip()
        except OSError as e:
            bad("mqtt.password_file", "cannot read %s (%s)" % (pw, e.strerror))
    c.tls = get("mqtt", "tls", bool, False)
    c.web_listen = get("web", "listen", str, "127.0.0.1")
    c.web_port = get("web", "port", int, 8090, lambda v: 0 <= v <= 65535, "0..65535")
    c.token_file = path_of(get("web", "token_file", str, None))
    c.geojson = path_of(get("web", "geojson", str, None))
    c.spool = path_of(get("cap", "spool", str, "cap-out"))
    c.http_url = get("cap", "http_url", str, None, lambda v: v.startswith(("http://", "https://")),
                     "an http:// or https:// URL")
    c.cap_topic = get("cap", "mqtt_topic", str, None, lambda v: v and "+" not in v and "#" not in v,
                      "a topic without wildcards")
    c.bc_host = get("broadcast", "modbus_host", str, None)
    c.bc_port = get("broadcast", "modbus_port", int, 502, port_ok, "1..65535")
    c.bc_device = get("broadcast", "device_id", int, 1, lambda v: 0 <= v <= 247, "0..247")
    c.bc_url = get("broadcast", "url", str, None, lambda v: v.startswith(("http://", "https://")),
                   "an http:// or https:// URL")
    zones = get("broadcast", "zones", dict, {})
    for z, coil in zones.items():
        if not isinstance(coil, int) or isinstance(coil, bool) or not 0 <= coil <= 65535:
            bad("broadcast.zones.%s" % z, "%r is not a coil address 0..65535" % (coil,))
    c.bc_zones = zones
    if c.bc_host and not zones:
        bad("broadcast.zones", "modbus_host is set but no zone has a coil")
    for key, p in (("hub.stations", c.stations), ("web.geojson", c.geojson),
                   ("web.token_file", c.token_file)):
        if p and not os.path.isfile(p):
            bad(key, "file %s does not exist" % p)
    if errs:
        raise ConfigError("\n".join(errs))
    return c
