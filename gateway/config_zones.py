"""The `[[zones]]` section of site.toml: warning zones (gateway/zones.py, docs/zones.md),
checked with gateway/config.py's checker so every problem names the file and the key.

    [[zones]]
    name = "slope-a"                 # 1..32 of a-z 0-9 -
    number = 1                       # 1..255, carried in ZONE downlinks
    nodes = [101, 102, 103]          # radio nodes of the zone: their sirens sound
    coils = [ { device = "village-bc", address = 0 }, { device = "siren-2", address = 1 } ]
    min_level = "orange"             # a member at this level or above sounds the zone
    clear = "members_normal"         # or "command": only an authorised zone-clear ends it
    hold_s = 1800                    # members_normal: all members normal this long
"""
import re
from dataclasses import dataclass

from protocol import levels

NAME_RE = re.compile(r"^[a-z0-9-]{1,32}$")
CLEAR_RULES = ("members_normal", "command")
KEYS = ("name", "number", "nodes", "sources", "coils", "min_level", "clear", "hold_s")


@dataclass(frozen=True)
class Zone:
    name: str
    number: int
    nodes: tuple            # radio node ids
    sources: tuple          # further members without a siren of their own (Modbus virtual nodes)
    coils: tuple            # ((device name, coil address), ...)
    min_level: int
    clear: str
    hold_s: int


def parse(c, doc, node_ids, device_names):
    out = []
    seen_names, seen_numbers = set(), set()
    for i, t in enumerate(c.array_of_tables(doc, "zones", "zones")):
        key = "zones[%d]" % i
        c.unknown(t, KEYS, key)
        name = c.value(t, "name", key, str, pattern=NAME_RE,
                       pattern_text="1-32 characters of a-z, 0-9 and -")
        number = c.value(t, "number", key, int, lo=1, hi=255)
        for v, seen, what in ((name, seen_names, "name"), (number, seen_numbers, "number")):
            if v is not None and v in seen:
                c.err("%s.%s" % (key, what), "%r is used by another zone: each zone needs its own"
                      % (v,))
            seen.add(v)
        nodes = _ints(c, t, "nodes", key, node_ids, "a radio node id listed in [[nodes]]")
        sources = _ints(c, t, "sources", key, None, "a node id (e.g. a Modbus device's node)")
        coils = []
        raw = t.get("coils", [])
        if not isinstance(raw, list):
            c.err(key + ".coils", "must be a list of { device = \"name\", address = N }")
            raw = []
        for j, cl in enumerate(raw):
            ck = "%s.coils[%d]" % (key, j)
            if not isinstance(cl, dict):
                c.err(ck, "must be a table { device = \"name\", address = N }")
                continue
            c.unknown(cl, ("device", "address"), ck)
            dev = c.value(cl, "device", ck, str, choices=tuple(device_names) or None)
            addr = c.value(cl, "address", ck, int, lo=0, hi=65535)
            if dev is not None and addr is not None:
                coils.append((dev, addr))
        lv = c.value(t, "min_level", key, str, default="orange",
                     choices=("blue", "yellow", "orange", "red"))
        clear = c.value(t, "clear", key, str, default="members_normal", choices=CLEAR_RULES)
        hold = c.value(t, "hold_s", key, int, default=1800, lo=0, hi=7 * 86400)
        if not nodes and not coils:
            c.err(key, "a zone needs at least one siren: list radio `nodes` or Modbus `coils`")
        if None in (name, number, lv, clear, hold):
            continue
        out.append(Zone(name, number, tuple(nodes), tuple(sources), tuple(coils),
                        levels.parse(lv), clear, hold))
    return tuple(out)


def _ints(c, t, name, key, allowed, what):
    v = t.get(name, [])
    if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        c.err("%s.%s" % (key, name), "must be a list of node ids (integers)")
        return []
    for x in v:
        if allowed is not None and x not in allowed:
            c.err("%s.%s" % (key, name), "%d is not %s" % (x, what))
        elif not 1 <= x <= 65534:
            c.err("%s.%s" % (key, name), "%d: allowed 1..65534" % x)
    return list(v)
