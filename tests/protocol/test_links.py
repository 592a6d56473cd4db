"""Link state machines: replay rule, duplicates, reordering, acks, back-off, budget."""
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import channels, messages, readings
from protocol import frame as fr
from protocol.gwlink import DUPLICATE, NEW, REASON_REPLAY, GatewayLink, SeqSet
from protocol.mic import Hmac
from protocol.nodelink import IDLE, WAIT_ACK, NodeLink, SeqAllocator

KEY = bytes(range(1, 33))
SIGNER = Hmac(KEY)
PAYLOAD = readings.encode([readings.Block(channels.chan_id(1), 0, 0, [1])])


def uplink(seq, back=0, node=101):
    return fr.encode(SIGNER, fr.READINGS, node, seq, 0, PAYLOAD, 0, back)


def gw():
    return GatewayLink(lambda n: SIGNER if n == 101 else None)


def deliver(g, data):
    """What the gateway shell does: classify, 'store', mark committed, build the ack."""
    r = g.receive(data)
    if r.status == NEW:
        g.committed(r.frame)
    return r.status, messages.decode_ack(fr.decode(g.ack(101, r.frame.seq, 5, 1), lambda n: SIGNER).payload)


def test_new_duplicate_replay():
    g = gw()
    assert deliver(g, uplink(1))[0] == NEW
    assert deliver(g, uplink(1))[0] == DUPLICATE
    assert deliver(g, uplink(2, back=0))[0] == NEW          # node says: nothing older outstanding
    with pytest.raises(fr.FrameError) as e:
        g.receive(uplink(1))                                  # below the floor now
    assert e.value.reason == REASON_REPLAY


def test_reordered_backlog_after_alarm_is_accepted():
    """Alarms go first: seq 500 arrives before the backlog 100..499; none may be refused."""
    g = gw()
    outstanding = set(range(100, 501))      # the node's log: backlog plus the new alarm
    order = [500] + random.Random(3).sample(range(100, 500), 400)
    for s in order:
        status, (_, _, ranges) = deliver(g, uplink(s, back=s - min(outstanding)))
        assert status == NEW
        for lo, hi in ranges:                # the node deletes what the ack covers
            outstanding -= set(range(lo, hi + 1))
    assert not outstanding
    # a replay of any of them is now a duplicate or stale, never new
    for s in (100, 250, 499, 500):
        try:
            assert g.receive(uplink(s)).status == DUPLICATE
        except fr.FrameError as e:
            assert e.reason == REASON_REPLAY


def test_duplicate_in_flight_before_commit():
    g = gw()
    r1 = g.receive(uplink(7))
    r2 = g.receive(uplink(7))
    assert (r1.status, r2.status) == (NEW, DUPLICATE)
    g.abandoned(r1.frame)   # the store failed: a retransmission must be new again
    assert g.receive(uplink(7)).status == NEW


def test_restart_loads_state_and_does_not_reopen_window():
    g = gw()
    for s in (10, 11, 12, 15):
        deliver(g, uplink(s, back=s - 10))
    st_ = g.state(101)
    g2 = gw()
    g2.load(101, st_.floor, [tuple(r) for r in st_.ranges])
    assert g2.receive(uplink(11)).status == DUPLICATE
    with pytest.raises(fr.FrameError):
        g2.receive(uplink(9))
    assert g2.receive(uplink(13)).status == NEW


def test_ack_lists_cumulative_and_selective_ranges():
    g = gw()
    for s in (1, 2, 3, 6, 7, 10):
        deliver(g, uplink(s, back=s - 1))      # the node still holds seq 1 unacked
    _, (re, t, ranges) = deliver(g, uplink(11, back=10))
    assert re == 11 and ranges == [(10, 11), (6, 7), (1, 3)]


@settings(max_examples=200)
@given(st.lists(st.integers(1, 300), max_size=200))
def test_seqset_matches_a_plain_set(seqs):
    s = SeqSet()
    ref = set()
    for x in seqs:
        s.add(x)
        ref.add(x)
        assert all(x in s for x in ref)
    assert sum(hi - lo + 1 for lo, hi in s.ranges) == len(ref)
    for (_a, b), (c, _d) in zip(s.ranges, s.ranges[1:]):
        assert b + 1 < c      # disjoint, not adjacent, sorted
    if ref:
        assert s.missing() == max(ref) - s.floor + 1 - len(ref)


def test_seqset_bounded_and_counts_evictions():
    s = SeqSet(max_ranges=4)
    for x in range(1, 40, 3):
        s.add(x)
    assert len(s.ranges) <= 4
    assert s.evicted > 0
    assert s.classify(1) == REASON_REPLAY


def test_seq_allocator_never_reuses_across_reboots():
    persisted = 0
    used = set()
    for boot in range(20):
        a = SeqAllocator(persisted, block=8)
        for _ in range(boot % 11):
            seq, reserve = a.take()
            if reserve is not None:
                persisted = reserve       # written before the seq is used
            assert seq not in used and seq >= 1
            used.add(seq)


class Clock:
    def __init__(self):
        self.rng = random.Random(1)

    def rand(self):
        return self.rng.random()


def test_node_link_waits_for_ack_then_backs_off_with_jitter():
    link = NodeLink(Clock().rand)
    assert link.can_send(0.0, 0.3)
    link.sent(0.0, 1, 0.3)
    assert link.state == WAIT_ACK and not link.can_send(1.0, 0.3)
    assert link.deadline() == 3.0
    assert link.poll(3.0)
    delays = []
    t = 3.0
    for _ in range(5):
        nxt = link.next_send_time()
        delays.append(nxt - t)
        assert not link.can_send(nxt - 0.01, 0.3)
        assert link.can_send(nxt, 0.3)
        link.sent(nxt, 1, 0.3)
        t = nxt + link.ack_timeout_s
        link.poll(t)
    # exponential with jitter in [0.5, 1.5)
    for i, d in enumerate(delays):
        base = min(300, 4 * 2 ** i)
        assert 0.5 * base <= d < 1.5 * base
    assert link.down()


def test_node_link_down_probes_and_recovers_on_ack():
    link = NodeLink(Clock().rand, down_after=2, probe_s=600)
    t = 0.0
    for _ in range(2):
        t = max(t, link.next_send_time())
        link.sent(t, 5, 0.2)
        t += 3
        link.poll(t)
    assert link.down() and link.next_send_time() - t >= 300
    t = link.next_send_time()
    link.sent(t, 5, 0.2)
    r = link.on_ack(t + 0.5, 5, 1_780_000_000, [(1, 5)])
    assert r.fresh and r.completed and r.ranges == [(1, 5)]
    assert not link.down() and link.state == IDLE


def test_alarm_preempts_routine_wait_and_ignores_budget():
    link = NodeLink(Clock().rand, budget_s=1.0)
    link.sent(0.0, 1, 0.9)               # routine frame in flight, budget nearly gone
    assert not link.can_send(0.5, 0.3)
    assert link.can_send(0.5, 0.3, urgent=True)
    link.sent(0.5, 2, 0.3, urgent=True)
    assert link.inflight[0] == 2
    assert not link.can_send(0.6, 0.3, urgent=True)   # one urgent frame in flight at a time


def test_budget_limits_routine_airtime():
    link = NodeLink(Clock().rand, budget_s=1.0, budget_window_s=100.0, gap_s=0)
    t, sent = 0.0, 0
    while t < 100:
        if link.can_send(t, 0.25):
            link.sent(t, sent + 1, 0.25)
            link.on_ack(t + 0.1, sent + 1, 0, [])
            sent += 1
        t += 0.5
    # 1 s initial + ~1 s refill over 100 s => about 8 frames of 0.25 s
    assert 6 <= sent <= 9


def test_replayed_ack_cannot_set_the_clock():
    link = NodeLink(Clock().rand)
    link.sent(0.0, 9, 0.2)
    old = link.on_ack(1.0, 9, 1000, [(9, 9)])
    assert old.fresh
    replay = link.on_ack(500.0, 9, 999_999, [(9, 9)])
    assert not replay.fresh and not replay.completed
    assert not link.is_fresh_re(500.0, 9)
