"""`stationctl provision --port PORT NODE_ID --profile PROFILE --registry keys.toml`

Writes the node's config.json (firmware/nodeconfig.py is the format and its
checked() is the check): node id, the node's key from the gateway's keys file,
channels, rules and intervals from the profile, and the board's pin map name.

    1. the key from the registry (node not there: run keygen first);
    2. the profile (built in: landslide, rain, river; or a JSON file with "channels",
       "rules", "intervals" and optionally "sleep", "log_kb", "watchdog_s", "radio",
       "escape_pin") and the board file, checked on this computer by the node's own
       validators: a config error names the file and the key before the board is touched;
    3. on the board: the chip must match the board file's MCU; the new version is the
       board's current config version + 1 (so the gateway's later CONFIG downlinks,
       which must be newer, stay in order) unless --version is given;
    4. config.json is written to config.json.tmp, checked by SHA-256 read back,
       renamed, checked again, and parsed by the firmware on the board itself;
    5. the node is reset and its boot line "node <id> boot <n>" is awaited on the
       console; a config error the node prints instead is reported.

The key is never printed; --dry-run shows the config with the key hidden.
"""
import json
import re
from pathlib import Path

from firmware import board as fwboard
from firmware import nodeconfig
from tools import sitecheck
from tools.errors import CONFIG_INVALID, NO_ANSWER, WRONG_BOARD, ToolError
from tools.keygen import key_for

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ROOT / "firmware" / "variants"

RAIN, DISP, WATER = 0x08, 0x10, 0x18
DEFAULT_VARIANT = {"esp32": "esp32_devkitc", "esp32s3": "esp32s3_devkitc", "rp2": "rp2040_pico",
                   "linux": "esp32_devkitc"}
VARIANT_MCU_PLATFORM = {"esp32": ("esp32", "ESP32"), "esp32s3": ("esp32", "ESP32S3"),
                        "rp2040": ("rp2", "RP2040")}
# the board file entry each driver needs
DRIVER_NEEDS = {"rain": ("inputs", "rain"), "drawwire": ("adc", "drawwire"),
                "loop420": ("adc", "loop420"), "battery": ("adc", "battery"),
                "supply": ("adc", "battery"), "rs485": ("uarts", "rs485")}
PROFILE_KEYS = ("channels", "rules", "intervals", "sleep", "log_kb", "watchdog_s", "radio",
                "escape_pin", "description")

# Thresholds are examples to start from, not site values: each hazard point gets its own
# from the geologist (protocol/TRIP.md has the rule format).
PROFILES = {
    "landslide": {
        "description": "landslide: draw-wire crack meter, rain gauge, battery",
        "channels": [{"id": "displacement.0", "driver": "drawwire", "cal": [[0.1, 0], [0.9, 50000]]},
                     {"id": "rain.0", "driver": "rain", "mm_per_tip": 0.2},
                     {"id": "battery.0", "driver": "battery"}],
        # Two independent paths to red: the inverse-velocity forecast (rules 3, 8: a short
        # and a long window, as Carla et al. 2017 pair short and long moving averages;
        # believed from 2 mm/h, the yellow rate) and the tangent angle (rules 6, 7; v0
        # learnt over the first 2 days, at least 1 mm/h, so orange needs 5.7 mm/h over 2 h
        # (at 0.5 a wire stuck for hours, then freed, gave orange): give the site's
        # constant-velocity rate once it is known).
        "rules": [[1, DISP, 2, 2, 10800, 200, 50, 3600],      # >= 2 mm/h over 3 h: yellow
                  [2, DISP, 2, 3, 3600, 1000, 200, 3600],     # >= 10 mm/h over 1 h: orange
                  [3, DISP, 4, 4, 7200, 3600, 850, 3600, 200],    # inverse velocity, 2 h: < 1 h: red
                  [8, DISP, 4, 4, 21600, 3600, 850, 3600, 200],   # the same over 6 h (slow creep)
                  [6, DISP, 5, 3, 7200, 100, 800, 3600, 172800],   # tangent angle >= 80: orange
                  [7, DISP, 5, 4, 7200, 100, 850, 3600, 172800],   # tangent angle >= 85: red
                  [4, RAIN, 3, 2, 3600, 300, 50, 1800],       # >= 30 mm in 1 h: yellow
                  [5, RAIN, 3, 3, 1200, 500, 50, 1800]],      # >= 50 mm in 20 min: orange
        "intervals": {"sample_s": 60, "intensified_s": 10, "report_s": 600, "status_s": 3600},
    },
    "rain": {
        "description": "rain station: tipping bucket, battery",
        "channels": [{"id": "rain.0", "driver": "rain", "mm_per_tip": 0.2},
                     {"id": "battery.0", "driver": "battery"}],
        "rules": [[1, RAIN, 3, 1, 600, 100, 20, 1800],        # >= 10 mm in 10 min: blue
                  [2, RAIN, 3, 2, 3600, 300, 50, 1800],       # >= 30 mm in 1 h: yellow
                  [3, RAIN, 3, 3, 10800, 600, 50, 3600],      # >= 60 mm in 3 h: orange
                  [4, RAIN, 3, 4, 86400, 1000, 100, 3600]],   # >= 100 mm in 24 h: red
        "intervals": {"sample_s": 60, "intensified_s": 60, "report_s": 600, "status_s": 3600},
    },
    "river": {
        "description": "river station: 4-20 mA level transducer (0-10 m), rain gauge, battery",
        "channels": [{"id": "water_level.0", "driver": "loop420", "value_4ma": 0,
                      "value_20ma": 10000},
                     {"id": "rain.0", "driver": "rain", "mm_per_tip": 0.2},
                     {"id": "battery.0", "driver": "battery"}],
        "rules": [[1, WATER, 1, 2, 1, 2500, 100, 2, 600],     # >= 2.5 m, twice: yellow
                  [2, WATER, 1, 3, 1, 3000, 100, 2, 600],     # >= 3.0 m: orange
                  [3, WATER, 1, 4, 1, 3500, 100, 2, 600],     # >= 3.5 m: red
                  [4, WATER, 2, 3, 1800, 500, 100, 1800]],    # rising >= 0.5 m/h: orange
        "intervals": {"sample_s": 60, "intensified_s": 10, "report_s": 600, "status_s": 3600},
    },
}

BOOT_LINE = re.compile(rb"node (\d+) boot (\d+)")
CONFIG_ERROR = re.compile(rb"config error: (.*)")
BOOT_CONFIG = re.compile(rb"NodeConfig\(v(\d+) node")


def load_profile(name):
    """(profile dict, label) from a built-in name or a JSON file."""
    if name in PROFILES:
        return dict(PROFILES[name]), name
    p = Path(name)
    if not p.exists():
        raise ToolError(CONFIG_INVALID, "profile %r: not one of %s and no such file: give a "
                        "built-in profile or a JSON file" % (name, ", ".join(sorted(PROFILES))))
    try:
        prof = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ToolError(CONFIG_INVALID, "%s: not valid JSON (%s): fix the file" % (name, e)) from None
    if not isinstance(prof, dict):
        raise ToolError(CONFIG_INVALID, "%s: the top level must be a JSON object with "
                        "\"channels\", \"rules\", \"intervals\"" % name)
    for k in prof:
        if k in ("node", "key", "version", "board"):
            raise ToolError(CONFIG_INVALID, "%s: key '%s': a profile must not set it: provision "
                            "takes it from the command line and the registry" % (name, k))
        if k not in PROFILE_KEYS:
            raise ToolError(CONFIG_INVALID, "%s: key '%s': unknown: allowed %s"
                            % (name, k, ", ".join(PROFILE_KEYS)))
    return prof, p.name


def load_variant(name):
    path = VARIANTS / ("%s.json" % name)
    if not path.exists():
        have = ", ".join(sorted(p.stem for p in VARIANTS.glob("*.json")))
        raise ToolError(CONFIG_INVALID, "--board %s: no such board file %s: allowed %s"
                        % (name, path.relative_to(ROOT), have))
    try:
        return fwboard.Board(json.loads(path.read_text()), str(path.relative_to(ROOT)))
    except (ValueError, fwboard.BoardError) as e:
        raise ToolError(CONFIG_INVALID, str(e)) from None


def build_config(node, key, profile, label, variant, version):
    """The config.json dict, checked by the node's own validators."""
    raw = {"version": version, "node": node, "key": key.hex(), "board": variant.name}
    for k in PROFILE_KEYS:
        if k in profile and k != "description":
            raw[k] = profile[k]
    source = "profile %s" % label
    try:
        cfg = nodeconfig.checked(raw, source)
    except nodeconfig.ConfigError as e:
        raise ToolError(CONFIG_INVALID, "%s: fix the profile" % e) from None
    try:
        from firmware.drivers import factory
        validate = getattr(factory, "_validate", None)
    except ImportError:
        validate = None
    for i, (chan, drv, params) in enumerate(cfg.channels):
        if validate is not None:
            try:
                validate(chan, drv, params)
            except ValueError as e:
                raise ToolError(CONFIG_INVALID, "%s: key 'channels[%d]': %s" % (source, i, e)) from None
        need = DRIVER_NEEDS.get(drv)
        if need and not variant.has(*need):
            raise ToolError(CONFIG_INVALID, "%s: key 'channels[%d].driver': %r needs %s.%s, which "
                            "board file %s lacks: choose another --board or another driver"
                            % (source, i, drv, need[0], need[1], variant.name))
    return raw


def hidden(raw):
    shown = dict(raw)
    shown["key"] = "<%d hex digits from the registry, not shown>" % len(raw["key"])
    return shown


def _board_version(link):
    """The version of the config on the board now, or 0."""
    data = link.read(nodeconfig.CONFIG_FILE)
    if data is None:
        return 0, None
    try:
        old = json.loads(data)
        return int(old.get("version", 0)), old.get("node")
    except (ValueError, TypeError, AttributeError):
        return 0, None


def _check_variant_chip(variant, platform, machine, port):
    if platform == "linux":
        return "stand-in board (MicroPython unix port): pin map %s not checked against hardware" \
            % variant.name
    want_platform, word = VARIANT_MCU_PLATFORM.get(variant.mcu, (None, None))
    m = machine.upper().replace("-", "")
    ok = platform == want_platform and word in m
    if variant.mcu == "esp32" and ("ESP32S" in m or "ESP32C" in m):
        ok = False
    if not ok:
        raise ToolError(WRONG_BOARD, "wrong board: %s runs MicroPython for %s (%s) but board file "
                        "%s is for %s: pass --board with the right file from firmware/variants/"
                        % (port, platform, machine, variant.name, variant.mcu))
    return None


def run(args):
    key = key_for(args.registry, args.node)
    profile, label = load_profile(args.profile)
    chans = [c.get("id", "?") for c in profile.get("channels", []) if isinstance(c, dict)]
    site_config = sitecheck.find_site_config(args.registry, args.site_config)
    if not args.dry_run:
        sitecheck.check_keys_file(args.registry)
        if site_config:
            sitecheck.check_site(site_config, args.registry, args.node, chans)
    if args.dry_run:
        variant = load_variant(args.board or "esp32_devkitc")
        raw = build_config(args.node, key, profile, label, variant, args.version or 1)
        print(json.dumps(hidden(raw), indent=1))
        return 0
    from tools.boardlink import BoardLink
    with BoardLink.open(args.port) as link:
        platform, machine = link.identify()
        variant = load_variant(args.board or DEFAULT_VARIANT.get(platform, "esp32_devkitc"))
        note = _check_variant_chip(variant, platform, machine, args.port)
        if note:
            print(note)
        if not link.exists("firmware/nodeconfig.mpy"):
            raise ToolError(CONFIG_INVALID, "the node application is not on the board on %s: "
                            "run `stationctl flash --port %s --board ...` first"
                            % (args.port, args.port))
        old_version, old_node = _board_version(link)
        version = args.version or old_version + 1
        if old_version and version <= old_version:
            raise ToolError(CONFIG_INVALID, "--version %d: key 'version': the board has version "
                            "%d: allowed %d or more (the node refuses older configs)"
                            % (version, old_version, old_version + 1))
        raw = build_config(args.node, key, profile, label, variant, version)
        if old_node not in (None, args.node):
            print("note: this board was node %s; it becomes node %d (its frame log keeps the "
                  "old node's unsent frames until the gateway acks them)" % (old_node, args.node))
        data = json.dumps(raw).encode()
        link.put(nodeconfig.CONFIG_FILE, data)
        try:
            check = link.exec("import json\nfrom firmware import nodeconfig\n"
                              "f = open(%r)\nc = nodeconfig.checked(json.load(f), %r)\n"
                              "f.close()\nprint(c.node, c.version)"
                              % (nodeconfig.CONFIG_FILE, nodeconfig.CONFIG_FILE))
        except ToolError as e:
            raise ToolError(CONFIG_INVALID, "the firmware on the board refuses the config "
                            "(%s): flash the current application (stationctl flash --app-only) "
                            "so board and tool agree" % e.message.splitlines()[-1]) from None
        if check.split() != [str(args.node).encode(), str(version).encode()]:
            raise ToolError(CONFIG_INVALID, "the firmware on the board read the config back as "
                            "%r: flash the current application (stationctl flash --app-only)"
                            % check)
        print("config v%d written to %s (%s, board %s), SHA-256 verified; rebooting the node"
              % (version, args.port, label, variant.name))
        link.reset()
        i, m, text = link.wait_for([BOOT_LINE, CONFIG_ERROR], args.timeout)
        if m is None:
            raise ToolError(NO_ANSWER, "node %d did not report its boot on %s within %g s: the "
                            "config is written; check the console (mpremote connect %s) and "
                            "power" % (args.node, args.port, args.timeout, args.port))
        if i == 1:
            raise ToolError(CONFIG_INVALID, "the node refuses the config: %s"
                            % m.group(1).decode(errors="replace").strip())
        booted = int(m.group(1))
        if booted != args.node:
            raise ToolError(CONFIG_INVALID, "the node booted as node %d, not %d: its config was "
                            "not taken; check the console" % (booted, args.node))
        line = [x for x in text.splitlines() if BOOT_LINE.search(x)][0]
        v = BOOT_CONFIG.search(line)
        if v is not None and int(v.group(1)) != version:
            raise ToolError(CONFIG_INVALID, "the node booted with config v%s, not the v%d just "
                            "written: it fell back to its last good config; check the console "
                            "(mpremote connect %s)" % (v.group(1).decode(), version, args.port))
        print("node %d is up: %s" % (args.node, line.decode(errors="replace").strip()))
        if site_config:
            print("%s lists node %d and its key is in %s: restart the gateway if keygen ran "
                  "after it started (systemctl restart stationgw)"
                  % (site_config, args.node, args.registry))
        else:
            print("next: the gateway hears node %d only once its site.toml lists it (and "
                  "[radio] keys_file is %s). Add:\n\n%s\n\nthen restart the gateway "
                  "(pass --site-config to have provision check it)"
                  % (args.node, args.registry, sitecheck.nodes_snippet(args.node, chans)))
    return 0
