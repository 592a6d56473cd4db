"""Site configuration: load `site.toml` (and the keys file it names), check every key,
and return one immutable `SiteConfig`.

    cfg = load("/etc/stationgw/site.toml")       # raises ConfigError with ALL problems
    cfg.site.id, cfg.mqtt.port, cfg.modbus.devices[0].points[0].chan   # chan is the id byte

Every problem is a `ConfigIssue(file, key, message)`; `key` is a dotted path such as
`modbus.devices[2].points[0].type`, and the message names the allowed values. The
loader collects all issues before raising, so an operator fixes a file in one pass.
Unknown keys are errors too (a typo like `poll_sec` must not silently become a
default). Relative paths in the file are taken relative to the file's directory.

Secrets: node keys and the MQTT password file must be readable only by the service
user (no group/other permission bits). There are no default keys: the placeholder of
`keys.example.toml`, all-zero keys and keys of one repeated byte are refused. `Keys`
never prints key material.

Modules: gateway/config_schema.py (the objects), gateway/config_checks.py (one check per
section), this file (reading the file and running the checks in order). Everything is
importable from here, as before the split.
"""
import os
import tomllib

from gateway import config_http, config_security
from gateway.config_checks import (  # noqa: F401  (re-exported)
    RULE_PARAMS,
    _batch,
    _Checker,
    _modbus,
    _mqtt,
    _nodes,
    _radio,
    _site,
    _storage,
    load_keys,
)
from gateway.config_schema import (  # noqa: F401  (re-exported)
    AIR_RATES,
    BAUDRATES,
    ID_RE,
    KEY_PLACEHOLDER,
    NODE_ID_MAX,
    ORDERS,
    POINT_TABLES,
    RADIO_CHANNELS,
    REGISTER_TYPES,
    RULE_KINDS,
    AlarmOutput,
    Batch,
    Bus,
    ConfigError,
    ConfigIssue,
    Device,
    Keys,
    Modbus,
    Mqtt,
    Node,
    Point,
    Radio,
    RuleSpec,
    Site,
    SiteConfig,
    Storage,
)

# ---------------------------------------------------------------- entry points

def parse(text, path="site.toml"):
    """Check a config given as TOML text; `path` is used in messages and for relative
    paths. Returns a SiteConfig or raises ConfigError listing every problem."""
    c = _Checker(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([ConfigIssue(path, "", "TOML syntax error: %s" % e)]) from None
    c.unknown(doc, ("site", "storage", "batch", "mqtt", "radio", "nodes", "modbus",
                    "commands", "http", "beidou", "zones"), "")
    from gateway import config_beidou
    beidou = config_beidou.parse(c, doc, BAUDRATES)
    site = _site(c, doc)
    storage = _storage(c, doc)
    batch = _batch(c, doc)
    mqtt = _mqtt(c, doc, site)
    radio = _radio(c, doc)
    nodes = _nodes(c, doc)
    modbus = _modbus(c, doc, {n.id for n in nodes if n.id is not None})
    security = config_security.parse(c, doc)
    http = config_http.check(c, doc)
    from gateway import config_zones
    zones = config_zones.parse(c, doc, {n.id for n in nodes}, [d.name for d in modbus.devices])
    if nodes and radio is None:
        c.err("radio", "[[nodes]] are listed but there is no [radio] section to hear them")
    keys_loaded = radio is not None and radio.keys_file and not any(
        i.key == "radio.keys_file" or i.file == radio.keys_file for i in c.issues)
    if keys_loaded:                   # a key that failed its own check was reported already
        for n in nodes:
            if n.id is not None and n.id not in radio.keys:
                c.err("radio.keys_file", "%s has no key for node %d (%s): add one with "
                                         "`stationctl keygen`" % (radio.keys_file, n.id, n.name))
        for nid in radio.keys.nodes():
            if nid not in {n.id for n in nodes}:
                c.warn("radio.keys_file", "key for node %d, which is not in [[nodes]]" % nid)
    # A missing serial device is only a warning: the config may be checked off-site,
    # and USB adapters come and go (the daemon retries).
    if radio is not None and radio.port and not os.path.exists(radio.port):
        c.warn("radio.port", "%s does not exist on this machine" % radio.port)
    for i, b in enumerate(modbus.buses):
        if b.type == "rtu" and isinstance(b.port, str) and not os.path.exists(b.port):
            c.warn("modbus.buses[%d].port" % i, "%s does not exist on this machine" % b.port)
    if radio is None and not modbus.devices:
        c.err("", "nothing to read: add a [radio] section with [[nodes]], or "
                  "[[modbus.devices]]")
    if c.issues:
        raise ConfigError(c.issues)
    return SiteConfig(str(path), site, storage, batch, mqtt, radio, tuple(nodes), modbus,
                      tuple(c.warnings), http, security, beidou, zones)


def load(path):
    """Read and check a config file; raises ConfigError (with every problem) if it is bad."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError([ConfigIssue(path, "", "cannot read config file: %s" % e.strerror)]) \
            from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError([ConfigIssue(path, "", "not UTF-8 text: %s" % e)]) from None
    return parse(text, path)
