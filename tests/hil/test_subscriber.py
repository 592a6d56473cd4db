"""The rig's independent decoder (hil/subscriber.py): what it accepts per the uplink
contract, and that it flags what a consumer must not accept. No broker: messages are
handed to its callback as paho would."""
import cbor2
import pytest

from hil.subscriber import Subscriber

BASE = "stations/hil/gw1"


class Msg:
    def __init__(self, topic, doc):
        self.topic = topic
        self.payload = doc if isinstance(doc, bytes) else cbor2.dumps(doc)


def batch(seq, blocks, counters=None):
    return {0: 1, 1: "hil", 2: "gw1", 3: seq, 4: 1_780_000_000, 5: blocks,
            7: counters or {1: 0, 2: 0, 3: 0, 4: 0, 5: 0}}


@pytest.fixture
def sub():
    return Subscriber(1, "stations", "hil", "gw1")     # never connected in these tests


def feed(sub, sub_topic, doc):
    sub._on_message(None, None, Msg(BASE + "/" + sub_topic, doc))
    sub.check_schema()


def test_runs_expand_to_readings_under_their_dedup_keys(sub):
    feed(sub, "data", batch(1, [[101, [[0x10, [[7, 3, 1000, 60, [5, [1], 7], 1]]]]]]))
    r = sub.readings
    assert sorted(r) == [(101, 7, 3), (101, 7, 4), (101, 7, 5)]
    assert [(x.t, x.value, x.fault, x.flags) for x in (r[(101, 7, 3)], r[(101, 7, 4)],
                                                       r[(101, 7, 5)])] == \
        [(1000, 5, None, 1), (1060, None, 1, 1), (1120, 7, None, 1)]
    assert sub.batches == {1: 1} and not sub.errors


def test_schema_2_groups_expand_to_the_same_readings(sub):
    # two points of a Modbus device in one group (stride 1024), deltas, a fault
    b = {0: 2, 3: 1, 4: 1_780_000_010, 5: [[9001, [[4, 7, -10, 1, 0, 1024,
                                                     [0x18, 1500, 1, [3], -2], [0x38, 215, 0, 0, 0]]]]]}
    feed(sub, "data", b)
    r = sub.readings
    assert sorted(r) == [(9001, 4, k) for k in (7, 8, 9, 10)] + \
        [(9001, 4, 1024 + k) for k in (7, 8, 9, 10)]
    assert [(r[(9001, 4, 7 + k)].t, r[(9001, 4, 7 + k)].value, r[(9001, 4, 7 + k)].fault)
            for k in range(4)] == [(1_780_000_000, 1500, None), (1_780_000_001, 1501, None),
                                   (1_780_000_002, None, 3), (1_780_000_003, 1499, None)]
    assert [r[(9001, 4, 1031 + k)].value for k in range(4)] == [215] * 4
    assert sub.batches == {1: 1} and not sub.errors


def test_a_copy_is_a_duplicate_and_other_content_is_a_conflict(sub):
    run = [[101, [[0x10, [[7, 0, 1000, 60, [5]]]]]]]
    feed(sub, "data", batch(1, run))
    feed(sub, "data", batch(1, run))                      # re-sent after a crash: same seq
    assert sub.duplicates == 1 and not sub.conflicts
    feed(sub, "data", batch(2, [[101, [[0x10, [[7, 0, 1000, 60, [6]]]]]]]))
    assert len(sub.conflicts) == 1                        # same key, other value


@pytest.mark.parametrize("bad, why", [
    (batch(0, []), "seq"),
    ({0: 3, 1: "hil", 2: "gw1", 3: 1, 4: 1, 5: [], 7: {}}, "schema"),
    ({0: 2, 1: "hil", 2: "gw1", 3: 1, 4: 1, 5: []}, "schema 2 with key 1"),
    ({0: 2, 3: 1, 4: 1, 5: [[101, [[1, 0, 0, 0, 0, 0]]]]}, "group"),
    ({0: 2, 3: 1, 4: 9, 5: [[101, [[1, 0, 0, 0, 0, 0, [16, 1.5]]]]]}, "value"),
    (batch(1, [[101, [[0x10, [[7, 0, 1000, 60, [1.5]]]]]]]), "value"),
    (batch(1, [[101, [[0x10, [[7, 0, 1000, 60, []]]]]]]), "run"),
    (batch(1, [[101, [[0x10, [[7, 0, 1000, 60, [[1, 2]]]]]]]]), "fault"),
    (b"\xff\x00", "CBOR"),
])
def test_contract_violations_are_reported(sub, bad, why):
    feed(sub, "data", bad)
    assert sub.errors and why.lower() in " ".join(sub.errors).lower()
    assert not sub.readings


def test_alarms_need_every_key_and_are_kept_once(sub):
    a = {0: 1, 1: "hil", 2: "gw1", 3: 101, 4: 9, 5: 1, 6: 4, 7: 0, 8: 0x10, 9: 5, 10: 4,
         11: 1700, 12: 3600, 13: 1_780_000_100, 14: 1_780_000_100_400}
    feed(sub, "alarm", a)
    feed(sub, "alarm", a)
    assert list(sub.alarms) == [(101, 9, 0)] and sub.alarm_duplicates == 1
    b = dict(a)
    del b[13]
    feed(sub, "alarm", b)
    assert any("key 13" in e for e in sub.errors)


def test_a_foreign_site_or_topic_is_an_error(sub):
    doc = batch(1, [])
    doc[1] = "elsewhere"
    feed(sub, "data", doc)
    feed(sub, "weather", {0: 1})
    assert len(sub.errors) == 2


def test_messages_are_checked_against_the_uplink_cddl(sub):
    # decodable by the subscriber's own rules, but node 0 is outside uplink.cddl
    feed(sub, "data", batch(1, [[0, [[0x10, [[7, 0, 1000, 0, [5]]]]]]]))
    assert any("uplink.cddl" in e and "/5/0" in e for e in sub.errors), sub.errors


def test_a_reading_in_two_batch_seqs_is_counted_apart_from_a_resent_batch(sub):
    run = [[101, [[0x10, [[7, 0, 1000, 60, [5]]]]]]]
    feed(sub, "data", batch(1, run))
    feed(sub, "data", batch(1, run))                      # lost PUBACK: same seq and bytes
    assert sub.duplicates == 1 and sub.duplicates_across_batches == 0
    feed(sub, "data", batch(2, run))                      # the same reading batched twice
    assert sub.duplicates == 2 and sub.duplicates_across_batches == 1
