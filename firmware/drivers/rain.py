"""Tipping-bucket rain gauge on a reed switch, counted by a pin interrupt.

Why an interrupt and not a 50 ms polled switch: a tip closes the reed for only
~50-150 ms as the magnet swings past, so a 50 ms poll can miss closures when the main
loop is late (flash writes, radio), and polling keeps the CPU awake every 50 ms, which
rules out light sleep between sampling cycles, the node's main battery saving. The
edge interrupt catches every closure and wakes the MCU.

The handler allocates nothing (it may run as a hard IRQ): it reads ticks_ms, compares
with the time of the last counted edge held in a preallocated array and bumps a
counter kept below 2**30 so it stays a small int. Debounce is a lockout: after a
counted edge every edge for debounce_ms is ignored. That swallows both the closing
bounce and the release bounce of one tip (release comes ~100 ms later), so the default
250 ms must exceed the closure time; it is still 10x shorter than the tip interval of a
0.2 mm bucket at 300 mm/h (one tip per 2.4 s).

read() returns the rain since the previous read in 0.1 mm (channel kind rain). A reed
found closed at stuck_reads consecutive reads with no tip in between is a welded reed,
a shorted cable or a bucket jammed on the magnet: STUCK, with the count kept.

Sleep: light sleep keeps the counter, but on an ESP32 a GPIO edge during light sleep
only wakes the chip if the pin is armed as a wake source (halsetup.wake_on_pin, EXT0);
after such a wake call on_wake(). Deep sleep loses RAM: a deep-sleeping node must keep
its own count across the reset."""
import array

from firmware import faults

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

_MASK = const(0x3FFFFFFF)  # counter wraps below 2**30: never a heap-allocated int
_STALE_MS = const(1 << 28)  # 3.1 days: half of ticks_diff's reach
MM_PER_TIP_ALLOWED = (0.1, 0.2, 0.5, 1.0)


def tenths_per_tip(mm_per_tip):
    for allowed in MM_PER_TIP_ALLOWED:
        if abs(mm_per_tip - allowed) < 1e-6:
            return int(allowed * 10 + 0.5)
    raise ValueError("rain mm_per_tip %r not allowed: use one of %s (the bucket's label)"
                     % (mm_per_tip, ", ".join([str(a) for a in MM_PER_TIP_ALLOWED])))


class RainGauge:
    def __init__(self, pin, hal, mm_per_tip=0.2, debounce_ms=250, active=0, stuck_reads=2,
                 wake=None):
        """pin: input with pull-up (reed to ground: active=0). hal: ticks source."""
        self.tenths = tenths_per_tip(mm_per_tip)
        self._pin = pin
        self._active = active
        self._ticks_ms = hal.ticks_ms
        self._ticks_diff = hal.ticks_diff
        self._ticks_add = hal.ticks_add
        self._debounce = debounce_ms
        self._stuck_reads = stuck_reads
        self._closed_reads = 0
        self._tips = array.array("i", [0])
        # last counted edge; starts a full lockout in the past so the first edge counts
        self._last = array.array("i", [hal.ticks_add(hal.ticks_ms(), -debounce_ms - 1)])
        self._seen = 0
        self._on_edge_ref = self._on_edge  # bound once: creating it in the IRQ would allocate
        trigger = pin.IRQ_FALLING if active == 0 else pin.IRQ_RISING
        kw = {"trigger": trigger, "handler": self._on_edge_ref}
        if wake is not None:
            kw["wake"] = wake
        try:
            pin.irq(hard=True, **kw)
        except (TypeError, ValueError):  # ports without hard IRQs on pins run it soft
            pin.irq(**kw)

    def _on_edge(self, pin):
        now = self._ticks_ms()
        d = self._ticks_diff(now, self._last[0])
        # d < 0: the last tip is more than 2**29 ms (6.2 days) old and ticks wrapped;
        # read() keeps _last from ever getting that old, this is the second line
        if d > self._debounce or d < 0:
            self._last[0] = now
            self._tips[0] = (self._tips[0] + 1) & _MASK

    def on_wake(self):
        """Call after a sleep that the rain pin ended (halsetup.wake_reason() is "pin" or
        "ext0"). Whether an edge IRQ still fires for the edge that woke the chip
        depends on the port and sleep mode, so the wake counts as a tip unless the IRQ
        already counted one within the lockout: never zero, never two."""
        self._on_edge(self._pin)

    def tips(self):
        """Tips counted since boot (wraps at 2**30)."""
        return self._tips[0]

    def read(self):
        total = self._tips[0]
        new = (total - self._seen) & _MASK
        self._seen = total
        # After a dry spell of weeks, ticks_diff against the last tip would wrap and the
        # lockout would swallow real tips: pull a stale timestamp forward (still outside
        # the lockout). Racing an edge here could at worst drop one bounce's lockout.
        now = self._ticks_ms()
        if self._ticks_diff(now, self._last[0]) > _STALE_MS:
            self._last[0] = self._ticks_add(now, -self._debounce - 1)
        if self._stuck_reads and new == 0 and self._pin.value() == self._active:
            self._closed_reads += 1
            if self._closed_reads >= self._stuck_reads:
                return None, faults.STUCK
        else:
            self._closed_reads = 0
        return new * self.tenths, faults.OK

    def close(self):
        self._pin.irq(handler=None)
