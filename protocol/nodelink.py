"""Node end of the radio link, pure logic with injected time (SPEC.md, "Link behaviour").

  SeqAllocator  - sequence numbers that are never reused, with few flash writes
  NodeLink      - one frame in flight, ack wait, randomised back-off, link-down probing,
                  airtime budget, alarms ahead of everything

Nothing here reads a clock or touches I/O: callers pass `now` (seconds, monotonic) and
get decisions back. The gateway end is protocol/gwlink.py.
"""
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
        # sent() follows can_send() at the same `now`: adding 0.0 would change nothing
        # but take three floats (48 bytes of garbage on a 32-bit MicroPython)
        if self._tokens_at is not None and now != self._tokens_at:
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

    def defer(self, now, urgent=False):
        """Listen before talk heard the channel busy: try again after a random pause,
        short for an alarm (0.3 x urgent_base_s) and long for a routine frame (0.5 x
        retry_base_s), so alarms win the channel. (No new attribute names: each costs the
        node's heap a qstr, see tests/firmware/test_node_32bit.py.)"""
        d = (self.urgent_base_s * 0.3 if urgent else self.retry_base_s * 0.5) * (0.5 + self.rand())
        if urgent:
            self.next_urgent = now + d
        else:
            self.next_routine = now + d

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
