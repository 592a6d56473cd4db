"""The node's time base: monotonic seconds since boot, plus an offset to Unix time once
a fresh gateway ACK has told us the time.

Scheduling always runs on monotonic seconds (`mono`, injected by the main loop), so a
clock step never makes the sampler skip or repeat work. Unix time is only used to
stamp: the header `time` of a frame is Unix seconds with F_CLOCK_SYNCED once synced,
else seconds since boot. The gateway never trusts either for reading times: readings
carry ages relative to the frame's send time (protocol/readings.py).

Logged records keep a reference time `t_ref` in the base that was current when they
were written (see firmware/framelog.py):

* synced records: t_ref is Unix time, exact for as long as we have a clock;
* unsynced records of this boot: t_ref is seconds since this boot, exact too;
* unsynced records of an earlier boot: the node cannot know how long it was off. It
  assumes the earlier boot ended when its newest record was written and this boot
  began at once (a lower bound on every age), and marks such frames F_TIME_APPROX
  so the gateway flags the stamps as approximate.

After a reboot, Unix-stamped records wait until a fresh ACK resyncs the clock; the
first frame out (HELLO) brings that ACK, so on a working link the wait is one round
trip and on a dead link nothing could be sent anyway.
"""

# how a record's t_ref is to be read
BASE_UNIX = 1      # Unix seconds
BASE_BOOT = 2      # seconds since boot number `boot`
SYNC_TOLERANCE_S = 2


class NodeClock:
    def __init__(self, boot):
        self.boot = boot           # boot counter, persisted by the frame log
        self.offset = None         # unix - mono, once synced
        self.synced_at = None      # mono time of the last sync
        self.boot_ends = {}        # earlier boot -> newest t_ref seen in its records
        # Clock corrections of this boot: (Unix time of the change in the old base, step).
        # A record stamped before a correction holds a t_ref in the old base; without this
        # its age would be off by the step when it is finally sent.
        self.corrections = []

    def synced(self):
        return self.offset is not None

    def sync(self, mono, gw_time):
        """Take the gateway's Unix time from a fresh ACK (AckResult.fresh only).

        Both clocks tick in whole seconds and the ack is a moment old, so two syncs
        differ by a second now and then; following that jitter would shift the ages of
        Unix-stamped records waiting in the log. The offset only moves when it is off
        by more than `SYNC_TOLERANCE_S` (real drift, or a gateway clock step)."""
        new = gw_time - int(mono)
        if self.offset is None or abs(new - self.offset) > SYNC_TOLERANCE_S:
            if self.offset is not None:
                self.corrections.append((int(mono) + self.offset, new - self.offset))
                if len(self.corrections) > 16:
                    self.corrections.pop(0)   # older steps only matter to records long gone
            self.offset = new
        self.synced_at = mono

    def unix(self, mono):
        return None if self.offset is None else int(mono) + self.offset

    def header_time(self, mono):
        """(time, flags) for a frame header sent at `mono`: flags F_CLOCK_SYNCED (1, as
        protocol.frame has it; importing it here took 16 bytes of heap per frame) once
        synced, else 0."""
        if self.offset is None:
            return int(mono), 0
        return int(mono) + self.offset, 1

    def stamp(self, mono):
        """(base, boot, t_ref) for a record written now."""
        if self.offset is None:
            return BASE_BOOT, self.boot, int(mono)
        return BASE_UNIX, self.boot, int(mono) + self.offset

    def saw_record(self, base, boot, t_ref):
        """Called for each record found on flash at open, to learn when old boots ended."""
        if base == BASE_BOOT and boot != self.boot:
            if t_ref > self.boot_ends.get(boot, -1):
                self.boot_ends[boot] = t_ref

    def elapsed(self, base, boot, t_ref, mono):
        """Seconds from a record's t_ref to `mono`: (seconds, approx), or None when it
        cannot be known yet (a Unix-stamped record while the clock is not synced)."""
        mono = int(mono)
        if base == BASE_UNIX:
            if self.offset is None:
                return None
            if boot == self.boot:
                for at, step in self.corrections:
                    if t_ref < at:
                        t_ref += step     # stamped before this correction: move to the new base
            return max(0, mono + self.offset - t_ref), False
        if boot == self.boot:
            return max(0, mono - t_ref), False
        end = self.boot_ends.get(boot, t_ref)
        return mono + max(0, end - t_ref), True
