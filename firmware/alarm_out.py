"""Local warning outputs: the siren and strobe relays, a pattern per warning level.

The node's siren must work with no radio and no gateway: the app sets the level the
trip engine has latched (protocol/trip.py latches a trip until its clear condition
holds past the rule's hold time), and this module turns it into relay on/off times.
The output stays at that level until the engine clears it, so a sensor that drops
out during a red alarm does not silence the siren (a fault never clears a rule).

Patterns are (on_ms, period_ms) per output, phase-locked to the moment the level was
set, so the state at any time is a pure function of (level, set_at, now): the main
loop calls update(now_ms) and sleeps until next_change(). None means off, on_ms ==
period_ms means steady on.

    level   siren               strobe
    blue    off                 0.2 s flash every 10 s   (attention)
    yellow  off                 0.2 s flash every 2 s    (caution)
    orange  2 s on / 2 s off    0.2 s flash every 1 s    (warning: prepare to leave)
    red     steady              0.2 s flash every 0.5 s  (danger: leave now)
"""
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

# protocol/levels.py's numbers as private consts: compiled in, so this module does not
# keep protocol.levels in a node's heap. tests/firmware/test_app_alarm.py checks they agree.
_NORMAL = const(0)
_BLUE = const(1)
_YELLOW = const(2)
_ORANGE = const(3)
_RED = const(4)

PATTERNS = {
    _NORMAL: (None, None),
    _BLUE: (None, (200, 10000)),
    _YELLOW: (None, (200, 2000)),
    _ORANGE: ((2000, 4000), (200, 1000)),
    _RED: ((1000, 1000), (200, 500)),
}


def _is_on(pattern, elapsed_ms):
    if pattern is None:
        return False
    on, period = pattern
    return on >= period or (elapsed_ms % period) < on


def _next_edge(pattern, elapsed_ms):
    """ms from now to the pattern's next on/off change, or None if it never changes."""
    if pattern is None:
        return None
    on, period = pattern
    if on >= period:
        return None
    ph = elapsed_ms % period
    return (on - ph) if ph < on else (period - ph)


def _drive(out, on):
    if out is not None:
        if on:
            out.on()
        else:
            out.off()


class AlarmOut:
    def __init__(self, siren=None, strobe=None, patterns=PATTERNS):
        """siren, strobe: firmware.hal.Output objects (either may be None: the board
        has no such relay)."""
        self.siren = siren
        self.strobe = strobe
        self.patterns = patterns
        self.level = _NORMAL
        self.set_at = 0
        self.changes = 0
        self._apply(0)

    def set_level(self, level, now_ms):
        if level == self.level:
            return False
        self.level = level
        self.set_at = now_ms
        self.changes += 1
        self._apply(now_ms)
        return True

    def state(self, now_ms):
        """(siren on, strobe on) at now_ms."""
        p = self.patterns.get(self.level, self.patterns[_RED])
        el = now_ms - self.set_at
        return _is_on(p[0], el), _is_on(p[1], el)

    def update(self, now_ms):
        self._apply(now_ms)

    def _apply(self, now_ms):
        # runs at every node step: no tuple of (output, state) pairs to loop over (48
        # bytes of garbage a step on a 32-bit MicroPython)
        siren, strobe = self.state(now_ms)
        _drive(self.siren, siren)
        _drive(self.strobe, strobe)

    def next_change(self, now_ms):
        """Absolute ms of the next relay change, or None."""
        p = self.patterns.get(self.level, self.patterns[_RED])
        el = now_ms - self.set_at
        best = None
        for pat in p:
            d = _next_edge(pat, el)
            if d is not None and (best is None or d < best):
                best = d
        return None if best is None else now_ms + best
