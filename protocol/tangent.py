"""The improved tangent-angle rule's state (TRIP.md 4.5, rule kind 5), apart from
protocol/tripstate.py so that only a node with a tangent rule loads its code:
trip.new_state() imports it on demand (imports go one way: this module uses
tripstate's RateState, never the reverse)."""
from protocol.tripstate import RateState


class TangentState(RateState):
    """Improved tangent angle (TRIP.md 4.5): tan(alpha) = v / v0, v the rate over the
    window, v0 the constant-velocity rate (configured, or learnt as the rate at the end
    of the first quiet_s seconds, never below |v0|). The metric is tan(alpha) * 1000,
    positive when moving in v0's direction: compared with the rule's tan_pm, no atan."""

    def __init__(self, rule):
        RateState.__init__(self, rule)
        self.v0 = rule.v0 if rule.quiet_s == 0 else 0   # 0 while still learning
        self.t0 = -1

    def take_history(self, old):
        RateState.take_history(self, old)
        if isinstance(old, TangentState) and old.v0 and old.rule.v0 == self.rule.v0:
            self.v0 = old.v0
            self.t0 = old.t0

    def feed(self, t, v):
        ring = self.ring
        ring.add(t, v)
        r = self.rate(ring)
        if self.t0 < 0:
            self.t0 = t
        v0 = self.v0
        if v0 == 0:
            if r is None or t - self.t0 < self.rule.quiet_s:
                self.metric = None
                return
            f = self.rule.v0
            # learnt: the rate in v0's direction, at least |v0| (a still slope's noise
            # must not become the reference that every wobble is compared with)
            v0 = r if (r > f if f > 0 else r < f) else f
            self.v0 = v0
        if r is None:
            self.metric = None
        else:
            self.metric = r * 1000 // v0

    def trips(self):
        return self.metric >= self.rule.tan_pm

    def clears(self):
        return self.metric * 5 < self.rule.tan_pm * 4

    def near(self):
        return self.metric * 2 >= self.rule.tan_pm
