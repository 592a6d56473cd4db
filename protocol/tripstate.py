"""Per-rule evaluation state for the trip engine (TRIP.md, "Evaluation").

One object per rule: it takes samples and keeps `metric`, the number the rule compares
with its threshold (the value, a rate per hour, a rolling sum, or predicted seconds to
failure), or None while the metric is unknown (not enough data yet). The engine in
trip.py owns latching, hold times and events; these classes only measure.

Windows are fixed arrays of time buckets allocated once, so a 24 h window costs the
same memory at 1 s as at 10 min sampling, and feeding a sample allocates nothing
except INVVEL's least-squares fit, which needs floats once per completed sub-window."""
from array import array

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

ABOVE = const(1)
BELOW = const(2)

VMAX = const(0x1FFFFFFF)       # |value| and |threshold| limit: sums stay small ints on a 32-bit MCU
NO_FAILURE = const(0x3FFFFFFF)  # INVVEL metric when no accelerating trend is seen

SUM_BUCKETS = const(60)    # a SUM window is cut into at most this many buckets
RATE_BUCKETS = const(16)   # a RATE window: 16 sub-windows of samples
# An INVVEL window: 12 sub-windows -> up to 12 velocity points. Fewer, longer
# sub-windows average more samples per point (relative noise of a velocity falls like
# width^-1.5) but leave fewer points to judge a fit: 12 gave the earliest warnings
# with no false alarm in simulated steady creep, spikes and rain steps; 10 did not.
INV_BUCKETS = const(12)
INV_MIN_POINTS = const(6)  # fewer velocity points than this: the forecast is unknown
BUCKET_CAP = const(1024)   # samples per bucket before its sums are halved (keeps sums small)
REL_MAX = const(0x7FFFF)   # |value - reference| above this restarts a sample ring
SUM_CLAMP = const(0xFFFFFF)  # per-bucket saturation of a rolling sum


def ceil_div(a, b):
    return -(-a // b)


def scaled(s, h, c):
    """s * h // c exactly (floored, so s >> 1 when h * 2 == c), with no product larger
    than |s| or c * h: a small int on a 32-bit MCU (c <= BUCKET_CAP)."""
    q = s // c
    return q * h + (s - q * c) * h // c


class SampleRing:
    """Samples of one channel in `nb + extra` time buckets of `bucket_s` seconds.

    Per bucket: count, sum of (t - bucket start) and sum of (value - ref). The centroid
    (mean time, mean value) of a bucket is an average of its samples, so noise shrinks
    with the sampling rate and irregular spacing is taken at its real times."""

    def __init__(self, nb, bucket_s, extra):
        size = nb + extra
        self.size = size
        self.bucket_s = bucket_s
        self.n = array("l", [0] * size)
        self.sdt = array("l", [0] * size)
        self.sv = array("l", [0] * size)
        self.cur = -1       # bucket index of the newest bucket, -1 while empty
        self.ref = 0        # values are stored relative to this (the first value seen)

    def reset(self, ref):
        n = self.n
        for i in range(self.size):
            n[i] = 0
        self.cur = -1
        self.ref = ref

    def advance(self, b):
        """Make bucket b the newest one, emptying the buckets that fall out."""
        cur = self.cur
        if cur < 0:
            self.cur = b
            return
        steps = b - cur
        if steps <= 0:
            return
        if steps > self.size:
            steps = self.size
        n = self.n
        size = self.size
        for i in range(1, steps + 1):
            n[(cur + i) % size] = 0
        self.cur = b

    def add(self, t, v):
        if self.cur < 0:
            self.ref = v
        rel = v - self.ref
        if rel > REL_MAX or rel < -REL_MAX:
            # A jump this large (metres of displacement) means a re-installed or broken
            # sensor: the old history says nothing about the new one.
            self.reset(v)
            rel = 0
        self.put(t // self.bucket_s, 1, t % self.bucket_s, rel)

    def put(self, b, count, sdt, srel):
        """Merge `count` samples into bucket b (used by add() and by history transfer)."""
        if self.cur >= 0 and b <= self.cur - self.size:
            return  # older than the whole ring: outside every window
        self.advance(b)
        i = b % self.size
        n = self.n
        if n[i] == 0:
            self.sdt[i] = 0
            self.sv[i] = 0
        while n[i] and n[i] + count > BUCKET_CAP:
            # Halve the count so the sums stay small ints, and scale the sums by the same
            # factor h / c (not >> 1: an odd count would move the bucket's mean by ~1/c of
            # itself, and a count of 1 halved to 0 would leave its sums behind).
            c = n[i]
            h = c >> 1
            n[i] = h
            self.sdt[i] = scaled(self.sdt[i], h, c)
            self.sv[i] = scaled(self.sv[i], h, c)
        n[i] += count
        self.sdt[i] += sdt
        self.sv[i] += srel

    def transfer_from(self, old):
        """Re-bucket another ring's history into this one (window or bucket size changed)."""
        self.reset(old.ref)
        if old.cur < 0:
            return
        bs = self.bucket_s
        for b in range(old.cur - old.size + 1, old.cur + 1):
            if b < 0:
                continue
            i = b % old.size
            cnt = old.n[i]
            if cnt == 0:
                continue
            tc = b * old.bucket_s + old.sdt[i] // cnt
            nb = tc // bs
            self.put(nb, cnt, cnt * (tc - nb * bs), old.sv[i])


class Despike:
    """Causal Hampel filter of one channel (TRIP.md 3.1): a sample further than 4.5
    median absolute deviations (3 sigma of Gaussian noise) from the median of itself and
    the 4 samples before it is replaced by that median. A lone spike or a pair never
    reaches a rate or a fit; a real step passes once it is the majority (3 samples).
    None: no reading the motion rules could trust yet (the first two samples, and two
    after the spacing widens)."""

    def __init__(self):
        # one array, not three: [0:5] the last values, [5:10] their times, [10:15] scratch
        # for the medians; made at the first put(), so channels without motion rules
        # (on False: rain sums, thresholds) carry none
        self.buf = None
        self.i = 0
        self.n = 0
        self.on = True      # the channel has motion rules (else only last is kept)
        self.last = None    # the last good value (filtered where on): what a clip repeats
        self.since = -1     # start of the channel's current fault run, -1 if none
        self.esc = None     # [level, until, cause state] while a broken wire escalates

    def put(self, t, v):
        buf = self.buf
        if buf is None:
            buf = self.buf = array("l", [0] * 15)
        buf[self.i] = v
        buf[5 + self.i] = t
        self.i = (self.i + 1) % 5
        n = self.n
        if n < 5:
            n += 1
            self.n = n
            if n < 3:
                return None   # too few to tell a spike: the first readings wait
        # The median of values is blind to time: after the spacing widens (the interval
        # switched back, the sensor was silent) a moving slope's next samples would look
        # like outliers, and a spike among them could not be told apart. So a sample
        # whose gap is more than twice that of 2 or more of the others waits (None):
        # 2 samples after a widening, then the window is judged on its new spacing.
        # (Where the spacing shrinks, the newest samples lie close together: judged.)
        i = self.i
        g = buf[5 + (i - 1) % 5] - buf[5 + (i - 2) % 5]
        narrow = 0
        for j in range(2, n):
            h = buf[5 + (i - j) % 5] - buf[5 + (i - j - 1) % 5]
            if g > 2 * h and h > 0:   # (many samples in one second: no spacing to judge)
                narrow += 1
        if narrow >= 2:
            return None
        for j in range(n):
            buf[10 + j] = buf[j]
        med = _median(buf, n)
        for j in range(n):
            d = buf[j] - med
            buf[10 + j] = d if d >= 0 else -d
        d = v - med
        if d < 0:
            d = -d
        # one count off is the quantisation of a still or slow sensor, never a spike
        if d > 1 and 2 * d > 9 * _median(buf, n):
            return med
        return v


def _median(a, n):
    """The median of a[10:10 + n] (Despike's scratch), sorted there in place."""
    for i in range(11, 10 + n):
        x = a[i]
        j = i - 1
        while j >= 10 and a[j] > x:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = x
    return a[10 + (n >> 1)]


class State:
    """Common part: the engine reads `metric` and calls trips()/clears()/near()."""

    def __init__(self, rule):
        self.rule = rule
        self.metric = None
        self.latched = False
        self.t_trip = 0
        self.clear_ok = False
        self.changed = 0   # +1 latched / -1 unlatched in the current engine call

    def take_history(self, old):
        pass


class ThresholdState(State):
    def __init__(self, rule):
        State.__init__(self, rule)
        self.since = -1   # time of the first sample of the current run beyond the threshold
        self.t = 0

    def feed(self, t, v):
        self.metric = v
        self.t = t
        if self.beyond(v):
            if self.since < 0:
                self.since = t
        else:
            self.since = -1

    def beyond(self, v):
        if self.rule.op == ABOVE:
            return v >= self.rule.threshold
        return v <= self.rule.threshold

    def trips(self):
        # persistence in time, not in samples: the rule means the same at any interval
        return self.since >= 0 and self.t - self.since >= self.rule.persist_s

    def clears(self):
        r = self.rule
        if r.op == ABOVE:
            return self.metric < r.threshold - r.hysteresis
        return self.metric > r.threshold + r.hysteresis

    def near(self):
        r = self.rule
        m = r.near_margin()
        if r.op == ABOVE:
            return self.metric >= r.threshold - m
        return self.metric <= r.threshold + m


class SumState(State):
    """Rolling sum over window_s with `nb` buckets plus the current one, so the sum
    covers at least window_s and at most one bucket more (two if window_s is not a
    multiple of bucket_s): it errs towards warning."""

    def __init__(self, rule):
        State.__init__(self, rule)
        bs = ceil_div(rule.window_s, SUM_BUCKETS)
        self.bucket_s = bs
        self.size = ceil_div(rule.window_s, bs) + 1
        self.buf = array("l", [0] * self.size)
        self.total = 0
        self.cur = -1

    def advance(self, b):
        cur = self.cur
        if cur < 0:
            self.cur = b
            return
        steps = b - cur
        if steps <= 0:
            return
        buf = self.buf
        size = self.size
        if steps >= size:
            for i in range(size):
                buf[i] = 0
            self.total = 0
        else:
            for i in range(1, steps + 1):
                j = (cur + i) % size
                self.total -= buf[j]
                buf[j] = 0
        self.cur = b

    def put(self, b, v):
        if self.cur >= 0 and b <= self.cur - self.size:
            return
        self.advance(b)
        i = b % self.size
        old = self.buf[i]
        new = old + v
        if new > SUM_CLAMP:
            new = SUM_CLAMP
        elif new < -SUM_CLAMP:
            new = -SUM_CLAMP
        self.buf[i] = new
        self.total += new - old

    def feed(self, t, v):
        self.put(t // self.bucket_s, v)
        self.metric = self.total

    def trips(self):
        return self.metric >= self.rule.threshold

    def clears(self):
        return self.metric < self.rule.threshold - self.rule.hysteresis

    def near(self):
        return self.metric * 5 >= self.rule.threshold * 4

    def take_history(self, old):
        if old.cur < 0:
            return
        for b in range(old.cur - old.size + 1, old.cur + 1):
            if b < 0:
                continue
            v = old.buf[b % old.size]
            if v:
                # An old bucket goes to the new bucket holding its start: conservative
                # by at most one old bucket width at the window's far edge.
                self.put(b * old.bucket_s // self.bucket_s, v)
        self.advance(((old.cur + 1) * old.bucket_s - 1) // self.bucket_s)
        self.metric = self.total


class RateState(State):
    """Rate of change per hour: the mean of the newer half of the window minus the mean
    of the older half, over the distance between their mean sample times. Every sample
    counts (noise averages out, a spike is diluted by the half's sample count) and
    irregular spacing is taken at its real times. Integer arithmetic only."""

    def __init__(self, rule):
        State.__init__(self, rule)
        self.ring = SampleRing(RATE_BUCKETS, ceil_div(rule.window_s, RATE_BUCKETS), 1)

    def take_history(self, old):
        ring = getattr(old, "ring", None)
        if ring is not None:
            self.ring.transfer_from(ring)

    def feed(self, t, v):
        ring = self.ring
        ring.add(t, v)
        self.metric = self.rate(ring)

    def rate(self, ring):
        size = ring.size
        bs = ring.bucket_s
        n = ring.n
        sdt = ring.sdt
        sv = ring.sv
        cur = ring.cur
        mid = cur - (size >> 1)    # buckets <= mid: older half; > mid: newer half
        n1 = 0
        x1 = 0
        v1 = 0
        n2 = 0
        x2 = 0
        v2 = 0
        for k in range(cur - size + 1, cur + 1):
            i = k % size
            c = n[i]
            if k < 0 or c == 0:
                continue
            x = c * (k - cur) * bs + sdt[i]   # sum of sample times relative to bucket cur
            if k <= mid:
                n1 += c
                x1 += x
                v1 += sv[i]
            else:
                n2 += c
                x2 += x
                v2 += sv[i]
        if n1 < 3 or n2 < 3:
            return None   # a half of 1 or 2 samples (after a gap) is one noisy reading
        den = x2 * n1 - x1 * n2          # (mean time 2 - mean time 1) * n1 * n2
        if den * 4 < self.rule.window_s * n1 * n2:
            return None  # the halves' mean times are too close for a trustworthy rate
        num = v2 * n1 - v1 * n2
        neg = num < 0
        if neg:
            num = -num
        # Integer division rounded to nearest: small ints only for ordinary windows.
        r = (num * 7200 + den) // (2 * den)
        if r > VMAX:
            r = VMAX
        return -r if neg else r

    def trips(self):
        thr = self.rule.threshold
        if thr > 0:
            return self.metric >= thr
        return self.metric <= thr

    def clears(self):
        thr = self.rule.threshold
        if thr > 0:
            return self.metric < thr - self.rule.hysteresis
        return self.metric > thr + self.rule.hysteresis

    def near(self):
        thr = self.rule.threshold
        if thr > 0:
            return self.metric * 5 >= thr * 4
        return self.metric * 5 <= thr * 4


UNKNOWN = const(0)
NO_TREND = const(1)
FORECAST = const(2)
_ONSET = const(3)
_ONSET_LEADS = const(4)


class InvVelState(State):
    """Inverse-velocity (Fukuzono) forecast of the time of failure.

    The window is cut into 12 sub-windows; the centroid of each gives a smoothed
    position, and consecutive centroids a mean velocity. 1/|v| is fitted against time
    by least squares once per completed sub-window; with a negative slope and
    R^2 >= min_r2 the line's zero is the forecast t_f. The metric is t_f - t, so it
    falls with time between fits."""

    def __init__(self, rule):
        State.__init__(self, rule)
        # +2: the current partial bucket, and one more so 12 velocity points fit.
        self.ring = SampleRing(INV_BUCKETS, ceil_div(rule.window_s, INV_BUCKETS), 2)
        self.mode = UNKNOWN
        self.t_f = 0
        self.r2_permille = 0

    def take_history(self, old):
        ring = getattr(old, "ring", None)
        if ring is not None:
            self.ring.transfer_from(ring)

    def feed(self, t, v):
        ring = self.ring
        done = ring.cur >= 0 and t // ring.bucket_s > ring.cur
        ring.add(t, v)
        if done:
            self.fit(ring.cur)
        self.metric = self.at(t)

    def at(self, t):
        if self.mode == UNKNOWN:
            return None
        if self.mode == NO_TREND or self.mode == _ONSET:
            return NO_FAILURE
        d = self.t_f - t
        if d < -VMAX:
            return -VMAX
        return d

    def fit(self, b, zero=0.0):
        """Fit over the completed buckets before bucket b. `zero` starts the sums:
        tests pass a float32-rounding number to check the ESP32's precision."""
        ring = self.ring
        size = ring.size
        bs = ring.bucket_s
        n = ring.n
        first = -1
        last = -1
        for k in range(b - size + 1, b):
            if k >= 0 and n[k % size]:
                if first < 0:
                    first = k
                last = k
        if first < 0 or first == last:
            self.mode = UNKNOWN
            return
        i0 = first % size
        i1 = last % size
        if (last - first) * bs + ring.sdt[i1] // n[i1] - ring.sdt[i0] // n[i0] < self.rule.window_s // 2:
            self.mode = UNKNOWN   # data covers too little of the window
            return
        # The direction of travel over the window: a sensor may count down as the
        # slope moves, so only the magnitude of the velocity matters.
        travel = ring.sv[i1] * n[i0] - ring.sv[i0] * n[i1]
        if travel == 0:
            self.mode = NO_TREND
            return
        d = 1 if travel > 0 else -1
        # Velocity points from centroids two sub-windows apart (a short moving average
        # of the velocity, Carla et al. 2017: half the noise of neighbours' differences),
        # summed on the fly (no arrays of floats kept). x: seconds from the window's
        # middle, an int (centroid times are rounded to the second; sub-windows are
        # >= 60 s). The fit is of y = 1/|v| with weight w = v^2 h (1/v from a noisy v
        # errs like 1/v^2: the slow, noisy start of a window must not drown the trend
        # near its end; h, below, for the samples behind the point). With u = |v| = 1/y
        # the weighted sums are sums of h u^2, h u^2 x, h u^2 x^2 (w, wx, wxx), h u
        # (= w y), h u x (= w x y) and sum h (= w y y, an int): twelve float results per
        # point, each a 16-byte heap object on a 32-bit MicroPython, garbage until the
        # next collection. test_trip_props.py checks every fit against the first
        # form's sums (y, 1/y^2, w*y) for its mode, forecast and R^2 per mille.
        mid = (size * bs) >> 1
        sw = zero    # sum h u^2
        sx = zero    # sum h u^2 x
        sxx = zero   # sum h u^2 x^2
        sy = zero    # sum h u
        sxy = zero   # sum h u x
        sh = 0       # sum h = sum w y^2
        m = 0        # points kept
        md = 0       # of them, points from 2 or more samples in each sub-window
        pairs = 0
        tp = 0       # the previous centroid (time, value sum, count)
        vp = 0
        cp = 1
        tq = 0       # and the one before it: a velocity spans two sub-windows
        vq = 0
        cq = 1
        seen = 0
        ul = 0
        for k in range(first, last + 1):
            i = k % size
            c = n[i]
            if c == 0:
                continue
            tc = (k - b) * bs + (2 * ring.sdt[i] + c) // (2 * c)
            vc = ring.sv[i]
            seen += 1
            if seen > 2:
                pairs += 1
                num = (vc * cq - vq * c) * d          # displacement * c * cq
                x = ((tc + tq) >> 1) + mid
                ul = 0       # the newest velocity (0 if its pair is dropped)
                # tc == tq: put() keeps each centroid inside its bucket, but a zero time
                # difference would divide by zero on the alarm path; no velocity.
                if num > 0 and tc != tq:
                    u = num / ((tc - tq) * c * cq)     # |v|, units per second
                    # h: the harmonic mean of the two sub-windows' counts, as a velocity
                    # from sparse samples (before intensified sampling) is that much
                    # noisier: its weight is u^2 h (an int: no float made for it)
                    h = 2 * c * cq // (c + cq)
                    ux = u * x
                    hu = h * u
                    hux = h * ux
                    sw += hu * u
                    sx += hu * ux
                    sxx += hux * ux
                    sy += hu
                    sxy += hux
                    sh += h
                    m += 1
                    ul = u
                    if h > 1:
                        md += 1
            tq = tp
            vq = vp
            cq = cp
            tp = tc
            vp = vc
            cp = c
        if pairs < INV_MIN_POINTS:
            self.mode = UNKNOWN
            return
        if (pairs - m) * 4 > pairs:
            # Standing still or moving back and forth in more than a quarter of the
            # sub-windows: noise around a steady position, not sustained acceleration.
            # (One backwards step, e.g. from a single spike, is tolerated.)
            self.mode = NO_TREND
            return
        # y = ybar + slope * (x - xbar). x was centred on the window's middle before
        # summing, so the corrections below stay small against the sums and float32 (the
        # ESP32's float) keeps ~6 significant digits of the slope.
        xbar = sx / sw
        ybar = sy / sw
        cxx = sxx - sx * xbar
        cxy = sxy - sx * ybar
        cyy = sh - sy * ybar
        if cxx <= 0.0 or cyy <= 0.0:
            self.r2_permille = 0
            self.mode = NO_TREND       # x or y does not vary
            return
        slope = cxy / cxx
        # R^2 = slope * cxy / cyy >= 0 (slope and cxy share a sign), so int() floors it
        # and "R^2 * 1000 < min_r2" is the same test on the int (min_r2 is an int).
        r2 = int(slope * (cxy / cyy) * 1000.0)
        self.r2_permille = r2
        lead = self.rule.lead_s
        if slope >= 0.0 or 2 * r2 < self.rule.min_r2:
            self.mode = NO_TREND
            return
        ahead = xbar - ybar / slope - mid    # seconds after bucket b's start
        if ahead > 1e7 or (r2 < self.rule.min_r2 and ahead > _ONSET_LEADS * lead):
            # beyond ~4 months, or a weak trend that points far ahead: nothing to watch
            self.mode = NO_TREND
            return
        if ahead < -1e7:
            ahead = -1e7
        self.t_f = b * bs + int(ahead)
        # A forecast is believed only while the slope moves at v_min or more (the newest
        # velocity point): smooth acceleration at a fraction of a mm/h (a wire breathing
        # with the day, the start of a rain step) also has a 1/v line falling to zero.
        # Nor while half the points or more come from sub-windows of one sample (h 1: at
        # 600 s sampling a 2-h window's twelve noisy readings line up by chance now and
        # then, and right after sampling intensifies a point or two of heavy weight
        # would make any line fit). Below v_min, on single samples or with R^2 of at
        # least half min_r2, the trend only intensifies sampling (near), and the
        # intensified samples decide.
        weak = r2 < self.rule.min_r2 or ul * 3600 < self.rule.v_min or 2 * md <= m
        self.mode = _ONSET if weak else FORECAST

    def trips(self):
        return self.metric < self.rule.lead_s

    def clears(self):
        return self.metric >= 2 * self.rule.lead_s

    def near(self):
        return self.metric < 2 * self.rule.lead_s or self.mode == _ONSET
