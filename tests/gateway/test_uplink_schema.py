"""protocol/uplink.cddl is what SPEC.md §9 shows, and every uplink message the gateway
builds passes it (gateway/uplink_schema.py, zcbor); what the CDDL excludes fails with
the path of the failing part. Property: any READINGS frame the node's encoders build
is decoded by the gateway into the same readings, and the batch carrying them passes."""
import re
from pathlib import Path

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import batcher, uplink_schema
from gateway.radio import RadioIngest
from gateway.records import Alarm, NodeStatus, Reading
from protocol import frame as fr
from protocol import messages as msg
from protocol import readings as rd
from protocol.framing import wrap
from protocol.mic import Hmac

ROOT = Path(__file__).resolve().parents[2]
KEY = bytes(range(1, 33))
COUNTERS = {1: 0, 2: 3, 3: 7, 4: 1, 5: 0}
T = 1_800_000_000
s32 = st.integers(-(2**31), 2**31 - 1)


def test_spec_shows_uplink_cddl_verbatim():
    spec = (ROOT / "protocol" / "SPEC.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```cddl\n(.*?)```", spec, re.S)
    assert "".join(blocks) == (ROOT / "protocol" / "uplink.cddl").read_text(encoding="utf-8"), (
        "SPEC.md's cddl blocks, joined, must equal protocol/uplink.cddl: edit both")
    command = re.findall(r"```cddl command\n(.*?)```", spec, re.S)
    assert "".join(command) == (ROOT / "protocol" / "command.cddl").read_text(encoding="utf-8"), (
        "SPEC.md's `cddl command` block (§9.5) must equal protocol/command.cddl: edit both")


def batch(rows, **kw):
    return batcher.encode_batch(kw.pop("seq", 1), T, rows,
                                counters=kw.pop("counters", COUNTERS), **kw)


def batch_v1(rows, **kw):
    return batcher.encode_batch_v1("site", "gw1", kw.pop("seq", 1), T, rows,
                                   counters=kw.pop("counters", COUNTERS), **kw)


ROWS = [(1, 101, 5, 0, 16, T - 60, 10, None, 0), (2, 101, 5, 1, 16, T, 11, None, 0),
        (3, 101, 5, 2, 24, T, None, 0x0207, 1)]


def test_what_the_gateway_publishes_passes():
    uplink_schema.check("batch", batch(ROWS, statuses=[NodeStatus(101, T, 3300, None, -35, 4000)]))
    uplink_schema.check("batch", batch([]))
    uplink_schema.check("batch", batch(ROWS, counters=None))
    uplink_schema.check("batch", batch_v1(ROWS))
    uplink_schema.check(None, batch(ROWS))
    uplink_schema.check("alarm", batcher.encode_alarm("s", "g", Alarm(
        101, 5, 0, 1, 3, 0, 16, 2, 5, -500, 400, T, T * 1000 + 5)))
    uplink_schema.check("status", batcher.encode_status("s", "g", 1, T, "1.0", {101: T}))
    uplink_schema.check(None, batcher.encode_status("s", "g", 0, T, "1.0"))


def _edit(payload, fn):
    m = cbor2.loads(payload)
    fn(m)
    return cbor2.dumps(m)


def _g(m, j=0):
    return m[5][0][1][j]


# schema 2: ROWS are the groups [5, 0, -60, 60, 0, 0, [16, 10, 1]] and [5, 2, 0, 0, 1, 0, [24, [0x207]]]
@pytest.mark.parametrize("edit, path", [
    (lambda m: m[7].pop(3), "/7"),                                  # a counter missing
    (lambda m: m[5][0].__setitem__(0, 0), "/5/0"),                  # node 0
    (lambda m: _g(m)[6].__setitem__(0, 256), "/5/0/1/0/6"),         # chan 256
    (lambda m: _g(m)[6].__setitem__(1, 2**31), "/5/0/1/0/6/1"),     # first sample > int32
    (lambda m: _g(m)[6].__setitem__(2, 2**31), "/5/0/1/0/6/2"),     # a delta leaving int32
    (lambda m: _g(m)[6].__setitem__(2, 2**32), "/5/0/1/0/6/2"),     # a delta beyond its range
    (lambda m: _g(m, 1)[6].__setitem__(1, [-1]), "/5/0/1/1/6/1"),   # fault -1
    (lambda m: _g(m).__setitem__(3, 0), "/5/0/1/0"),                # 2 values, step 0
    (lambda m: _g(m, 1).__setitem__(3, 5), "/5/0/1/1"),             # 1 value, step 5
    (lambda m: _g(m).__setitem__(4, 4), "/5/0/1/0"),                # flags 4
    (lambda m: _g(m).append([17, 1, 2]), "/5/0/1/0"),               # 2 chan_runs, stride 0
    (lambda m: (_g(m).append([17, 1]), _g(m).__setitem__(5, 2)), "/5/0/1/0"),  # counts differ
    (lambda m: (_g(m).append([17, 1, 2]), _g(m).__setitem__(5, 1)), "/5/0/1/0"),  # keys overlap
    (lambda m: _g(m).__setitem__(2, -T - 1), "/5/0/1/0"),           # time before 1970
    (lambda m: _g(m)[6].__setitem__(1, 1.5), "/5/0/1/0/6/1"),       # a float
    (lambda m: _g(m).__setitem__(6, [16]), "/5/0/1/0/6"),           # a chan_run without values
    (lambda m: m[7].__setitem__("x", 1), "/7"),                     # a text key
    (lambda m: m[7].__setitem__(20, -1), "/7"),
    (lambda m: m.__setitem__(6, [{1: 101, 2: T, 3: -1}]), "/6/0"),  # battery -1
    (lambda m: m[5].append(m[5][0]), "/5/1/0"),                     # node twice
    (lambda m: m[5][0][1].append(_g(m)), "/5/0/1/2"),               # groups out of order
    (lambda m: m.__setitem__(1, "site"), "/"),                      # schema 2 has no key 1
    (lambda m: m.__setitem__(0, 3), "/"),
])
def test_what_the_cddl_excludes_fails_with_its_path(edit, path):
    with pytest.raises(uplink_schema.SchemaError) as e:
        uplink_schema.check("batch", _edit(batch(ROWS), edit))
    assert e.value.path == path, str(e.value)


@pytest.mark.parametrize("edit, path", [
    (lambda m: m.pop(7), "/"),                                      # schema 1 needs counters
    (lambda m: m[5][0].__setitem__(0, 0), "/5/0"),
    (lambda m: m[5][0][1][0][1][0][4].__setitem__(0, 2**31), "/5/0/1/0/1/0/4/0"),
    (lambda m: m[5][0][1].append(m[5][0][1][0]), "/5/0/1/2/0"),     # channel twice
])
def test_schema_1_batches_are_still_checked(edit, path):
    with pytest.raises(uplink_schema.SchemaError) as e:
        uplink_schema.check("batch", _edit(batch_v1(ROWS), edit))
    assert e.value.path == path, str(e.value)


def test_encoding_rules():
    good = batch(ROWS)
    for bad in (b"\xbf" + good[1:] + b"\xff",                    # indefinite-length map
                good[:1] + b"\x18\x00" + good[2:],               # key 0 in a 2-byte head
                b"\xc1" + good):                                 # a tag
        with pytest.raises(uplink_schema.SchemaError, match="encoding|not CBOR"):
            uplink_schema.check("batch", bad)


def test_alarm_rule_kind_and_level_ranges():
    a = batcher.encode_alarm("s", "g", Alarm(101, 5, 0, 1, 3, 0, 16, 2, 9, 1, 1, T, 1))
    with pytest.raises(uplink_schema.SchemaError):
        uplink_schema.check("alarm", a)
    a = batcher.encode_alarm("s", "g", Alarm(101, 5, 0, 1, 5, 0, 16, 2, 1, 1, 1, T, 1))
    with pytest.raises(uplink_schema.SchemaError):
        uplink_schema.check("alarm", a)


@st.composite
def node_blocks(draw):
    n = draw(st.integers(1, 40))
    step = draw(st.integers(1, 3600)) if n > 1 else 0
    age = draw(st.integers(step * (n - 1), step * (n - 1) + 100_000))
    chan = draw(st.integers(0, 255))
    if draw(st.booleans()):
        return rd.Block(chan, age, step, None, fault=draw(st.integers(0, 0xFFFF)), count=n)
    return rd.Block(chan, age, step, draw(st.lists(
        st.one_of(s32, st.sampled_from([-(2**31), 2**31 - 1, 0])), min_size=n, max_size=n)))


@settings(max_examples=150, deadline=None)
@given(st.lists(node_blocks(), min_size=1, max_size=6), st.integers(1, 2**32 - 1),
       st.sampled_from([0, fr.F_TIME_APPROX]))
def test_node_frames_decode_to_the_same_readings_and_publish_valid_batches(blocks, seq, flags):
    payload = rd.encode(blocks)
    if len(payload) + 26 > fr.MAX_FRAME:
        payload = rd.encode(blocks[:1])
        blocks = blocks[:1]
        if len(payload) + 26 > fr.MAX_FRAME:
            return
    ing = RadioIngest({101: KEY})
    ing.feed(wrap(fr.encode(Hmac(KEY), fr.READINGS, 101, seq, 5, payload, flags)), T + 0.4)
    recs = [r for r in ing.take_group().records if type(r) is Reading]
    want = []
    for b in blocks:
        for k in range(b.count):
            want.append((b.chan, T - b.age + k * b.step,
                         None if b.values is None else b.values[k],
                         b.fault if b.values is None else None))
    assert [(r.chan, r.t, r.value, r.fault) for r in recs] == want
    assert [r.idx for r in recs] == list(range(len(want)))
    rows = [(i, r.node, r.seq, r.idx, r.chan, r.t, r.value, r.fault, r.flags)
            for i, r in enumerate(recs)]
    uplink_schema.check("batch", batch(rows))
    _m, back = batcher.decode_batch_readings(batch(rows))
    assert sorted((x[2], x[3], x[4], x[5]) for x in back) == sorted(
        (r.idx, r.chan, r.t, r.value if r.fault is None else [r.fault]) for r in recs)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 65534), st.integers(0, 255), st.integers(1, 2**32 - 1),
                          st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
                          st.one_of(s32.map(lambda v: (v, None)),
                                    st.integers(0, 0xFFFF).map(lambda f: (None, f))),
                          st.integers(0, 3)), max_size=60,
                unique_by=lambda r: (r[0], r[2], r[3])),      # the store's UNIQUE key
       st.lists(st.builds(NodeStatus, st.integers(1, 65534), st.integers(0, 2**32 - 1),
                          st.integers(0, 65535), st.integers(0, 65535),
                          st.integers(-32768, 32767), st.integers(0, 2**32 - 1)), max_size=3),
       st.one_of(st.none(), st.dictionaries(st.integers(1, 5), st.integers(0, 2**32 - 1),
                                            min_size=5)))
def test_any_batch_the_gateway_builds_passes(readings, statuses, counters):
    rows = [(i, node, seq, idx, chan, t, v, f, flags)
            for i, (node, chan, seq, idx, t, (v, f), flags) in enumerate(readings)]
    payload = batch(rows, statuses=statuses, counters=counters)
    uplink_schema.check("batch", payload)
    _m, back = batcher.decode_batch_readings(payload)
    assert sorted(back) == sorted((node, seq, idx, chan, t, [f] if v is None else v, flags)
                                  for node, chan, seq, idx, t, (v, f), flags in readings)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.integers(1, 12), st.integers(1, 60), st.integers(1, 2**32 - 1),
       st.integers(0, 1023), st.data())
def test_modbus_poll_windows_share_group_headers_and_pass(points, polls, step, seq, k0, data):
    """Polls of a device as gateway/modbus.py keys them (idx = point * WINDOW + poll):
    one group per batch when nothing breaks the runs, every reading back exactly."""
    from gateway.modbus import WINDOW
    polls = min(polls, WINDOW - k0)
    chans = data.draw(st.lists(st.integers(0, 255), min_size=points, max_size=points))
    rows = []
    for k in range(polls):
        for i, chan in enumerate(chans):
            v = data.draw(st.one_of(s32, st.none()))
            rows.append((len(rows), 9001, seq, i * WINDOW + k0 + k, chan, T - 3600 + k * step,
                         v, 0x0101 if v is None else None, 0))
    payload = batch(rows)
    uplink_schema.check("batch", payload)
    m, back = batcher.decode_batch_readings(payload)
    assert len(m[5][0][1]) == 1
    assert sorted(back) == sorted((r[1], r[2], r[3], r[4], r[5], [r[7]] if r[6] is None else r[6], 0)
                                  for r in rows)


EVENT_LEVELS = ([(1, 0, lv) for lv in range(1, 5)] + [(3, p, 0) for p in range(1, 5)]
                + [(2, p, lv) for p in range(1, 5) for lv in range(1, 5) if p != lv])


@st.composite
def alarm_maps(draw):
    ev, prev, lv = draw(st.sampled_from(EVENT_LEVELS))
    a = {msg.A_EVENT: ev, msg.A_LEVEL: lv, msg.A_PREV: prev, msg.A_CHAN: draw(st.integers(0, 255)),
         msg.A_RULE: draw(st.integers(0, 255)), msg.A_KIND: draw(st.integers(1, 5)),
         msg.A_VALUE: draw(s32), msg.A_THRESHOLD: draw(s32)}
    if draw(st.booleans()):
        a[msg.A_AGE] = draw(st.integers(0, 10**6))
    return a


status_maps = st.fixed_dictionaries({}, optional={
    msg.S_BATTERY_MV: st.integers(0, 65535), msg.S_SUPPLY_MV: st.integers(0, 65535),
    msg.S_TEMP_DECIC: st.integers(-32768, 32767), msg.S_FREE_HEAP: st.integers(0, 2**32 - 1),
    msg.S_RESET_CAUSE: st.integers(0, 255), msg.S_LOG_DEPTH: st.integers(0, 2**32 - 1),
    msg.S_FW: st.text(min_size=1, max_size=8), msg.S_CONFIG_VERSION: st.integers(0, 2**32 - 1),
    msg.S_LEVEL: st.integers(0, 4), msg.S_MODE: st.integers(0, 2)})


@settings(max_examples=60, deadline=None)
@given(st.lists(alarm_maps(), min_size=1, max_size=4), status_maps, st.integers(1, 2**32 - 2))
def test_node_alarms_and_status_become_valid_uplink_messages(alarms, status, seq):
    """What a node may send (SPEC §3), through the gateway's ingest, published: the alarm
    messages and the batch with the node's status pass uplink.cddl."""
    ing = RadioIngest({101: KEY})
    ing.feed(wrap(fr.encode(Hmac(KEY), fr.ALARM, 101, seq, 5, msg.encode_alarms(alarms))), T)
    ing.feed(wrap(fr.encode(Hmac(KEY), fr.STATUS, 101, seq + 1, 5, msg.encode_map(status))), T)
    recs = ing.take_group().records
    got = [r for r in recs if type(r) is Alarm]
    assert len(got) == len(alarms)
    for a in got:
        uplink_schema.check("alarm", batcher.encode_alarm("site", "gw1", a))
    sts = [r for r in recs if type(r) is NodeStatus]
    assert len(sts) == 1
    uplink_schema.check("batch", batch([], statuses=sts))
