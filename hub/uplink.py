"""The uplink as the hub receives it (SPEC §9), pure logic: topic -> (site, gateway,
kind), CBOR -> checked document -> rows. No I/O, no clock.

`check(kind, doc)` is the one place that says whether a document follows the uplink
CDDL; it returns a list of problems (empty: valid). When the project's shared
checker (gateway/uplink_schema.py, from protocol/uplink.cddl) exists, `check` delegates
to it; until then the structural check below stands in for it.
"""
import cbor2

KINDS = ("data", "alarm", "status")


class Rejected(Exception):
    """A message that does not follow SPEC §9: the reason says what is wrong."""


def parse_topic(topic, prefix="stations"):
    """'<prefix>/S/G/kind' -> (S, G, kind), or None for any other topic."""
    parts = topic.split("/")
    want = prefix.split("/")
    if len(parts) != len(want) + 3 or parts[:len(want)] != want:
        return None
    site, gw, kind = parts[len(want):]
    if kind not in KINDS or not site or not gw:
        return None
    return site, gw, kind


_I64 = 1 << 63


def _uint(x):
    return type(x) is int and 0 <= x < _I64      # fits the database's 64-bit integers


def _int(x):
    return type(x) is int and -_I64 <= x < _I64


def _head(doc, errs, kind):
    if not isinstance(doc, dict):
        errs.append("not a CBOR map")
        return False
    if kind == "data" and doc.get(0) == 2:
        if 1 in doc or 2 in doc:        # schema 2 takes site and gateway from the topic
            errs.append("schema 2 batch with key 1 or 2 (site/gateway come from the topic)")
        return not errs
    if doc.get(0) != 1:
        errs.append("key 0 (schema version) is %r, expected %s" % (
            doc.get(0), "2 or 1" if kind == "data" else "1"))
    for k, what in ((1, "site"), (2, "gateway")):
        if not isinstance(doc.get(k), str):
            errs.append("key %d (%s) must be text, got %r" % (k, what, doc.get(k)))
    return not errs


def _check_batch(doc, errs):
    for k, what in ((3, "batch seq"), (4, "created")):
        if not _uint(doc.get(k)):
            errs.append("key %d (%s) must be uint, got %r" % (k, what, doc.get(k)))
    if doc[0] == 2 and 7 not in doc:
        pass                            # schema 2: no counters means unchanged
    elif not isinstance(doc.get(7), dict) or not all(
            _uint(k) and _uint(v) for k, v in doc[7].items()):
        errs.append("key 7 (counters) must be a map uint => uint")
    elif not all(k in doc[7] for k in range(1, 6)):
        errs.append("key 7 (counters) lacks counter(s) %s (1..5 are required)" % ", ".join(
            str(k) for k in range(1, 6) if k not in doc[7]))
    st = doc.get(6, [])
    if not isinstance(st, list) or not all(isinstance(s, dict) and _uint(s.get(1))
                                           and _uint(s.get(2)) for s in st):
        errs.append("key 6 (node status) must be a list of maps with uint keys 1 and 2")
    blocks = doc.get(5)
    if not isinstance(blocks, list):
        errs.append("key 5 (readings) must be an array")
        return
    if doc[0] == 2:
        _check_groups(blocks, errs)
        return
    for nb in blocks:
        if not (isinstance(nb, list) and len(nb) == 2 and _uint(nb[0])
                and isinstance(nb[1], list) and nb[1]):
            errs.append("node_block %r: want [node, [+ chan_block]]" % (nb,))
            continue
        for cb in nb[1]:
            if not (isinstance(cb, list) and len(cb) == 2 and _uint(cb[0])
                    and isinstance(cb[1], list) and cb[1]):
                errs.append("node %d: chan_block %r: want [chan, [+ run]]" % (nb[0], cb))
                continue
            for run in cb[1]:
                if not (isinstance(run, list) and len(run) in (5, 6)
                        and all(_uint(x) for x in run[:4]) and isinstance(run[4], list)
                        and run[4] and (len(run) == 5 or _uint(run[5]))):
                    errs.append("node %d chan %d: run %r: want [seq, idx, t0, step, [+ value],"
                                " ? flags]" % (nb[0], cb[0], run))
                    continue
                for v in run[4]:
                    if not (_int(v) or (isinstance(v, list) and len(v) == 1 and _uint(v[0]))):
                        errs.append("node %d chan %d seq %d: value %r is neither int nor [fault]"
                                    % (nb[0], cb[0], run[0], v))
                        break


def _check_groups(blocks, errs):
    """Schema 2 node blocks (SPEC §9.2): [node, [+ group]], group = [seq, idx, t, step,
    flags, stride, + chan_run], chan_run = [chan, + coded]."""
    for nb in blocks:
        if not (isinstance(nb, list) and len(nb) == 2 and _uint(nb[0])
                and isinstance(nb[1], list) and nb[1]):
            errs.append("node block %r: want [node, [+ group]]" % (nb,))
            continue
        for g in nb[1]:
            if not (isinstance(g, list) and len(g) >= 7 and _uint(g[0]) and _uint(g[1])
                    and _int(g[2]) and all(_uint(x) for x in g[3:6])):
                errs.append("node %d: group %r: want [seq, idx, t, step, flags, stride, "
                            "+ chan_run]" % (nb[0], g))
                continue
            runs = g[6:]
            if not all(isinstance(r, list) and len(r) >= 2 and _uint(r[0]) for r in runs):
                errs.append("node %d seq %d: chan_run must be [chan, + value]" % (nb[0], g[0]))
                continue
            n = len(runs[0]) - 1
            if any(len(r) - 1 != n for r in runs) or (n == 1) != (g[3] == 0) or \
                    (len(runs) == 1) != (g[5] == 0) or (len(runs) > 1 and g[5] < n):
                errs.append("node %d seq %d: group counts, step %d or stride %d inconsistent "
                            "(SPEC §9.2)" % (nb[0], g[0], g[3], g[5]))
                continue
            for r in runs:
                v = None
                for d in r[1:]:
                    if type(d) is list:
                        if not (len(d) == 1 and _uint(d[0])):
                            errs.append("node %d seq %d: fault %r must be [uint]"
                                        % (nb[0], g[0], d))
                            return
                    elif not _int(d):
                        errs.append("node %d seq %d: value %r is neither int nor [fault]"
                                    % (nb[0], g[0], d))
                        return
                    else:
                        v = d if v is None else v + d
                        if not -(1 << 31) <= v < (1 << 31):
                            errs.append("node %d seq %d: decoded sample %d outside 32-bit "
                                        "signed" % (nb[0], g[0], v))
                            return


def _check_alarm(doc, errs):
    for k in (3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15):
        if not _uint(doc.get(k)):
            errs.append("key %d must be uint, got %r" % (k, doc.get(k)))
    for k in (11, 12):
        if not _int(doc.get(k)):
            errs.append("key %d must be int, got %r" % (k, doc.get(k)))
    if doc.get(5) not in (1, 2, 3, 4):
        errs.append("key 5 (event) must be 1 trip, 2 level change, 3 clear or 4 blind "
                    "(SPEC §3.1: the sensor faulted while its channel was above normal)")
    for k in (6, 7):
        if _uint(doc.get(k)) and doc[k] > 4:
            errs.append("key %d (level) must be 0..4 (SPEC §8.2), got %d" % (k, doc[k]))


def _check_status(doc, errs):
    if doc.get(3) not in (0, 1):
        errs.append("key 3 (state) must be 0 offline or 1 online")
    if not _uint(doc.get(4)):
        errs.append("key 4 (time) must be uint")
    seen = doc.get(6, {})
    if not isinstance(seen, dict) or not all(_uint(k) and _uint(v) for k, v in seen.items()):
        errs.append("key 6 (last seen) must be a map uint => uint")


_CHECKS = {"data": _check_batch, "alarm": _check_alarm, "status": _check_status}


def structural_check(kind, doc):
    errs = []
    if _head(doc, errs, kind):
        _CHECKS[kind](doc, errs)
    return errs


def cddl_check(kind, doc, payload):
    """The project's CDDL checker (gateway/uplink_schema.py over protocol/uplink.cddl,
    issue #13) on the payload as received."""
    from gateway import uplink_schema
    try:
        uplink_schema.check({"data": "batch"}.get(kind, kind), payload)
    except uplink_schema.SchemaError as e:
        return [str(e)]
    return []


def _structural(kind, doc, payload):
    return structural_check(kind, doc)


# The one switch: `check = cddl_check` once gateway/uplink_schema.py is merged (and the
# reasons matched in tests/hub/test_ingest.py follow its wording). Measured before
# switching: zcbor-based CDDL validation checked ~350 readings/s here against ~470 000
# for the structural check, far below what one hub worker ingests (tens of thousands a
# second), so the CDDL check belongs in tests and tools, this one in the hot path.
check = _structural


def decode(kind, site, gw, payload):
    """CBOR payload of topic kind -> the checked document; Rejected says why not."""
    try:
        doc = cbor2.loads(payload)
    except Exception as e:
        raise Rejected("not CBOR (%s)" % e) from None
    errs = check(kind, doc, payload)
    if errs:
        raise Rejected("; ".join(errs[:5]))
    if doc.get(0) == 1 and (doc[1] != site or doc[2] != gw):
        raise Rejected("site/gateway %r/%r in the payload do not match the topic's %r/%r"
                       % (doc[1], doc[2], site, gw))
    return doc


def batch_rows(site, gw, doc):
    """Reading rows (site, node, seq, idx, chan, t, value, fault, flags, gateway, bseq)."""
    bseq = doc[3]
    rows = []
    if doc[0] == 2:
        base = doc[4]
        for node, groups in doc[5]:
            for g in groups:
                seq, idx, t, step, flags, stride = g[:6]
                t += base
                for j, run in enumerate(g[6:]):
                    chan = run[0]
                    first = idx + j * stride
                    v = None
                    for k, d in enumerate(run[1:]):
                        if type(d) is list:
                            rows.append((site, node, seq, first + k, chan, t + k * step, None,
                                         d[0], flags, gw, bseq))
                        else:
                            v = d if v is None else v + d
                            rows.append((site, node, seq, first + k, chan, t + k * step, v,
                                         None, flags, gw, bseq))
        return rows
    for node, chans in doc[5]:
        for chan, runs in chans:
            for run in runs:
                seq, idx, t0, step, values = run[:5]
                flags = run[5] if len(run) == 6 else 0
                for k, v in enumerate(values):
                    if type(v) is list:
                        rows.append((site, node, seq, idx + k, chan, t0 + k * step, None, v[0],
                                     flags, gw, bseq))
                    else:
                        rows.append((site, node, seq, idx + k, chan, t0 + k * step, v, None,
                                     flags, gw, bseq))
    return rows


def alarm_row(site, gw, doc, hub_rx_ms):
    """(site, node, seq, aidx, gateway, event, level, prev, chan, rule, kind, value,
    threshold, t, gw_rx_ms, hub_rx_ms)"""
    return (site, doc[3], doc[4], doc[15], gw, doc[5], doc[6], doc[7], doc[8], doc[9],
            doc[10], doc[11], doc[12], doc[13], doc[14], hub_rx_ms)
