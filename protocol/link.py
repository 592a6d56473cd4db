"""Link state machines, pure logic with injected time (SPEC.md, "Link behaviour").

Node side:
  SeqAllocator  - sequence numbers that are never reused, with few flash writes
  NodeLink      - one frame in flight, ack wait, randomised back-off, link-down probing,
                  airtime budget, alarms ahead of everything
Gateway side:
  SeqSet        - which seqs of one node are committed, above a floor (the replay rule)
  GatewayLink   - MIC check, replay/duplicate classification, ACK generation

Nothing here reads a clock or touches I/O: callers pass `now` (seconds, monotonic for
scheduling) and get decisions back.
"""
from protocol import frame as fr
from protocol import messages

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x


class SeqAllocator:
    """Hands out seqs; before the first seq of each block is used, the caller must
    persist `reserve` (write-temp-then-rename). After a reboot, counting resumes at the
    persisted value, so a seq is never reused; at most `block - 1` seqs are skipped.

        alloc = SeqAllocator(persisted_value_or_0)
        seq, reserve = alloc.take()
        if reserve is not None: persist(reserve)     # before seq goes anywhere
    """

    def __init__(self, persisted=0, block=32):
        if block < 1:
            raise ValueError("block must be >= 1")
        self.block = block
        self.next = max(1, persisted)
        self.reserved = self.next  # seqs below this are covered by what is on flash

    def take(self):
        seq = self.next
        reserve = None
        if seq >= self.reserved:
            self.reserved = seq + self.block
            reserve = self.reserved
        self.next = seq + 1
        if self.next > 0xFFFFFFFF:
            raise OverflowError("sequence space exhausted")
        return seq, reserve


# NodeLink states
IDLE = const(0)       # free to send when back-off and budget allow
WAIT_ACK = const(1)   # a frame is in flight; waiting for its ACK


class AckResult:
    __slots__ = ("ranges", "fresh", "gw_time", "completed")

    def __init__(self, ranges, fresh, gw_time, completed):
        self.ranges = ranges        # (lo, hi) seq ranges the gateway has committed
        self.fresh = fresh          # answers a frame sent moments ago: its time can be trusted
        self.gw_time = gw_time      # gateway Unix time (use only if fresh)
        self.completed = completed  # it answered the frame in flight


class NodeLink:
    """Decides when the node may transmit.

    Call order: `can_send(now, airtime, urgent)`; if True build and transmit the frame,
    then `sent(now, seq, airtime, urgent)`. Feed received ACKs to `on_ack()`. Call
    `poll(now)` whenever `deadline()` passes (ack timeouts). `urgent` marks alarm frames:
    they ignore the airtime budget, their first attempt ignores back-off, and they may
    pre-empt the wait for a routine frame's ack.
    """

    def __init__(self, rand, ack_timeout_s=3.0, retry_base_s=4.0, retry_max_s=300.0,
                 urgent_base_s=1.0, urgent_max_s=30.0, down_after=6, probe_s=600.0,
                 budget_s=36.0, budget_window_s=3600.0, fresh_s=30.0, gap_s=0.05):
        self.rand = rand                # () -> float in [0, 1): the node's RNG, injected
        self.ack_timeout_s = ack_timeout_s
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self.urgent_base_s = urgent_base_s
        self.urgent_max_s = urgent_max_s
        self.down_after = down_after
        self.probe_s = probe_s
        self.capacity = budget_s
        self.refill = budget_s / budget_window_s
        self.fresh_s = fresh_s
        self.gap_s = gap_s
        self.state = IDLE
        self.inflight = None            # (seq, sent_at, urgent)
        self.failures = 0               # consecutive routine frames without ack
        self.urgent_failures = 0
        self.next_routine = 0.0
        self.next_urgent = 0.0
        self.tokens = budget_s
        self._tokens_at = None
        self._recent = []               # [(seq, sent_at)] last few transmissions
        self.sent_frames = 0
        self.airtime_total = 0.0
        self.link_up = False            # an ACK came back recently

    # --- budget -------------------------------------------------------------
    def _refill(self, now):
        if self._tokens_at is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self._tokens_at) * self.refill)
        self._tokens_at = now

    def down(self):
        return self.failures >= self.down_after

    # --- decisions ----------------------------------------------------------
    def can_send(self, now, airtime, urgent=False):
        self._refill(now)
        if self.state == WAIT_ACK:
            if not (urgent and not self.inflight[2]):
                return False
        if urgent:
            return now >= self.next_urgent
        return now >= self.next_routine and self.tokens >= airtime

    def sent(self, now, seq, airtime, urgent=False):
        self._refill(now)
        self.tokens -= airtime          # urgent frames may drive it negative: they are never refused
        self.airtime_total += airtime
        self.sent_frames += 1
        self.state = WAIT_ACK
        self.inflight = (seq, now, urgent)
        self._recent.append((seq, now))
        if len(self._recent) > 8:
            self._recent.pop(0)

    def deadline(self):
        """Next time `poll` must run, or None while idle with nothing timed."""
        if self.state == WAIT_ACK:
            return self.inflight[1] + self.ack_timeout_s
        return None

    def next_send_time(self, urgent=False):
        return self.next_urgent if urgent else self.next_routine

    def poll(self, now):
        """Handle an ack timeout. Returns True if the frame in flight just timed out."""
        if self.state != WAIT_ACK or now < self.inflight[1] + self.ack_timeout_s:
            return False
        urgent = self.inflight[2]
        self.state = IDLE
        self.inflight = None
        jitter = 0.5 + self.rand()      # x0.5 .. x1.5 so nodes that collided drift apart
        if urgent:
            self.urgent_failures += 1
            d = min(self.urgent_max_s, self.urgent_base_s * (1 << min(self.urgent_failures - 1, 16)))
            self.next_urgent = now + d * jitter
        else:
            self.failures += 1
            if self.failures >= self.down_after:
                self.link_up = False
                d = self.probe_s
            else:
                d = min(self.retry_max_s, self.retry_base_s * (1 << min(self.failures - 1, 16)))
            self.next_routine = now + d * jitter
        return True

    def on_ack(self, now, re, gw_time, ranges):
        fresh = False
        for seq, at in self._recent:
            if seq == re and now - at <= self.fresh_s:
                fresh = True
        completed = self.state == WAIT_ACK and self.inflight[0] == re
        if completed:
            self.state = IDLE
            self.inflight = None
        if fresh:
            self.failures = 0
            self.urgent_failures = 0
            self.link_up = True
            self.next_routine = now + self.gap_s
            self.next_urgent = now
        return AckResult(ranges, fresh, gw_time, completed)

    def is_fresh_re(self, now, re):
        """Is `re` one of this node's recent transmissions (for CONFIG downlinks)?"""
        for seq, at in self._recent:
            if seq == re and now - at <= self.fresh_s:
                return True
        return False


# --- gateway side -----------------------------------------------------------

NEW = "new"
DUPLICATE = "duplicate"
REASON_REPLAY = "replay"


class SeqSet:
    """Committed seqs of one node at or above `floor`, as sorted disjoint [lo, hi] ranges.

    The replay rule (SPEC.md): a frame with seq < floor is stale and refused; a seq in
    the set is a duplicate (acked again, stored never); any other seq is new. The floor
    only rises, to the node's own oldest unacknowledged seq (seq - back of a committed
    frame), so state stays small while no genuine frame is ever refused."""

    def __init__(self, floor=1, ranges=None, max_ranges=256):
        self.floor = floor
        self.ranges = [list(r) for r in (ranges or [])]
        self.max_ranges = max_ranges
        self.evicted = 0

    def __contains__(self, seq):
        for lo, hi in self.ranges:
            if lo <= seq <= hi:
                return True
        return False

    def classify(self, seq):
        if seq < self.floor:
            return REASON_REPLAY
        return DUPLICATE if seq in self else NEW

    def add(self, seq):
        if seq < self.floor or seq in self:
            return
        r = self.ranges
        i = 0
        while i < len(r) and r[i][1] < seq - 1:
            i += 1
        if i < len(r) and r[i][0] <= seq + 1:
            # touches range i (from below or above)
            if seq < r[i][0]:
                r[i][0] = seq
            elif seq > r[i][1]:
                r[i][1] = seq
                if i + 1 < len(r) and r[i + 1][0] == seq + 1:
                    r[i][1] = r[i + 1][1]
                    r.pop(i + 1)
        else:
            r.insert(i, [seq, seq])
        while len(r) > self.max_ranges:
            # Too fragmented: give up the oldest hole. Frames in it will be refused as
            # stale; count them so the operator sees it.
            self.evicted += r[1][0] - r[0][1] - 1
            self.raise_floor(r[1][0])

    def raise_floor(self, floor):
        if floor <= self.floor:
            return
        self.floor = floor
        r = self.ranges
        while r and r[0][1] < floor:
            r.pop(0)
        if r and r[0][0] < floor:
            r[0][0] = floor

    def missing(self):
        """Seqs between floor and the highest committed that have not arrived."""
        if not self.ranges:
            return 0
        n = self.ranges[-1][1] - self.floor + 1
        for lo, hi in self.ranges:
            n -= hi - lo + 1
        return n

    def highest(self):
        return self.ranges[-1][1] if self.ranges else None

    def ack_ranges(self, re, max_ranges=16):
        """(lo, hi) ranges <= re, highest first, at most max_ranges."""
        out = []
        for i in range(len(self.ranges) - 1, -1, -1):
            lo, hi = self.ranges[i]
            if lo > re:
                continue
            out.append((lo, min(hi, re)))
            if len(out) == max_ranges:
                break
        return out


class Received:
    __slots__ = ("frame", "status")

    def __init__(self, frame, status):
        self.frame = frame
        self.status = status    # NEW or DUPLICATE


class GatewayLink:
    """Gateway end of the radio link for all nodes.

    receive(frame_bytes) -> Received, or raises FrameError (reason codes of
    protocol.frame, plus REASON_REPLAY). The caller stores NEW frames durably, THEN calls
    committed(frame) and sends ack(...) - never the other way round (invariant I1).
    DUPLICATE frames are not stored but are acked again (their first ack was lost)."""

    def __init__(self, signer_for_node, max_ranges=256):
        self.signer_for_node = signer_for_node
        self.max_ranges = max_ranges
        self.nodes = {}         # node -> SeqSet
        self._pending = {}      # node -> set of seqs received, not yet committed

    def state(self, node):
        s = self.nodes.get(node)
        if s is None:
            s = self.nodes[node] = SeqSet(max_ranges=self.max_ranges)
        return s

    def load(self, node, floor, ranges):
        self.nodes[node] = SeqSet(floor, ranges, self.max_ranges)

    def receive(self, data):
        f = fr.decode(data, self.signer_for_node, fr.UPLINK_TYPES)
        st = self.state(f.node)
        c = st.classify(f.seq)
        if c == REASON_REPLAY:
            raise fr.FrameError(REASON_REPLAY, "node %d seq %d below floor %d" % (f.node, f.seq, st.floor))
        pend = self._pending.get(f.node)
        if c == NEW and pend is not None and f.seq in pend:
            c = DUPLICATE
        if c == NEW:
            if pend is None:
                pend = self._pending[f.node] = set()
            pend.add(f.seq)
        return Received(f, c)

    def committed(self, f):
        """The frame's contents are durable: record its seq and raise the node's floor."""
        st = self.state(f.node)
        st.add(f.seq)
        st.raise_floor(f.seq - f.back)
        pend = self._pending.get(f.node)
        if pend is not None:
            pend.discard(f.seq)

    def abandoned(self, f):
        """Storing failed: forget the pending seq so a retransmission is taken as new."""
        pend = self._pending.get(f.node)
        if pend is not None:
            pend.discard(f.seq)

    def ack(self, node, re, gw_time, dl_seq, flags=0):
        ranges = self.state(node).ack_ranges(re)
        payload = messages.encode_ack(re, gw_time, ranges)
        return fr.encode(self.signer_for_node(node), fr.ACK, node, dl_seq, gw_time, payload, flags)

    def config(self, node, re, cfg, gw_time, dl_seq, flags=0):
        payload = messages.encode_config(re, cfg)
        return fr.encode(self.signer_for_node(node), fr.CONFIG, node, dl_seq, gw_time, payload, flags)
