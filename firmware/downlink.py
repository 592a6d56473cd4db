"""A CONFIG (or ZONE) downlink on a running node: decode it, check that it answers a frame the
node sent lately, check and save the new config (firmware/nodeconfig.py), apply it to
the node and queue the CONFIG_ACK.

A node meets this about once a month, so it lives apart from firmware/app.py: with
the config checks and the CBOR decoder it is among the modules boot drops on a board
without frozen code (firmware/unload.py CONFIG_MODULES), and firmware/main.py's
downlink(), which the Node is handed, loads it for the downlink and drops it again. It
imports resident code, never the reverse."""
from firmware import nodeconfig
from protocol import frame as fr
from protocol import messages


def handle(node, now, payload, mtype=fr.CONFIG):
    if mtype == fr.ZONE:
        return zone(node, now, payload)
    re, m = messages.decode_config(payload)
    if not node.link.is_fresh_re(now, re):
        node.count("config_not_fresh")    # a replay, or an answer to a frame long gone
        return
    version = m.get(messages.C_VERSION)
    new, result, reason = nodeconfig.apply_downlink(node.fs, node.cfg, m,
                                                    lambda new: apply(node, new, now))
    if new is not None:
        node.cfg = new
        if node.events:
            node._log_alarms(now, node.events)
            del node.events[:]
        es = m.get(messages.C_EMERGENCY_S)
        if isinstance(es, int) and es >= 0:
            node.emergency_until = now + es if es else 0
        if m.get(messages.C_STATUS_NOW):
            node._queue(fr.STATUS)
    ack = {messages.K_VERSION: version, messages.K_RESULT: result, messages.K_RE: re}
    if reason:
        ack[messages.K_REASON] = reason
    node.console("config v%r: %s %s" % (version, ("ok", "rejected", "stale")[result], reason))
    node._queue(fr.CONFIG_ACK, messages.encode_map(ack))


def apply(node, new, now):
    """Run on `new` from now on: rules first (set_rules allocates, and a MemoryError there
    changes nothing), then intervals and status. The trip events go to node.events, logged
    once the config is saved and node.cfg is `new` (handle): until then a CONFIG sent
    again is applied again, which keeps every rule's state."""
    for ev in node.engine.set_rules(new.rules, int(now)):
        node.events.append(ev)
    iv = new.intervals
    node.sampler.set_intervals(iv["sample_s"], iv["intensified_s"], iv["report_s"])
    node.next_status = min(node.next_status, now + iv["status_s"])


def zone(node, now, p):
    """A zone warning from the gateway (SPEC 3.5): re u32 | level | zone number. The siren
    sounds at the higher of the zone's level and the node's own; level 0 ends it. Here,
    not in firmware/app.py: a node meets it rarely, and what app.py holds is heap."""
    if len(p) != 6 or p[4] > 4:
        node.count("rx_payload")
        return
    if not node.link.is_fresh_re(now, int.from_bytes(p[:4], "big")):
        node.count("zone_not_fresh")    # a replay, or an answer to a frame long gone
        return
    node.zone_level = p[4]
    node.console("zone %d: level %d" % (p[5], p[4]))
    node.alarm.set_level(max(node.engine.level(), p[4]), int(now * 1000))
