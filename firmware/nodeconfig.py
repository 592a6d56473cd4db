"""The node's configuration on flash: `config.json`, checked at every boot.

    {"version": 3, "node": 17, "key": "<64 hex digits from stationctl keygen>",
     "board": "esp32_devkitc",
     "channels": [{"id": "rain.0", "driver": "rain", "mm_per_tip": 0.2},
                  {"id": "displacement.0", "driver": "drawwire", "cal": [[0.1, 0], [0.9, 50000]]},
                  {"id": "water_level.0", "driver": "loop420", "value_4ma": 0, "value_20ma": 10000}],
     "rules": [[1, 16, 1, 4, 1, 3000, 100, 2, 600]],      # protocol/TRIP.md wire lists
     "intervals": {"sample_s": 60, "intensified_s": 10, "report_s": 600, "status_s": 3600},
     "sleep": "light", "log_kb": 128, "watchdog_s": 60}

Channel ids are "kind.instance" names or channel id bytes (protocol/channels.py);
every other key of a channel entry is a parameter of its driver. Rules are wire lists
or tables (protocol.trip.Rule.from_wire / from_dict) and must name channels of this node.

Boot: `load()` checks config.json; an error is printed naming the file, the key and
what is allowed, then the last good config (config.good.json, saved whenever a config
passes the checks) is used. With neither, the node runs on SAFE: it samples its
supply voltage and logs it but never transmits, because there is no key (there is
no default key, ever: I5).

Remote changes arrive in the authenticated CONFIG downlink (key C_INTERVALS,
C_RULES), checked exactly like the file and written with write-temp-then-rename;
a newer version is applied, an equal one is only acknowledged again, an older one
is answered STALE. The version goes out in HELLO and STATUS.

The running config is always config.good.json too: load() saves it there when it runs
on config.json, and apply_downlink saves both files. So the node keeps only the checked
records in RAM, not the JSON (~0.65 KB for a station): a downlink reads
config.good.json back to build the new config on, and is refused if that file is not
the running version.
"""
import json

from firmware.runconfig import DEFAULT_INTERVALS, NodeConfig, SafeConfig
from protocol import channels, messages

CONFIG_FILE = "config.json"
GOOD_FILE = "config.good.json"

DRIVERS = ("rain", "drawwire", "loop420", "rs485", "battery", "supply", "temperature", "fake")
SLEEP_MODES = ("none", "light")
INTERVAL_KEYS = ("sample_s", "intensified_s", "report_s", "status_s")
_WIRE_INTERVALS = {messages.I_SAMPLE_S: "sample_s", messages.I_INTENSIFIED_S: "intensified_s",
                   messages.I_REPORT_S: "report_s", messages.I_STATUS_S: "status_s"}


class ConfigError(ValueError):
    pass


def _fail(source, key, msg):
    raise ConfigError("%s: key '%s': %s" % (source, key, msg))


def _int(source, key, v, lo, hi):
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        _fail(source, key, "%r: allowed an integer %d..%d" % (v, lo, hi))
    return v


def checked(raw, source=CONFIG_FILE):
    """A runconfig.NodeConfig from the JSON dict `raw`, which it does not keep (on a node
    it is config.good.json on flash). Raises ConfigError naming the source, the key and
    what is allowed."""
    cfg = NodeConfig()
    check_into(cfg, raw, source)
    return cfg


def check_into(cfg, raw, source=CONFIG_FILE):
    """Check `raw` and set the fields of the record `cfg` (runconfig.NodeConfig)."""
    if not isinstance(raw, dict):
        raise ConfigError("%s: the top level must be a JSON object" % source)
    cfg.source = source
    cfg.version = _int(source, "version", raw.get("version"), 1, 0x7FFFFFFF)
    cfg.node = _int(source, "node", raw.get("node"), 1, 0xFFFF)
    cfg.key = _key(source, raw.get("key"))
    b = raw.get("board")
    if not isinstance(b, str) or not b:
        _fail(source, "board", "%r: allowed the name of a file in firmware/variants/ "
              "(e.g. \"esp32_devkitc\")" % (b,))
    cfg.board = b
    cfg.channels = _channels(source, raw.get("channels"))
    cfg.intervals = _intervals(source, raw.get("intervals", DEFAULT_INTERVALS))
    cfg.rules = _rules(source, raw.get("rules", []), cfg.channels)
    from protocol.ruleparse import check_timing
    bad = check_timing(cfg.rules, cfg.intervals["sample_s"], cfg.intervals["intensified_s"])
    if bad:
        _fail(source, "rules[%d]" % bad[0], bad[1])
    s = raw.get("sleep", "light")
    if s not in SLEEP_MODES:
        _fail(source, "sleep", "%r: allowed %s" % (s, ", ".join(SLEEP_MODES)))
    cfg.sleep = s
    cfg.log_bytes = _int(source, "log_kb", raw.get("log_kb", 128), 16, 4096) * 1024
    cfg.watchdog_ms = _int(source, "watchdog_s", raw.get("watchdog_s", 60), 10, 3600) * 1000
    cfg.radio = raw.get("radio", {})
    cfg.safe = False


def _key(source, k):
    from protocol.mic import BadKey, check_key
    if not isinstance(k, str) or len(k) % 2:
        _fail(source, "key", "missing or not hex: allowed 32..128 hex digits from `stationctl keygen`")
    try:
        raw = bytes(int(k[i:i + 2], 16) for i in range(0, len(k), 2))
    except ValueError:
        _fail(source, "key", "not hex: allowed 32..128 hex digits from `stationctl keygen`")
    try:
        check_key(raw)
    except BadKey as e:
        _fail(source, "key", str(e))
    return raw


def parse_chan(source, key, v):
    if isinstance(v, int) and not isinstance(v, bool):
        if not 0 <= v <= 255 or (v >> 3) not in channels.KINDS:
            _fail(source, key, "channel id %r: allowed kind << 3 | instance with a known kind" % (v,))
        return v
    if isinstance(v, str) and "." in v:
        name, _, inst = v.partition(".")
        try:
            return channels.chan_id(channels.kind_by_name(name), int(inst))
        except ValueError as e:
            _fail(source, key, "%r: %s" % (v, e))
    _fail(source, key, "%r: allowed \"kind.instance\" (e.g. \"rain.0\") or a channel id byte" % (v,))


def _channels(source, lst):
    if not isinstance(lst, list) or not lst:
        _fail(source, "channels", "missing or empty: allowed a list of {\"id\", \"driver\", params}")
    out = []
    seen = []
    for i in range(len(lst)):
        c = lst[i]
        key = "channels[%d]" % i
        if not isinstance(c, dict):
            _fail(source, key, "must be an object with \"id\" and \"driver\"")
        chan = parse_chan(source, key + ".id", c.get("id"))
        if chan in seen:
            _fail(source, key + ".id", "channel %s appears twice: each channel once" % channels.label(chan))
        seen.append(chan)
        drv = c.get("driver")
        if drv not in DRIVERS:
            _fail(source, key + ".driver", "%r: allowed %s" % (drv, ", ".join(DRIVERS)))
        params = {}
        for k in c:
            if k not in ("id", "driver"):
                params[k] = c[k]
        out.append((chan, drv, params))
    return out


def _intervals(source, d):
    if not isinstance(d, dict):
        _fail(source, "intervals", "must be an object with %s" % ", ".join(INTERVAL_KEYS))
    out = {}
    for k in d:
        if k not in INTERVAL_KEYS:
            _fail(source, "intervals." + k, "unknown: allowed %s" % ", ".join(INTERVAL_KEYS))
    for k in INTERVAL_KEYS:
        out[k] = _int(source, "intervals." + k, d.get(k, DEFAULT_INTERVALS[k]), 1, 86400)
    if not out["intensified_s"] <= out["sample_s"] <= out["report_s"]:
        _fail(source, "intervals", "need intensified_s <= sample_s <= report_s, got %d, %d, %d"
              % (out["intensified_s"], out["sample_s"], out["report_s"]))
    return out


def _rules(source, lst, chans):
    from protocol.trip import Rule
    if not isinstance(lst, list):
        _fail(source, "rules", "must be a list of rules (wire lists or tables)")
    ids = [c[0] for c in chans]
    out = []
    for i in range(len(lst)):
        r = lst[i]
        try:
            rule = Rule.from_dict(r) if isinstance(r, dict) else Rule.from_wire(r)
        except ValueError as e:
            _fail(source, "rules[%d]" % i, str(e))
        if rule.chan not in ids:
            _fail(source, "rules[%d].chan" % i, "channel 0x%02x is not a channel of this node: "
                  "allowed %s" % (rule.chan, ", ".join([channels.label(c) for c in ids])))
        out.append(rule)
    try:
        # what TripEngine(out) checks, without building a throwaway engine (its states and
        # window buffers): a CONFIG then builds them once, in set_rules
        from protocol.ruleparse import check_rules
        check_rules(out)
    except ValueError as e:
        _fail(source, "rules", str(e))
    return out


# --- flash ---------------------------------------------------------------------------

def _read(fs, name):
    f = fs.open(name, "r")
    try:
        return f.read()
    finally:
        f.close()


def save(fs, name, raw):
    """write-temp-then-rename: a power cut leaves the old file or the new one. `raw`: a
    dict, or its JSON text."""
    tmp = name + ".tmp"
    f = fs.open(tmp, "w")
    try:
        f.write(raw if isinstance(raw, str) else json.dumps(raw))
    finally:
        f.close()
    fs.rename(tmp, name)


VARIANTS_DIR = "firmware/variants"


def check_board(fs, cfg):
    """The board named in the config must have its file on the filesystem."""
    if fs.exists("%s/%s.json" % (VARIANTS_DIR, cfg.board)):
        return
    try:
        have = [n[:-5] for n in fs.listdir(VARIANTS_DIR) if n.endswith(".json")]
    except OSError:
        have = []
    _fail(cfg.source, "board", "%r has no board file %s/%s.json: allowed %s (copy the board "
          "file with `stationctl flash`)" % (cfg.board, VARIANTS_DIR, cfg.board,
                                             ", ".join(sorted(have)) or "none on this filesystem"))


def save_running(fs, raw):
    """`raw` as the config the node runs: config.json for the next boot and
    config.good.json, which apply_downlink reads back."""
    save(fs, CONFIG_FILE, raw)
    save(fs, GOOD_FILE, raw)


def load(fs, console=print, board_hint="unknown"):
    """The config to run on: config.json, else the last good one, else SafeConfig.
    Every problem is printed on the console (never the key)."""
    for name in (CONFIG_FILE, GOOD_FILE):
        if not fs.exists(name):
            console("config: %s: not found" % name)
            continue
        try:
            text = _read(fs, name)
            try:
                raw = json.loads(text)
            except ValueError as e:
                raise ConfigError("%s: not valid JSON (%s): fix the file or reflash it with "
                                  "`stationctl flash`" % (name, e))
            cfg = checked(raw, name)
            check_board(fs, cfg)
        except ConfigError as e:
            console("config error: %s" % e)
            continue
        if name == CONFIG_FILE:
            # compared as data: config.json is the technician's formatting, the good copy
            # json.dumps's, so comparing texts would rewrite the copy at every boot
            try:
                same = json.loads(_read(fs, GOOD_FILE)) == raw
            except (OSError, ValueError):
                same = False
            if not same:
                save(fs, GOOD_FILE, raw)
        else:
            console("config: running on the last good config (version %d)" % cfg.version)
        return cfg
    console("config: no valid config: sampling and logging on safe defaults, radio off "
            "(no key) until a config is flashed")
    return SafeConfig(board_hint)


def apply_downlink(fs, cfg, m, install=None):
    """Apply a CONFIG map (already MIC-checked and fresh) to the running config `cfg`,
    whose JSON is read back from config.good.json. Returns (new_cfg or None, result,
    reason): RESULT_OK with the new config when it is newer and valid (saved to flash),
    RESULT_OK with None for the same version (nothing to redo), RESULT_STALE for an
    older one, RESULT_REJECTED with the reason otherwise, also when config.good.json is
    missing, unreadable or not the running version.

    `install(new)`, if given, puts a valid new config to work before it is saved. The
    steps that allocate (checks, JSON text, install) all come before the first write, so
    a MemoryError in any of them leaves flash and the running node as they were (the
    caller counts it and sends no ack: the gateway sends the CONFIG again); after it,
    writing the text allocates next to nothing."""
    version = m.get(messages.C_VERSION)
    if cfg.safe:
        return None, messages.RESULT_REJECTED, "node has no valid config on flash"
    if version == cfg.version:
        return None, messages.RESULT_OK, ""
    if version < cfg.version:
        return None, messages.RESULT_STALE, "version %d is older than %d" % (version, cfg.version)
    try:
        raw = json.loads(_read(fs, GOOD_FILE))
    except (OSError, ValueError):
        raw = None
    if not isinstance(raw, dict) or raw.get("version") != cfg.version:
        # `stationctl provision` writes config.json and resets the node, whose boot saves both
        return None, messages.RESULT_REJECTED, ("running config not on flash (config.good.json): "
                                                "run `stationctl provision`")
    raw["version"] = version
    if messages.C_INTERVALS in m:
        iv = m[messages.C_INTERVALS]
        if not isinstance(iv, dict):
            return None, messages.RESULT_REJECTED, "intervals must be a map"
        merged = dict(cfg.intervals)
        for k in iv:
            name = _WIRE_INTERVALS.get(k)
            if name is None:
                return None, messages.RESULT_REJECTED, "interval key %r unknown: allowed 1..4" % (k,)
            merged[name] = iv[k]
        raw["intervals"] = merged
    if messages.C_RULES in m:
        raw["rules"] = m[messages.C_RULES]
    try:
        new = checked(raw, "downlink config v%d" % version)
    except ConfigError as e:
        return None, messages.RESULT_REJECTED, str(e)[:80]
    # a downlink changes neither the channels nor the radio: keep them as boot left them,
    # without the settings only boot reads (firmware/startup.py)
    new.channels = cfg.channels
    new.radio = cfg.radio
    text = json.dumps(raw)
    raw = None
    if install is not None:
        install(new)
    save_running(fs, text)
    return new, messages.RESULT_OK, ""
