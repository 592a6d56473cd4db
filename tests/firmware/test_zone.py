"""A node hears a zone warning (SPEC.md 3.5): the ZONE downlink answering one of its
recent frames sounds its siren at the zone's level, marks its frames F_ZONE, and a
ZONE with level 0 ends it; a replayed or stale ZONE changes nothing."""
import struct

from test_app import KEY, NODE, Gateway, config, make_node, run

from firmware.logscan import open_log
from protocol import frame as fr
from protocol import framing
from protocol.mic import Hmac


class ZoneGateway(Gateway):
    """test_app's gateway, which also answers uplinks with a ZONE frame while `zone` is set."""

    def __init__(self):
        super().__init__()
        self.zone = None          # (level, number)
        self.zones_sent = []
        self.last_zone_wire = None

    def hear(self, radio, t):
        seqs = []
        for wire in radio.out:
            for item in framing.Deframer().feed(wire):
                seqs.append(fr.decode(item, lambda n: Hmac(KEY), fr.UPLINK_TYPES).seq)
        super().hear(radio, t)
        if self.zone is not None and seqs:
            w = framing.wrap(fr.encode(Hmac(KEY), fr.ZONE, NODE, 99, 0,
                                       struct.pack(">IBB", seqs[-1], self.zone[0], self.zone[1])))
            radio.inbox.append(w)
            self.zones_sent.append(w)
            self.zone = None


def flags_of(radio_log):
    return [fr.decode(framing.Deframer().feed(w)[0], lambda n: Hmac(KEY), fr.UPLINK_TYPES).flags
            for _, _, w in radio_log]


def test_zone_sounds_the_siren_then_clears(tmp_path):
    node, sim, radio, siren, strobe, _ = make_node(tmp_path, config())
    gw = ZoneGateway()
    open_log(node.log, node.clock)
    node.start(0.0)
    run(node, sim, radio, gw, 700)
    assert node.alarm.level == 0 and not siren.is_on()
    gw.zone = (4, 1)
    run(node, sim, radio, gw, 1400)
    assert node.zone_level == 4 and node.alarm.level == 4
    assert siren.is_on()                                     # red: steady
    n = len(node.sent_log)
    run(node, sim, radio, gw, 2100)
    assert any(f & fr.F_ZONE for f in flags_of(node.sent_log[n:]))
    gw.zone = (0, 1)
    run(node, sim, radio, gw, 2800)
    assert node.zone_level == 0 and node.alarm.level == 0 and not siren.is_on()


def test_replayed_zone_frame_is_ignored(tmp_path):
    node, sim, radio, siren, _, _ = make_node(tmp_path, config())
    gw = ZoneGateway()
    open_log(node.log, node.clock)
    node.start(0.0)
    gw.zone = (4, 1)
    run(node, sim, radio, gw, 700)
    old = gw.zones_sent[0]
    gw.zone = (0, 1)
    run(node, sim, radio, gw, 1400)
    assert node.zone_level == 0
    run(node, sim, radio, gw, 1500)
    radio.inbox.append(old)                             # an attacker replays the red
    node.step(1500.5)
    assert node.zone_level == 0 and node.counts.get("zone_not_fresh") == 1
