"""Zone-wide warning fan-out (gateway/zones.py, config_zones.py, the ZONE downlink in
gateway/radio.py; docs/zones.md)."""
import struct

import pytest

from gateway import config as gconfig
from gateway.config_zones import Zone
from gateway.radio import RadioIngest
from gateway.zones import CLEAR, SOUND, ZoneEngine
from protocol import frame as fr
from protocol import framing
from protocol.mic import Hmac

KEYS = {101: bytes(range(1, 33)), 102: bytes(range(2, 34)), 201: bytes(range(3, 35))}
SLOPE = Zone("slope-a", 1, (101, 102), (9001,), (("village-bc", 0), ("siren-2", 3)), 3,
             "members_normal", 600)
RIVER = Zone("river", 2, (201,), (), (("siren-2", 4),), 4, "command", 0)


def test_orange_at_one_member_sounds_the_whole_zone_and_nothing_else():
    z = ZoneEngine([SLOPE, RIVER])
    assert z.level_changed(101, 2, 0) == []                  # yellow: below the trigger
    acts = z.level_changed(101, 3, 10)
    assert [(a.zone, a.what, a.level) for a in acts] == [("slope-a", SOUND, 3)]
    assert acts[0].nodes == {101, 102}
    assert z.node_level(102) == (3, 1) and z.node_level(201) == (0, 0)
    assert z.coil_wanted() == {("village-bc", 0): True, ("siren-2", 3): True, ("siren-2", 4): False}
    acts = z.level_changed(9001, 4, 20)                      # a Modbus member escalates
    assert acts[0].level == 4 and z.node_level(101) == (4, 1)


def test_members_normal_rule_needs_every_member_quiet_for_hold_s():
    z = ZoneEngine([SLOPE])
    z.level_changed(101, 4, 0)
    z.level_changed(102, 2, 5)
    assert z.level_changed(101, 0, 100) == []                # 102 still yellow
    assert z.level_changed(102, 0, 200) == []
    assert z.tick(799) == [] and z.next_due() == 800
    acts = z.tick(800)
    assert [(a.what, a.level) for a in acts] == [(CLEAR, 0)]
    assert z.node_level(101) == (0, 0) and not any(z.coil_wanted().values())


def test_command_rule_clears_only_by_command():
    z = ZoneEngine([RIVER])
    z.level_changed(201, 4, 0)
    z.level_changed(201, 0, 10)
    assert z.tick(10 ** 6) == []
    assert z.node_level(201) == (4, 2)
    assert [a.what for a in z.command("zone-clear", "river", 20)] == [CLEAR]
    with pytest.raises(KeyError, match="configured zones are river"):
        z.command("zone-clear", "nowhere", 30)


def _uplink(node, seq, flags=0):
    return framing.wrap(fr.encode(Hmac(KEYS[node]), fr.READINGS, node, seq, 100, b"\x08\x02\x05\x04",
                                  flags))


def _down(node, wires):
    out = []
    for w in wires:
        for item in framing.Deframer().feed(w):
            out.append(fr.decode(item, lambda n: Hmac(KEYS[node]), fr.DOWNLINK_TYPES))
    return out


def test_zone_downlink_rides_on_the_ack_until_the_node_says_it_sounds():
    z = ZoneEngine([SLOPE, RIVER])
    ing = RadioIngest(KEYS)
    ing.zone_level = z.node_level
    z.level_changed(101, 4, 0)
    ing.feed(_uplink(102, 7), 1000.0)
    frames = _down(102, ing.committed(ing.take_group(), 1000.0))
    assert [f.mtype for f in frames] == [fr.ACK, fr.ZONE]
    assert frames[0].flags & fr.F_PENDING                   # keep listening for it
    re, level, number = struct.unpack(">IBB", frames[1].payload)
    assert (re, level, number) == (7, 4, 1)
    # the node now sets F_ZONE: no more ZONE frames while nothing changes
    ing.feed(_uplink(102, 8, fr.F_ZONE), 1001.0)
    assert [f.mtype for f in _down(102, ing.committed(ing.take_group(), 1001.0))] == [fr.ACK]
    # nodes outside the zone never get one
    ing.feed(_uplink(201, 3), 1002.0)
    assert [f.mtype for f in _down(201, ing.committed(ing.take_group(), 1002.0))] == [fr.ACK]
    # the clear goes to a node still sounding
    z.command("zone-clear", "slope-a", 1003)
    ing.feed(_uplink(102, 9, fr.F_ZONE), 1004.0)
    frames = _down(102, ing.committed(ing.take_group(), 1004.0))
    assert frames[1].mtype == fr.ZONE and frames[1].payload[4] == 0


def test_zones_config_checked_with_every_problem_named(tmp_path, site_base):
    base, write_keys = site_base
    write_keys(tmp_path)
    good = base + """
[[zones]]
name = "slope-a"
number = 1
nodes = [101]
coils = [ { device = "radar", address = 2 } ]
min_level = "orange"
"""
    (tmp_path / "site.toml").write_text(good)
    cfg = gconfig.load(str(tmp_path / "site.toml"))
    assert cfg.zones[0].coils == (("radar", 2),) and cfg.zones[0].min_level == 3
    bad = good.replace("nodes = [101]", "nodes = [999]").replace('device = "radar"', 'device = "nope"') \
        .replace('min_level = "orange"', 'min_level = "purple"')
    (tmp_path / "site.toml").write_text(bad)
    with pytest.raises(gconfig.ConfigError) as e:
        gconfig.load(str(tmp_path / "site.toml"))
    text = str(e.value)
    for k in ("zones[0].nodes", "zones[0].coils[0].device", "zones[0].min_level"):
        assert k in text
