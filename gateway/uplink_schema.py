"""Checks an uplink message (SPEC.md §9) against protocol/uplink.cddl.

    from gateway import uplink_schema
    uplink_schema.check("batch", payload)      # -> None, or raises SchemaError
    uplink_schema.check(None, payload)          # kind taken from the content
    e.path                                       # e.g. "/5/0/1/2/1/4/0": where it fails

Three passes: the bytes are in the uplink's encoding (definite lengths, shortest integer
heads, no duplicate keys, no tags: what cbor2.dumps writes); the data matches the CDDL
(zcbor's validator, a real RFC 8610 implementation); and what CDDL cannot say (each node
once per batch in ascending order, each channel once per node, values of extension
counters) is checked here. On a failure the message is narrowed to the deepest part
that fails on its own, so the error names its path.

Why zcbor 0.9.1 and not pycddl 0.6.4: measured on this schema, pycddl accepts a
negative fault code inside `[uint]` under a type choice and an array rejects valid data
when it has an optional (`?`) member or a `*` of arrays holding a `+`; zcbor validates
all of those right. zcbor 0.9.1 imports two names that cbor2 6 no longer has, so they
are aliased before it is imported (_zcbor below). zcbor does not apply CDDL's cut to
`* key => value` entries, so the CDDL writes extension keys as a range above the known
ones (ext_key) and the value types of extension counters are checked here.
"""
import contextlib
import functools
import io
from pathlib import Path

import cbor2

CDDL_PATH = Path(__file__).resolve().parent.parent / "protocol" / "uplink.cddl"
KINDS = ("batch", "alarm", "status", "cmd_result")
# the parts a message is narrowed to on failure: rule -> (key or index, rule of each element
# of that array, or of the item itself when `each` is False)
# (a slice: the elements from there on, each of that rule)
_PARTS = {
    "batch_v2": ((5, "node_groups", True), (6, "node_status", True), (7, "counters", False)),
    "node_groups": ((1, "group", True),),
    "group": ((slice(6, None), "chan_run", True),),
    "chan_run": ((slice(1, None), "coded", True),),
    "batch_v1": ((5, "node_block", True), (6, "node_status", True), (7, "counters", False)),
    "node_block": ((1, "chan_block", True),),
    "chan_block": ((1, "run", True),),
    "run": ((4, "value", True),),
}
_S32 = (-(1 << 31), (1 << 31) - 1)


class SchemaError(ValueError):
    def __init__(self, path, message):
        super().__init__("%s: %s" % (path or "/", message))
        self.path = path or "/"


@functools.lru_cache(maxsize=1)
def _types():
    if not hasattr(cbor2, "CBORDecodeValueError"):      # names zcbor 0.9.1 imports
        cbor2.CBORDecodeValueError = cbor2.CBORDecodeError
    if not hasattr(cbor2, "CBORDecodeEOF"):
        cbor2.CBORDecodeEOF = cbor2.CBORDecodeError
    from zcbor.zcbor import zcbor as zmod
    from zcbor.zcbor.zcbor import DataTranslator

    # zcbor builds a namedtuple class for every CBOR item it validates; one class per set
    # of field names does (the other 2/3 of a check's time)
    zmod.namedtuple = functools.lru_cache(maxsize=512)(zmod.namedtuple)

    class Translator(DataTranslator):
        # zcbor puts the pretty-printed type tree into the message of every choice it
        # tries and drops (a value that is not `sample` before it is a fault): that was
        # 2/3 of the time of a check. The path found by _narrow says where instead.
        def __repr__(self):
            return "%s %s" % (self.type, self.base_name or "")

    return Translator.from_cddl(CDDL_PATH.read_text(encoding="utf-8"), 1 << 20).my_types


def _sorted(obj):
    """obj with every map's keys in ascending order, as uplink.cddl lists them: zcbor
    matches map entries in order, CBOR maps have none."""
    if isinstance(obj, dict):
        return {k: _sorted(obj[k]) for k in sorted(obj, key=_key_order)}
    if isinstance(obj, list):
        return [_sorted(x) for x in obj]
    return obj


def _key_order(k):
    return (0, k, "") if isinstance(k, int) else (1, 0, str(k))


def _valid(rule, obj):
    try:
        with contextlib.redirect_stdout(io.StringIO()):     # zcbor prints its attempts
            _types()[rule].validate_str(cbor2.dumps(_sorted(obj)))
        return None
    except Exception as e:      # zcbor raises CddlValidationError and, on odd input, others
        return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _narrow(rule, obj, path):
    """The deepest (path, rule, message) under obj that fails on its own."""
    msg = _valid(rule, obj)
    if msg is None:
        return None
    for key, sub, each in _PARTS.get(rule, ()):
        try:
            item = obj[key]
        except (KeyError, IndexError, TypeError):
            continue
        if each:
            if not isinstance(item, list):
                continue
            for i, x in enumerate(item):
                where = ("%s/%d" % (path, key.start + i) if isinstance(key, slice)
                         else "%s/%s/%d" % (path, key, i))
                deeper = _narrow(sub, x, where)
                if deeper:
                    return deeper
        else:
            deeper = _narrow(sub, item, "%s/%s" % (path, key))
            if deeper:
                return deeper
    return path, rule, msg


def kind_of(obj):
    """Which message a decoded uplink map is: batch, alarm, status or cmd_result."""
    if isinstance(obj, dict):
        if isinstance(obj.get(5), list):
            return "batch"
        if isinstance(obj.get(3), str):
            return "cmd_result"
        if 15 in obj or isinstance(obj.get(5), int):
            return "alarm"
    return "status"


def _semantics_v2(m):
    """What batch_v2's CDDL cannot say (its comments): counts, steps, strides, keys once
    per batch, decoded samples in 32 bits, absolute times in Unix-second range."""
    last = 0
    base = m[4]
    for i, (node, groups) in enumerate(m[5]):
        if node <= last:
            raise SchemaError("/5/%d/0" % i, "node %d repeats or is out of order: each node "
                              "once per batch, ascending" % node)
        last = node
        keys = set()
        prev = None
        for j, g in enumerate(groups):
            where = "/5/%d/1/%d" % (i, j)
            seq, idx, t, step, _flags, stride = g[:6]
            runs = g[6:]
            n = len(runs[0]) - 1
            if prev is not None and (seq, idx) <= prev:
                raise SchemaError(where, "groups must follow ascending (seq, idx)")
            prev = (seq, idx)
            if any(len(r) - 1 != n for r in runs):
                raise SchemaError(where, "chan_runs of one group must hold the same number "
                                  "of values")
            if (n == 1) != (step == 0):
                raise SchemaError(where, "step must be 0 for one value per chan_run and at "
                                  "least 1 for more (got %d with %d)" % (step, n))
            if (len(runs) == 1) != (stride == 0) or (len(runs) > 1 and stride < n):
                raise SchemaError(where, "stride must be 0 for one chan_run and at least the "
                                  "count (%d) for more (got %d)" % (n, stride))
            if not (0 <= base + t and base + t + (n - 1) * step <= 0xFFFFFFFF):
                raise SchemaError(where, "times B + t + k*step leave 0..2^32-1")
            if idx + (len(runs) - 1) * stride + n - 1 > 0xFFFFFFFF:
                raise SchemaError(where, "idx + j*stride + k leaves 0..2^32-1")
            for r, run in enumerate(runs):
                v = None
                for k, d in enumerate(run[1:]):
                    if isinstance(d, list):
                        continue
                    v = d if v is None else v + d
                    if not _S32[0] <= v <= _S32[1]:
                        raise SchemaError("%s/%d/%d" % (where, 6 + r, k + 1),
                                          "decoded sample %d is outside 32-bit signed" % v)
                for k in range(n):
                    key = (seq, idx + r * stride + k)
                    if key in keys:
                        raise SchemaError(where, "key (node %d, seq %d, idx %d) twice in one "
                                          "batch" % ((node,) + key))
                    keys.add(key)
    for k, v in m.get(7, {}).items():
        if not (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFFFFFFFF):
            raise SchemaError("/7/%s" % k, "counter %r must be an unsigned 32-bit integer" % (v,))


def _semantics(kind, m):
    if kind == "batch_v2":
        return _semantics_v2(m)
    if kind != "batch_v1":
        return
    last = 0
    for i, (node, chans) in enumerate(m[5]):
        if node <= last:
            raise SchemaError("/5/%d/0" % i, "node %d repeats or is out of order: each node "
                              "once per batch, ascending" % node)
        last = node
        prev = -1
        for j, (chan, _runs) in enumerate(chans):
            if chan <= prev:
                raise SchemaError("/5/%d/1/%d/0" % (i, j), "channel %d repeats or is out of "
                                  "order within node %d" % (chan, node))
            prev = chan
    for k, v in m[7].items():
        if not (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFFFFFFFF):
            raise SchemaError("/7/%s" % k, "counter %r must be an unsigned 32-bit integer" % (v,))


def check(kind, data):
    """None if `data` is a valid uplink message of `kind` (None: from its content);
    SchemaError naming the failing path otherwise."""
    data = bytes(data)
    try:
        obj = cbor2.loads(data)
    except Exception as e:      # cbor2 raises several types for bad input
        raise SchemaError("/", "not CBOR: %s" % e) from None
    if cbor2.dumps(obj) != data:
        raise SchemaError("/", "not in the uplink's CBOR encoding (definite lengths, shortest "
                          "integer heads, no duplicate map keys, no tags, SPEC §9)")
    kind = kind or kind_of(obj)
    if kind not in KINDS:
        raise ValueError("kind must be one of %s" % (KINDS,))
    if kind == "batch":     # the schema version picks the rule; an unknown one fails batch_v2
        kind = "batch_v1" if isinstance(obj, dict) and obj.get(0) == 1 else "batch_v2"
    bad = _narrow(kind, obj, "")
    if bad is not None:
        path, rule, msg = bad
        raise SchemaError(path, "not a valid %s (uplink.cddl): %s" % (rule, msg))
    _semantics(kind, obj)
