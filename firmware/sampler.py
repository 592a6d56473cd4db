"""When to sample each channel and how samples are packed into READINGS payloads.

Scheduling runs on injected monotonic seconds (ints). Each channel is sampled on a
grid of its current interval: `sample_s` normally, `intensified_s` while the trip
engine says a rule is near or at trip, or while the gateway has put the node in
emergency mode (the app calls set_intensified). Grid times make runs regular, so a
run of N samples costs one age, one step and N small deltas on the air.

Samples wait in RAM until the report is due, then leave as one READINGS payload:

* a run (block) is one channel's samples `step` seconds apart, all values or all
  the same fault code; an interval change, a late sample (the loop was held up by
  more than `slack_s`), a fault starting or ending starts a new block;
* the report is due every `report_s` (every 6 intensified samples, at least 60 s,
  while intensified: fresh data matters most then; every 300 s while the gateway says
  the channel is congested, SPEC.md 6.5), or earlier when the payload
  would no longer fit one radio frame, or when a channel's buffer is full.

Memory is fixed at construction: one array('l') of `per_channel` values per
channel and at most `max_blocks` block descriptors; nothing grows with time.
"""
from array import array

from protocol import readings

# frame 192 B - header 12 - back uvarint 5 - MIC 8, minus slack for ages that grow by
# up to 4 bytes per block while a frame waits in the log for weeks
PAYLOAD_BUDGET = 160
_BLOCK_HEAD = 12     # chan 1 + head <=3 + age <=5 (any age up to 2**35 s) + step <=3


def _svarint_len(d):
    z = (d << 1) if d >= 0 else ((-d) << 1) - 1
    n = 1
    while z > 0x7F:
        z >>= 7
        n += 1
    return n


class _Chan:
    __slots__ = ("chan", "next", "vals", "n", "last_t", "last_v", "last_fault", "block")

    def __init__(self, chan, per_channel):
        self.chan = chan
        self.next = 0          # next due time
        self.vals = array("l", bytes(4 * per_channel))
        self.n = 0             # values used in vals
        self.last_t = None     # time of the last sample in the open block
        self.last_v = 0
        self.last_fault = 0
        self.block = None      # the open block descriptor, or None


class Sampler:
    def __init__(self, chans, sample_s=60, intensified_s=10, report_s=600, per_channel=64,
                 max_blocks=24, slack_s=1, budget=PAYLOAD_BUDGET):
        self.chans = []
        for c in chans:
            self.chans.append(_Chan(c, per_channel))
        self.per_channel = per_channel
        self.max_blocks = max_blocks
        self.slack_s = slack_s
        self.budget = budget
        self.intensified = False
        self.set_intervals(sample_s, intensified_s, report_s)
        # blocks in order of their first sample: [chan_state, t0, step, count, fault, start]
        self.blocks = []
        self.bytes = 0
        self.next_report = None
        self.samples = 0

    def set_intervals(self, sample_s, intensified_s, report_s):
        if not (1 <= intensified_s <= sample_s <= report_s):
            raise ValueError("intervals must satisfy 1 <= intensified_s (%r) <= sample_s (%r) <= report_s (%r)"
                             % (intensified_s, sample_s, report_s))
        self.sample_s = sample_s
        self.intensified_s = intensified_s
        self.report_s = report_s

    def interval(self):
        return self.intensified_s if self.intensified else self.sample_s

    # The gateway says the channel is congested (F_CONGESTED in ACKs, SPEC.md 6.5): while
    # intensified, report every 300 s in fuller frames instead of every minute
    congested = False

    def report_interval(self):
        if self.intensified:
            if self.congested:
                return min(self.report_s, 300)
            return min(self.report_s, max(60, 6 * self.intensified_s))
        return self.report_s

    def set_intensified(self, on, now):
        """Switch intervals; channels due later than the new grid allows move earlier."""
        on = bool(on)
        if on == self.intensified:
            return
        self.intensified = on
        step = self.interval()
        now = int(now)
        grid = (now // step + 1) * step
        for c in self.chans:
            if on and c.next > grid:
                c.next = grid
        if self.next_report is not None:
            r = self.report_interval()
            self.next_report = min(self.next_report, (now // r + 1) * r) if on else self.next_report

    # --- scheduling ---------------------------------------------------------------
    def due(self, now):
        """Channel ids due for a sample at `now` (a new list only when something is due)."""
        out = None
        for c in self.chans:
            if c.next <= now:
                if out is None:
                    out = []
                out.append(c.chan)
        return out or ()

    def next_due(self):
        t = None
        for c in self.chans:
            if t is None or c.next < t:
                t = c.next
        if self.next_report is not None and (t is None or self.next_report < t):
            t = self.next_report
        return t

    def _state(self, chan):
        for c in self.chans:
            if c.chan == chan:
                return c
        raise KeyError(chan)

    def sample_time(self, chan, now):
        """The time a sample taken now is stamped with: its grid slot if we are at most
        `slack_s` late (so runs stay regular), else now."""
        c = self._state(chan)
        now = int(now)
        return c.next if 0 <= now - c.next <= self.slack_s else now

    # --- buffering ----------------------------------------------------------------
    def add(self, chan, t, value, fault=0):
        """Record one sample taken at time t (value a scaled int, or None with a fault
        code). Schedules the channel's next sample."""
        c = self._state(chan)
        step = self.interval()
        c.next = (t // step + 1) * step
        if value is None and not fault:
            fault = 0xFF    # a missing value never travels as a number
        b = c.block
        extend = False
        if b is not None and c.last_t is not None:
            same_kind = (fault == c.last_fault) if fault else (c.last_fault == 0)
            if same_kind:
                gap = t - c.last_t
                if b[3] == 1:
                    extend = gap > 0
                else:
                    extend = gap == b[2]
            if extend and not fault and c.n >= self.per_channel:
                extend = False
        if extend:
            if b[3] == 1:
                b[2] = t - c.last_t     # the run's step is fixed by its second sample
            b[3] += 1
            if not fault:
                self.bytes += _svarint_len(value - c.last_v)
        else:
            if not fault and c.n >= self.per_channel:
                return False
            b = [c, t, 0, 1, fault, c.n]
            self.blocks.append(b)
            c.block = b
            self.bytes += _BLOCK_HEAD + (_svarint_len(value) if not fault else 2)
        if not fault:
            c.vals[c.n] = value
            c.n += 1
            c.last_v = value
        c.last_t = t
        c.last_fault = fault
        self.samples += 1
        if self.next_report is None:
            r = self.report_interval()
            self.next_report = (t // r + 1) * r
        return True

    def report_due(self, now):
        if not self.blocks:
            return False
        if now >= self.next_report:
            return True
        if self.bytes + _BLOCK_HEAD + 5 * len(self.chans) > self.budget:
            return True
        if len(self.blocks) + len(self.chans) > self.max_blocks:
            return True
        for c in self.chans:
            if c.n + 1 >= self.per_channel:
                return True
        return False

    def pending(self):
        return self.samples

    def take(self, t_ref):
        """The READINGS payload of everything buffered (a bytearray: the log copies it
        into its record, so a bytes copy would only be garbage), ages relative to t_ref
        (same time base as the sample times); empties the buffer. None if nothing is
        buffered."""
        if not self.blocks:
            return None
        out = bytearray()
        for b in self.blocks:
            c, t0, step, count, fault, start = b
            readings.put_block(out, c.chan, t_ref - t0, step, count, None if fault else c.vals, fault, start)
        self.clear()
        return out

    def clear(self):
        for c in self.chans:
            c.n = 0
            c.block = None
            c.last_t = None
            c.last_fault = 0
        self.blocks.clear()         # the list is kept (a new one at every report is garbage)
        self.bytes = 0
        self.samples = 0
        self.next_report = None
