"""A stranger's decoder of schema-2 data batches, written from SPEC.md §9.2 (its text and
CDDL) and §0 alone, sharing no code with gateway/ or hub/: it must accept exactly the
batches our checker (gateway/uplink_schema.py over protocol/uplink.cddl) accepts and
expand them to the same readings (dedup key, channel, absolute time, value, flags) as
gateway.batcher.decode_batch_readings, on generated batches, valid and broken.
Where they differ, the SPEC left something to guess, or our code does not do what it
says."""
import importlib.util
import json
from pathlib import Path

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import batcher, uplink_schema
from gateway.modbus import WINDOW

HERE = Path(__file__).resolve().parent
VEC = HERE.parents[1] / "protocol" / "vectors" / "uplink.json"
# the stranger's CBOR reader of §0 (test_stranger.py; tests/ is not a package)
_spec = importlib.util.spec_from_file_location("stranger_radio", HERE / "test_stranger.py")
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
Bad, s_cbor = _mod.Bad, _mod.s_cbor
U32 = 2**32 - 1


# ---------------------------------------------------------------- the stranger's code

def _int(x, lo, hi):
    return type(x) is int and lo <= x <= hi


# node_status keys (§9.2 CDDL): key -> (lo, hi) or "text"
S_NODE_STATUS = {3: (0, 65535), 4: (0, 65535), 5: (-32768, 32767), 6: (0, U32), 7: (0, 255),
                 8: (0, U32), 9: "text", 10: (0, U32), 11: (-32768, 32767), 12: (0, U32)}


def s_batch(data):
    """-> sorted [(node, seq, idx, chan, t, value or [fault], flags)]; Bad if the bytes
    are not a schema-2 batch."""
    m = s_cbor(data)
    if type(m) is not dict or m.get(0) != 2:
        raise Bad("not a schema-2 batch")
    for k in m:         # known keys, or extension keys >= 16 (ignored, §10)
        if not (k in (0, 3, 4, 5, 6, 7) or _int(k, 16, U32)):
            raise Bad("key %r" % (k,))
    if not (_int(m.get(3), 1, U32) and _int(m.get(4), 0, U32) and type(m.get(5)) is list):
        raise Bad("head")
    base = m[4]
    if 6 in m:
        if type(m[6]) is not list or not m[6]:
            raise Bad("node status list")
        for s in m[6]:
            if type(s) is not dict or not _int(s.get(1), 1, 65534) or not _int(s.get(2), 0, U32):
                raise Bad("node status")
            for k, v in s.items():
                if k in (1, 2):
                    continue
                rule = S_NODE_STATUS.get(k)
                if rule is None:
                    if not _int(k, 16, U32) or v == ("float",):
                        raise Bad("node status key")
                elif rule == "text":
                    if type(v) is not str:
                        raise Bad("node status text")
                elif not _int(v, *rule):
                    raise Bad("node status value")
    if 7 in m:
        c = m[7]
        if type(c) is not dict or any(k not in c for k in range(1, 6)):
            raise Bad("counters")
        for k, v in c.items():
            if not (_int(k, 1, 5) or _int(k, 16, U32)) or not _int(v, 0, U32):
                raise Bad("counter")
    out = []
    last_node = 0
    for nb in m[5]:
        if type(nb) is not list or len(nb) != 2 or not _int(nb[0], 1, 65534) \
                or type(nb[1]) is not list or not nb[1] or nb[0] <= last_node:
            raise Bad("node block")
        node = last_node = nb[0]
        keys = set()
        prev = None
        for g in nb[1]:
            if type(g) is not list or len(g) < 7:
                raise Bad("group")
            seq, idx, t, step, flags, stride = g[:6]
            if not (_int(seq, 1, U32) and _int(idx, 0, U32) and _int(t, -U32, U32)
                    and _int(step, 0, U32) and _int(flags, 0, 3) and _int(stride, 0, U32)):
                raise Bad("group head")
            if prev is not None and (seq, idx) <= prev:
                raise Bad("group order")
            prev = (seq, idx)
            runs = g[6:]
            for r in runs:
                if type(r) is not list or len(r) < 2 or not _int(r[0], 0, 255):
                    raise Bad("chan_run")
            n = len(runs[0]) - 1
            if any(len(r) - 1 != n for r in runs):
                raise Bad("counts")
            if (n == 1) != (step == 0):
                raise Bad("step")
            if len(runs) == 1 and stride != 0 or len(runs) > 1 and stride < n:
                raise Bad("stride")
            if base + t < 0 or base + t + (n - 1) * step > U32:
                raise Bad("time")
            if idx + (len(runs) - 1) * stride + n - 1 > U32:
                raise Bad("idx")
            for j, r in enumerate(runs):
                sample = None
                for k, c in enumerate(r[1:]):
                    if type(c) is list:
                        if len(c) != 1 or not _int(c[0], 0, 65535):
                            raise Bad("fault")
                        v = [c[0]]
                    elif _int(c, -U32, U32):
                        sample = c if sample is None else sample + c
                        if not _int(sample, -2**31, 2**31 - 1):
                            raise Bad("sample")
                        v = sample
                    else:
                        raise Bad("value")
                    key = (seq, idx + j * stride + k)
                    if key in keys:
                        raise Bad("key twice")
                    keys.add(key)
                    out.append((node, seq, key[1], r[0], base + t + k * step, v, flags))
    return sorted(out)


# ---------------------------------------------------------------- ours, same shape

def o_batch(data):
    uplink_schema.check("batch", data)
    m, rows = batcher.decode_batch_readings(data)
    if m[0] != 2:
        raise uplink_schema.SchemaError("/", "schema 1")
    return sorted(rows)


def agree(data):
    try:
        a = (True, o_batch(data))
    except ValueError:          # SchemaError, and decode's ValueError
        a = (False, None)
    try:
        b = (True, s_batch(data))
    except Bad:
        b = (False, None)
    assert a[0] == b[0], "accept: ours %s, stranger %s, on %r" % (a[0], b[0], cbor2.loads(data))
    assert a[1] == b[1], data.hex()
    return a[0]


# ---------------------------------------------------------------- generated batches

T = 1_800_000_000
s32 = st.one_of(st.integers(-2**31, 2**31 - 1), st.sampled_from([-2**31, 2**31 - 1, 0]))
EDGES = [0, 1, -1, 2, 3, 4, 255, 256, 1024, 65534, 65535, 65536, 2**31 - 1, 2**31, -2**31,
         -2**31 - 1, U32, 2**32, -U32, -2**32, -T - 5, [], [0], [-1], [70000], "x", None, True,
         1.5]


@st.composite
def rows_st(draw):
    """Reading rows as the store holds them: radio frames and Modbus poll windows."""
    rows = []
    for node in sorted(draw(st.sets(st.integers(1, 65534), min_size=0, max_size=3))):
        for _ in range(draw(st.integers(1, 3))):
            seq = draw(st.integers(1, U32))
            points = draw(st.integers(1, 4))
            polls = draw(st.integers(1, 6))
            k0 = draw(st.integers(0, WINDOW - polls))
            step = draw(st.integers(1, 600)) if polls > 1 else 1
            t0 = T - draw(st.integers(0, 10**6))
            flags = draw(st.integers(0, 3))
            for i in range(points):
                chan = draw(st.integers(0, 255))
                for k in range(polls):
                    v = draw(st.one_of(s32, st.none()))
                    key = (node, seq, i * WINDOW + k0 + k)
                    if any(r[1:4] == key for r in rows):
                        continue
                    rows.append((len(rows), node, seq, i * WINDOW + k0 + k, chan, t0 + k * step,
                                 v, draw(st.integers(0, 65535)) if v is None else None, flags))
    return rows


def _places(obj, path=()):
    """Every (container path) inside obj where a value can be replaced or appended."""
    yield path
    if isinstance(obj, list):
        for i, x in enumerate(obj):
            yield from _places(x, path + (i,))
    elif isinstance(obj, dict):
        for k, x in obj.items():
            yield from _places(x, path + (k,))


def _get(obj, path):
    for p in path:
        obj = obj[p]
    return obj


@settings(max_examples=150, deadline=None)
@given(rows_st(), st.booleans(), st.data())
def test_stranger_and_ours_agree_on_batches(rows, counters, data):
    payload = batcher.encode_batch(data.draw(st.integers(1, U32)), T, rows, (),
                                   {1: 0, 2: 5, 3: 0, 4: 1, 5: 0} if counters else None)
    assert agree(payload)                        # what the gateway builds is valid
    m = cbor2.loads(payload)
    if data.draw(st.integers(0, 5)) == 0:         # the batch map's own keys
        m[data.draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 15, 16, 40]))] = \
            data.draw(st.sampled_from(EDGES))
    for _ in range(data.draw(st.integers(0, 3))):
        places = list(_places(m))
        path = data.draw(st.sampled_from(places))
        what = data.draw(st.sampled_from(["set", "append", "drop"]))
        new = data.draw(st.sampled_from(EDGES))
        if not path:
            continue
        parent, key = _get(m, path[:-1]), path[-1]
        if what == "set":
            parent[key] = new
        elif what == "drop":
            del parent[key]
        elif isinstance(parent[key], list):
            parent[key].append(new)
    agree(cbor2.dumps(m))


def test_stranger_reads_the_vectors_as_the_spec_says():
    vec = json.loads(VEC.read_text())["messages"]
    for v in vec:
        if v["kind"] != "batch":
            continue
        raw = bytes.fromhex(v["hex"])
        if cbor2.loads(raw).get(0) != 2:
            continue
        accepted = agree(raw) if v["name"] != "indefinite_length_map" else False
        assert accepted == ("path" not in v), v["name"]
        if "readings" in v:
            assert [list(r) for r in s_batch(raw)] == sorted(v["readings"])
