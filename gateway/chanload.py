"""How busy the radio channel is, as the gateway hears it, for the F_CONGESTED hint in
its ACKs (SPEC.md 6.5). Pure logic: the caller passes times and packet sizes.

The gateway hears every node of its site (the nodes may not hear each other), so it is
the one place that can tell a storm-wide surge from one node's bad luck. Occupancy is
the airtime of everything heard (frames, garbage, its own ACKs) over a sliding window;
the hint turns on at `high` and off below `low`, so nodes do not flap between report
intervals."""
import collections


class ChannelLoad:
    def __init__(self, airtime_s, window_s=60.0, high=0.15, low=0.075):
        if not 0 < low <= high < 1:
            raise ValueError("need 0 < low <= high < 1, got low=%r high=%r" % (low, high))
        self.airtime_s = airtime_s          # bytes on the air -> seconds
        self.window_s = float(window_s)
        self.high, self.low = high, low
        self._heard = collections.deque()   # (time, airtime)
        self._sum = 0.0
        self.on = False

    def heard(self, now, nbytes):
        a = self.airtime_s(nbytes)
        self._heard.append((now, a))
        self._sum += a
        self._expire(now)

    def _expire(self, now):
        h = self._heard
        while h and h[0][0] < now - self.window_s:
            self._sum -= h.popleft()[1]

    def occupancy(self, now):
        self._expire(now)
        return max(0.0, self._sum) / self.window_s

    def congested(self, now):
        occ = self.occupancy(now)
        if self.on and occ < self.low:
            self.on = False
        elif not self.on and occ >= self.high:
            self.on = True
        return self.on


def ebyte_airtime(air_rate_bps):
    """A module's airtime for n bytes from its nominal air data rate (Ebyte does not
    publish its SF/BW mapping: NOTES-domain 4), plus ~40 ms of preamble and header."""
    return lambda n: 0.04 + 8.0 * n / air_rate_bps
