"""The checks of site.toml, one function per section: each reads its table with a
_Checker, records every problem as a ConfigIssue (file, dotted key, what is allowed) and
returns the section's object (gateway/config_schema.py) or None. gateway/config.py runs
them in order and raises once with all the issues."""
import os
import re
import stat
import tomllib

from gateway import rule_schema
from gateway.config_schema import (
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
    Storage,
)
from protocol import channels, levels

# ---------------------------------------------------------------- checking helpers

_MISSING = object()


class _Checker:
    """Reads typed values out of TOML tables, recording issues instead of raising."""

    def __init__(self, path):
        self.path = str(path)
        self.issues = []
        self.warnings = []
        self.base = os.path.dirname(os.path.abspath(self.path))

    def err(self, key, message):
        self.issues.append(ConfigIssue(self.path, key, message))

    def warn(self, key, message):
        self.warnings.append(ConfigIssue(self.path, key, message))

    def table(self, parent, name, key, required=True):
        v = parent.get(name, _MISSING)
        if v is _MISSING:
            if required:
                self.err(key, "missing section [%s]: add it (see gateway/examples/site.toml)" % key)
            return None
        if not isinstance(v, dict):
            self.err(key, "must be a table [%s], got %s" % (key, _tname(v)))
            return None
        return v

    def array_of_tables(self, parent, name, key):
        v = parent.get(name, _MISSING)
        if v is _MISSING:
            return []
        if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
            self.err(key, "must be an array of tables [[%s]], got %s" % (key, _tname(v)))
            return []
        return v

    def unknown(self, tbl, allowed, key):
        for k in tbl:
            if k not in allowed:
                self.err(_join(key, k), "unknown key; allowed keys here: %s" % ", ".join(allowed))

    def value(self, tbl, name, key, kind, default=_MISSING, choices=None, lo=None, hi=None,
              pattern=None, pattern_text=None):
        """kind: str, int, float or bool. Returns the value, the default, or None on error."""
        full = _join(key, name)
        v = tbl.get(name, _MISSING)
        if v is _MISSING:
            if default is _MISSING:
                self.err(full, "required key is missing; %s" % _allowed(kind, choices, lo, hi,
                                                                        pattern_text))
                return None
            return default
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            self.err(full, "%r is a %s; %s" % (v, _tname(v), _allowed(kind, choices, lo, hi,
                                                                      pattern_text)))
            return None
        bad = (choices is not None and v not in choices) or \
            (lo is not None and v < lo) or (hi is not None and v > hi) or \
            (pattern is not None and not pattern.match(v))
        if kind is float and v != v:  # NaN passes every comparison
            bad = True
        if bad:
            self.err(full, "%r is not allowed; %s" % (v, _allowed(kind, choices, lo, hi,
                                                                  pattern_text)))
            return None
        return v

    def file_path(self, tbl, name, key, required=False, secret=False, must_exist=True,
                  hint=""):
        """A path value, made absolute. Secrets must have no group/other permission bits."""
        p = self.value(tbl, name, key, str, default=None if not required else _MISSING)
        if not p:
            return p if p is not None else ""
        p = p if os.path.isabs(p) else os.path.join(self.base, p)
        if not must_exist:
            return p
        full = _join(key, name)
        try:
            st = os.stat(p)
        except FileNotFoundError:
            self.err(full, "file %s does not exist%s" % (p, hint))
            return p
        except OSError as e:
            self.err(full, "cannot read %s: %s" % (p, e.strerror))
            return p
        if not stat.S_ISREG(st.st_mode):
            self.err(full, "%s is not a regular file" % p)
        elif not os.access(p, os.R_OK):
            self.err(full, "%s is not readable by this user" % p)
        elif secret and st.st_mode & 0o077:
            self.err(full, "%s holds a secret but is readable by group or others (mode %04o): "
                           "run `chmod 600 %s` and make the service user its owner"
                     % (p, stat.S_IMODE(st.st_mode), p))
        return p


def _join(key, name):
    return "%s.%s" % (key, name) if key else name


def _tname(v):
    return {str: "string", int: "integer", float: "float", bool: "boolean", list: "array",
            dict: "table"}.get(type(v), type(v).__name__)


def _allowed(kind, choices, lo, hi, pattern_text):
    if choices is not None:
        return "allowed: %s" % ", ".join(repr(c) if isinstance(c, str) else str(c)
                                         for c in choices)
    if pattern_text:
        return "allowed: %s" % pattern_text
    what = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}[kind]
    if lo is not None and hi is not None:
        return "allowed: %s from %s to %s" % (what, lo, hi)
    if lo is not None:
        return "allowed: %s >= %s" % (what, lo)
    if hi is not None:
        return "allowed: %s <= %s" % (what, hi)
    return "allowed: %s" % what


def _chan(c, tbl, name, key):
    """"kind.instance" -> channel id byte, or None with an issue recorded."""
    v = c.value(tbl, name, key, str)
    if v is None:
        return None, None
    return _chan_text(c, v, _join(key, name))


def _chan_text(c, v, full):
    kinds = ", ".join(sorted(k[0] for k in channels.KINDS.values()))
    kind, _, inst = v.partition(".")
    try:
        k = channels.kind_by_name(kind)
    except ValueError:
        c.err(full, "%r has an unknown channel kind %r; allowed: <kind>.<0..%d> with kind one "
                    "of %s" % (v, kind, channels.MAX_INSTANCE, kinds))
        return None, None
    if not inst.isdigit() or int(inst) > channels.MAX_INSTANCE:
        c.err(full, "%r needs an instance 0..%d after the dot, e.g. %r"
              % (v, channels.MAX_INSTANCE, kind + ".0"))
        return None, None
    return channels.chan_id(k, int(inst)), v


# ---------------------------------------------------------------- sections

def _site(c, doc):
    t = c.table(doc, "site", "site")
    if t is None:
        return None
    c.unknown(t, ("id", "gateway_id"), "site")
    pat = "lower-case letters, digits and '-', 1 to 32 characters"
    sid = c.value(t, "id", "site", str, pattern=ID_RE, pattern_text=pat)
    gid = c.value(t, "gateway_id", "site", str, pattern=ID_RE, pattern_text=pat)
    return Site(sid, gid)


def _storage(c, doc):
    t = c.table(doc, "storage", "storage")
    if t is None:
        return None
    c.unknown(t, ("path", "quota_mb", "live_horizon_s"), "storage")
    path = c.file_path(t, "path", "storage", required=True, must_exist=False)
    return Storage(path,
                   c.value(t, "quota_mb", "storage", int, default=512, lo=16, hi=1024 * 1024),
                   c.value(t, "live_horizon_s", "storage", float, default=300.0, lo=1.0,
                           hi=86400.0))


def _batch(c, doc):
    t = c.table(doc, "batch", "batch", required=False) or {}
    c.unknown(t, ("max_readings", "max_bytes", "max_age_s", "schema"), "batch")
    return Batch(c.value(t, "max_readings", "batch", int, default=5000, lo=1, hi=1000000),
                 c.value(t, "max_bytes", "batch", int, default=65536, lo=1024,
                         hi=256 * 1024 * 1024),
                 c.value(t, "max_age_s", "batch", float, default=5.0, lo=0.01, hi=3600.0),
                 c.value(t, "schema", "batch", int, default=2, choices=(1, 2)))


def _mqtt(c, doc, site):
    t = c.table(doc, "mqtt", "mqtt")
    if t is None:
        return None
    keys = ("host", "port", "protocol", "client_id", "topic_prefix", "keepalive_s", "inflight",
            "username", "password_file", "tls_ca", "tls_cert", "tls_key",
            "reconnect")    # [mqtt.reconnect]: gateway/config_security.py
    c.unknown(t, keys, "mqtt")
    topic_pat = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
    m = dict(
        host=c.value(t, "host", "mqtt", str, pattern=re.compile(r"^\S+$"),
                     pattern_text="a host name or IP address"),
        port=c.value(t, "port", "mqtt", int, default=1883, lo=1, hi=65535),
        protocol=c.value(t, "protocol", "mqtt", str, default="v5", choices=("v5", "v311")),
        client_id=c.value(t, "client_id", "mqtt", str, pattern=re.compile(r"^[\x21-\x7e]{1,64}$"),
                          pattern_text="1 to 64 printable ASCII characters, no spaces",
                          default="stationgw-%s" % (site.gateway_id if site and
                                                    site.gateway_id else "gw")),
        topic_prefix=c.value(t, "topic_prefix", "mqtt", str, default="stations",
                             pattern=topic_pat,
                             pattern_text="topic levels of letters, digits, '_', '-', '.' "
                                          "separated by '/', no wildcards"),
        keepalive_s=c.value(t, "keepalive_s", "mqtt", int, default=30, lo=5, hi=3600),
        inflight=c.value(t, "inflight", "mqtt", int, default=16, lo=1, hi=1000),
        username=c.value(t, "username", "mqtt", str, default=""),
        password_file=c.file_path(t, "password_file", "mqtt", secret=True),
        tls_ca=c.file_path(t, "tls_ca", "mqtt"),
        tls_cert=c.file_path(t, "tls_cert", "mqtt"),
        tls_key=c.file_path(t, "tls_key", "mqtt", secret=True),
    )
    if m["password_file"] and not m["username"]:
        c.err("mqtt.password_file", "a password needs a user name: set mqtt.username too")
    if bool(m["tls_cert"]) != bool(m["tls_key"]):
        c.err("mqtt.tls_cert", "a client certificate needs both tls_cert and tls_key")
    if m["tls_cert"] and not m["tls_ca"]:
        c.err("mqtt.tls_ca", "a client certificate is only used with TLS: set tls_ca too")
    if m["password_file"] and not m["tls_ca"] and m["host"] not in ("127.0.0.1", "localhost",
                                                                     "::1"):
        c.warn("mqtt.password_file", "the password goes to %s without TLS: set mqtt.tls_ca"
               % m["host"])
    return Mqtt(**m)


def _radio(c, doc):
    t = c.table(doc, "radio", "radio", required=False)
    if t is None:
        return None
    c.unknown(t, ("port", "baudrate", "module", "channel", "air_rate", "address", "keys_file",
                  "m0_gpio", "m1_gpio", "gpio_chip"), "radio")
    module = c.value(t, "module", "radio", str, choices=tuple(AIR_RATES))
    rates = AIR_RATES.get(module)
    r = dict(
        port=c.value(t, "port", "radio", str, pattern=re.compile(r"^\S+$"),
                     pattern_text="a serial device path such as /dev/ttyAMA0"),
        baudrate=c.value(t, "baudrate", "radio", int, default=9600, choices=BAUDRATES),
        module=module,
        channel=c.value(t, "channel", "radio", int, default=0, lo=0,
                        hi=RADIO_CHANNELS.get(module, 255)),
        air_rate=c.value(t, "air_rate", "radio", int, default=2400, choices=rates),
        address=c.value(t, "address", "radio", int, default=0, lo=0, hi=65535),
        m0_gpio=_gpio_line(c, t, "m0_gpio", 22),
        m1_gpio=_gpio_line(c, t, "m1_gpio", 27),
        gpio_chip=c.value(t, "gpio_chip", "radio", str, default="/dev/gpiochip0",
                          pattern=re.compile(r"^(/dev/)?gpiochip[0-9]{1,3}$"),
                          pattern_text="a GPIO chip such as \"/dev/gpiochip0\" (`gpiodetect` "
                                       "lists them)"),
        keys_file=c.file_path(t, "keys_file", "radio", required=True, secret=True,
                              hint=": make it with `stationctl keygen` (mode 0600)"),
    )
    keys = Keys({}, r["keys_file"])
    if r["keys_file"] and not any(i.key == "radio.keys_file" for i in c.issues):
        keys = load_keys(r["keys_file"], c)
    return Radio(keys=keys, **r)


def _gpio_line(c, t, name, default):
    """A line offset on radio.gpio_chip (no 511 cap: offsets are per chip) or a line name."""
    v = t.get(name, default)
    if isinstance(v, str) and re.match(r"^[A-Za-z0-9_.-]{1,31}$", v):
        return v
    return c.value(t, name, "radio", int, default=default, lo=0, hi=65535)


def load_keys(path, c=None):
    """Read a keys file (`[keys] "101" = "<64 hex>"`). With a checker, issues are recorded
    there (under the keys file's name); without one, ConfigError is raised."""
    own = _Checker(path)
    keys = {}
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        own.err("", "cannot read keys file: %s" % e.strerror)
        doc = None
    except tomllib.TOMLDecodeError as e:
        own.err("", "TOML syntax error: %s" % e)
        doc = None
    if doc is not None:
        own.unknown(doc, ("keys",), "")
        t = own.table(doc, "keys", "keys") or {}
        for name, v in t.items():
            key = 'keys."%s"' % name
            if not name.isdigit() or not 1 <= int(name) <= NODE_ID_MAX:
                own.err(key, "node ids are integers 1..%d written as strings, e.g. \"101\""
                        % NODE_ID_MAX)
                continue
            if not isinstance(v, str):
                own.err(key, "must be a string of 64 hex digits (a 32-byte key)")
                continue
            if KEY_PLACEHOLDER in v or "placeholder" in v.lower():
                own.err(key, "is the example placeholder, not a key: make real keys with "
                             "`stationctl keygen` (there are no default keys)")
                continue
            try:
                raw = bytes.fromhex(v)
            except ValueError:
                raw = b""
            if len(raw) != 32:
                own.err(key, "must be 64 hex digits (a 32-byte key); make one with "
                             "`stationctl keygen`")
                continue
            if raw.count(raw[0]) == len(raw):
                own.err(key, "is a trivial key (one repeated byte, e.g. all zero): make a real "
                             "one with `stationctl keygen`")
                continue
            keys[int(name)] = raw
        if not keys and not own.issues:
            own.err("keys", "no node keys: add them with `stationctl keygen`")
    if c is not None:
        c.issues.extend(own.issues)
        return Keys(keys, path)
    if own.issues:
        raise ConfigError(own.issues)
    return Keys(keys, path)


def _nodes(c, doc):
    nodes, seen_ids, seen_names = [], set(), set()
    for i, t in enumerate(c.array_of_tables(doc, "nodes", "nodes")):
        key = "nodes[%d]" % i
        c.unknown(t, ("id", "name", "channels"), key)
        nid = c.value(t, "id", key, int, lo=1, hi=NODE_ID_MAX)
        name = c.value(t, "name", key, str, pattern=re.compile(r"^\S.{0,63}$"),
                       pattern_text="1 to 64 characters")
        if nid is not None:
            if nid in seen_ids:
                c.err(key + ".id", "node id %d appears twice in [[nodes]]; ids must be unique"
                      % nid)
            seen_ids.add(nid)
        if name is not None:
            if name in seen_names:
                c.err(key + ".name", "node name %r appears twice; names must be unique" % name)
            seen_names.add(name)
        chans = []
        raw = t.get("channels", [])
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            c.err(key + ".channels", "must be an array of channel names such as "
                                     "[\"rain.0\", \"water_level.0\"]")
        else:
            for j, text in enumerate(raw):
                ch, _ = _chan_text(c, text, "%s.channels[%d]" % (key, j))
                if ch is not None:
                    chans.append(ch)
        nodes.append(Node(nid, name, tuple(chans)))
    return nodes


def _buses(c, mb):
    buses, names = [], set()
    for i, t in enumerate(c.array_of_tables(mb, "buses", "modbus.buses")):
        key = "modbus.buses[%d]" % i
        name = c.value(t, "name", key, str, pattern=re.compile(r"^[A-Za-z0-9_.-]{1,32}$"),
                       pattern_text="1 to 32 letters, digits, '_', '.', '-'")
        if name in names:
            c.err(key + ".name", "bus name %r appears twice; names must be unique" % name)
        names.add(name)
        kind = c.value(t, "type", key, str, choices=("rtu", "tcp"))
        if kind == "tcp":
            c.unknown(t, ("name", "type", "host", "port"), key)
            buses.append(Bus(name, kind,
                             port=c.value(t, "port", key, int, default=502, lo=1, hi=65535),
                             host=c.value(t, "host", key, str, pattern=re.compile(r"^\S+$"),
                                          pattern_text="a host name or IP address")))
        elif kind == "rtu":
            c.unknown(t, ("name", "type", "port", "baudrate", "parity", "stopbits"), key)
            buses.append(Bus(name, kind,
                             port=c.value(t, "port", key, str, pattern=re.compile(r"^\S+$"),
                                          pattern_text="a serial device path such as "
                                                       "/dev/ttyUSB0"),
                             baudrate=c.value(t, "baudrate", key, int, default=9600,
                                              choices=BAUDRATES),
                             parity=c.value(t, "parity", key, str, default="N",
                                            choices=("N", "E", "O")),
                             stopbits=c.value(t, "stopbits", key, int, default=1,
                                              choices=(1, 2))))
    return buses


def _points(c, dev, key):
    pts, chans = [], set()
    for j, t in enumerate(c.array_of_tables(dev, "points", key + ".points")):
        pk = "%s.points[%d]" % (key, j)
        c.unknown(t, ("chan", "table", "address", "type", "byte_order", "word_order", "scale",
                      "offset", "unit"), pk)
        chan, chan_name = _chan(c, t, "chan", pk)
        if chan is not None:
            if chan in chans:
                c.err(pk + ".chan", "%s is read twice on this device; one point per channel"
                      % chan_name)
            chans.add(chan)
            unit = t.get("unit")
            want = channels.info(chan)[1]
            if unit is not None and unit != want:
                c.err(pk + ".unit", "%r does not match the unit of %s; allowed: %r (set scale "
                                    "so that raw * scale + offset is in %s)"
                      % (unit, chan_name, want, want))
        table = c.value(t, "table", pk, str, choices=POINT_TABLES)
        address = c.value(t, "address", pk, int, lo=0, hi=65535)
        if table in ("coil", "discrete"):
            ptype = c.value(t, "type", pk, str, default="bool", choices=("bool",))
        else:
            ptype = c.value(t, "type", pk, str, choices=REGISTER_TYPES)
        bo = c.value(t, "byte_order", pk, str, default="big", choices=ORDERS)
        wo = c.value(t, "word_order", pk, str, default="big", choices=ORDERS)
        scale = c.value(t, "scale", pk, float, default=1.0)
        offset = c.value(t, "offset", pk, float, default=0.0)
        if scale == 0.0:
            c.err(pk + ".scale", "0.0 is not allowed; allowed: a non-zero number")
        p = Point(chan, chan_name, table, address, ptype, bo, wo, scale, offset)
        if address is not None and ptype is not None and address + p.count - 1 > 65535:
            c.err(pk + ".address", "%s at %d runs past register 65535" % (ptype, address))
        pts.append(p)
    if not pts:
        c.err(key + ".points", "a device needs at least one [[modbus.devices.points]]")
    return pts


_OPTIONAL = object()     # a trailing parameter that is left out when not given

# The engine's parameter order per kind, names and ranges: protocol/ruleparse.py, with
# the gateway's unit overlay (gateway/rule_schema.py): (name, wire name, conversion, default).
RULE_PARAMS = {k: rule_schema.params(k, _OPTIONAL, _MISSING) for k in RULE_KINDS}


def _rules(c, dev, key, point_chans):
    rules, ids = [], set()
    for j, t in enumerate(c.array_of_tables(dev, "rules", key + ".rules")):
        rk = "%s.rules[%d]" % (key, j)
        kind = c.value(t, "kind", rk, str, choices=RULE_KINDS)
        spec = RULE_PARAMS.get(kind, ())
        for old, hint in rule_schema.renamed(t):
            c.err(rk + "." + old, "renamed: write %s" % hint)
        c.unknown(t, ("id", "chan", "kind", "level") + tuple(p[0] for p in spec) +
                  tuple(k for k, _ in rule_schema.renamed(t)), rk)
        rid = c.value(t, "id", rk, int, lo=0, hi=255)
        if rid is not None:
            if rid in ids:
                c.err(rk + ".id", "rule id %d appears twice on this device; ids must be unique"
                      % rid)
            ids.add(rid)
        chan, chan_name = _chan(c, t, "chan", rk)
        if chan is not None and chan not in point_chans:
            c.err(rk + ".chan", "%s is not read by this device; allowed: %s"
                  % (chan_name, ", ".join(sorted(point_chans.values())) or "(no points)"))
        level = None
        lv = t.get("level", _MISSING)
        if lv is _MISSING:
            c.err(rk + ".level", "required key is missing; allowed: blue, yellow, orange, red")
        else:
            try:
                level = levels.parse(lv)
                if level == levels.NORMAL:
                    raise ValueError()
            except ValueError:
                level = None
                c.err(rk + ".level", "%r is not allowed; allowed: blue, yellow, orange, red "
                                     "(or IV, III, II, I)" % (lv,))
        params, ok = [], None not in (rid, chan, kind, level) and chan in point_chans
        for name, wire, conv, default in spec:
            if default is _OPTIONAL:
                if name not in t:
                    continue
                default = _MISSING
            if name == "alpha" and level is not None:
                default = rule_schema.ALPHA[level]   # the level's tangent angle
            if conv == "op":
                v = c.value(t, name, rk, str, choices=("above", "below"))
                v = None if v is None else (1 if v == "above" else 2)
            elif conv == "int":
                lo, hi = rule_schema.int_range(kind, name)
                v = c.value(t, name, rk, int, default=default, lo=lo, hi=hi)
            else:
                v = c.value(t, name, rk, float, default=default,
                            lo=0.0 if name in ("hysteresis", "near") else None)
                if v is not None and chan is not None:
                    v = channels.from_units(chan, v)
            if v is None:
                ok = False
            params.append((wire, v))
        r = RuleSpec(rid, chan, kind, level, tuple(params))
        if ok:
            try:
                r.rule()
            except (ValueError, TypeError) as e:
                c.err(rk, "the trip engine refuses this rule: %s" % e)
        rules.append(r)
    return rules


def _modbus(c, doc, radio_ids):
    mb = c.table(doc, "modbus", "modbus", required=False)
    if mb is None:
        return Modbus()
    c.unknown(mb, ("buses", "devices", "alarm_output"), "modbus")
    buses = _buses(c, mb)
    by_bus = {b.name: b for b in buses if b.name}
    devices, names, nodes = [], set(), {}
    for i, t in enumerate(c.array_of_tables(mb, "devices", "modbus.devices")):
        key = "modbus.devices[%d]" % i
        c.unknown(t, ("name", "bus", "node", "device_id", "poll_s", "timeout_s", "retries",
                      "retry_backoff_s", "offline_probe_max_s", "points", "rules"), key)
        name = c.value(t, "name", key, str, pattern=re.compile(r"^[A-Za-z0-9_.-]{1,32}$"),
                       pattern_text="1 to 32 letters, digits, '_', '.', '-'")
        if name in names:
            c.err(key + ".name", "device name %r appears twice; names must be unique" % name)
        names.add(name)
        bus = c.value(t, "bus", key, str, choices=tuple(by_bus) if by_bus else None)
        if bus is not None and not by_bus:
            c.err(key + ".bus", "%r: no [[modbus.buses]] are defined; add one" % bus)
        node = c.value(t, "node", key, int, lo=1, hi=NODE_ID_MAX)
        if node is not None:
            if node in radio_ids:
                c.err(key + ".node", "node %d is also a radio node in [[nodes]]; a Modbus device "
                                     "needs its own virtual node id" % node)
            elif node in nodes:
                c.err(key + ".node", "node %d is already used by device %r; each device needs its "
                                     "own virtual node id" % (node, nodes[node]))
            nodes[node] = name
        b = by_bus.get(bus)
        hi_id = 247 if b is None or b.type == "rtu" else 255
        device_id = c.value(t, "device_id", key, int, lo=1 if hi_id == 247 else 0, hi=hi_id)
        poll_s = c.value(t, "poll_s", key, float, default=60.0, lo=1.0, hi=86400.0)
        if poll_s is not None and poll_s != int(poll_s):
            # the uplink stamps readings in whole seconds and a run's step is whole (SPEC §9.2)
            c.err(key + ".poll_s", "%r is not allowed; a whole number of seconds 1..86400 "
                  "(readings are stamped in whole seconds)" % poll_s)
        timeout_s = c.value(t, "timeout_s", key, float, default=0.5, lo=0.01, hi=30.0)
        points = _points(c, t, key)
        point_chans = {p.chan: p.chan_name for p in points if p.chan is not None}
        devices.append(Device(
            name, bus, node, device_id, poll_s, timeout_s,
            retries=c.value(t, "retries", key, int, default=2, lo=0, hi=10),
            retry_backoff_s=c.value(t, "retry_backoff_s", key, float, default=0.1, lo=0.0,
                                    hi=60.0),
            offline_probe_max_s=c.value(t, "offline_probe_max_s", key, float, default=300.0,
                                        lo=0.05, hi=86400.0),
            points=tuple(points),
            rules=tuple(_rules(c, t, key, point_chans))))
        rule_schema.check_timing(c, devices[-1], key)
    alarm = None
    t = c.table(mb, "alarm_output", "modbus.alarm_output", required=False)
    if t is not None:
        key = "modbus.alarm_output"
        c.unknown(t, ("device", "address", "min_level"), key)
        dev = c.value(t, "device", key, str, choices=tuple(n for n in names if n) or None)
        address = c.value(t, "address", key, int, lo=0, hi=65535)
        lv = t.get("min_level", "orange")
        try:
            min_level = levels.parse(lv)
            if min_level == levels.NORMAL:
                raise ValueError()
        except ValueError:
            min_level = None
            c.err(key + ".min_level", "%r is not allowed; allowed: blue, yellow, orange, red"
                  % (lv,))
        alarm = AlarmOutput(dev, address, min_level)
    return Modbus(tuple(buses), tuple(devices), alarm)
