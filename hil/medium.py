"""The simulated radio medium between the nodes' UART LoRa modules and the gateway's.

Pure logic, no I/O and no clock reads (time is the rig's simulated seconds): the rig
calls `transmit()` when a packet leaves a module and `outcome()` when it would arrive.

What it models:
* airtime of every packet from the LoRa parameters (protocol/airtime.py, Semtech
  AN1200.13): SF, bandwidth, coding rate;
* collisions: two transmissions that overlap in time destroy each other at every
  receiver (no capture effect: the pessimistic case);
* half duplex: a module that is transmitting hears nothing;
* random loss per packet and receiver (seeded, so a run can be replayed);
* propagation and processing delay (a constant);
* dead zones: windows of simulated time in which a node hears nothing and is heard by
  nobody (snow on the antenna, a landslide across the line of sight, a flat battery
  on a relay).

What it does not model: signal strength, capture, fading with distance, the module's
sub-packet splitting, listen-before-talk, frequency hopping. The gateway address is
GATEWAY; nodes are their node ids; anything else (an attacker) is a plain string."""
import random

from protocol.airtime import airtime_s

GATEWAY = "gw"

OK = "ok"
COLLISION = "collision"
LOSS = "loss"
DEAD_ZONE = "dead_zone"
HALF_DUPLEX = "half_duplex"
REASONS = (OK, COLLISION, LOSS, DEAD_ZONE, HALF_DUPLEX)


class Tx:
    __slots__ = ("src", "start", "end", "data", "arrive")

    def __init__(self, src, start, end, data, arrive):
        self.src, self.start, self.end, self.data, self.arrive = src, start, end, data, arrive

    def overlaps(self, other):
        return other is not self and other.start < self.end and self.start < other.end

    def __repr__(self):
        return "Tx(%r %.3f-%.3f %dB)" % (self.src, self.start, self.end, len(self.data))


class Medium:
    def __init__(self, sf=9, bw_hz=125000, cr=1, loss=0.0, delay_s=0.002, seed=0):
        airtime_s(10, sf, bw_hz, cr)          # ValueError now for bad LoRa parameters
        self.sf, self.bw_hz, self.cr = sf, bw_hz, cr
        self.loss = float(loss)
        if not 0.0 <= self.loss < 1.0:
            raise ValueError("loss %r: allowed 0 <= loss < 1" % (loss,))
        self.delay_s = float(delay_s)
        self.rng = random.Random(seed)
        self.dead = {}                 # node -> [(start, end), ...]
        self.recent = []               # transmissions that may still overlap a new one
        self.airtime = {}              # src -> seconds on air
        self.busy_until = {}           # src -> end of its last transmission
        self.counts = dict((r, 0) for r in REASONS)
        self.packets = 0

    def add_dead_zone(self, node, start, end):
        if end <= start:
            raise ValueError("dead zone of node %r: end %r must be after start %r"
                             % (node, end, start))
        self.dead.setdefault(node, []).append((float(start), float(end)))

    def in_dead_zone(self, node, t):
        for a, b in self.dead.get(node, ()):
            if a <= t < b:
                return True
        return False

    def airtime_of(self, n):
        return airtime_s(n, self.sf, self.bw_hz, self.cr)

    def transmit(self, src, t, data):
        """A packet handed to `src`'s module at simulated time t; returns its Tx
        (arrival at tx.arrive). A module sends one packet at a time: a packet handed
        over while it is still sending goes on the air when the previous one ends."""
        air = self.airtime_of(len(data))
        start = max(float(t), self.busy_until.get(src, 0.0))
        tx = Tx(src, start, start + air, bytes(data), start + air + self.delay_s)
        self.busy_until[src] = tx.end
        self.airtime[src] = self.airtime.get(src, 0.0) + air
        self.packets += 1
        # a transmission can only overlap ones that ended less than the longest airtime ago
        horizon = start - 10.0
        self.recent = [x for x in self.recent if x.end > horizon]
        self.recent.append(tx)
        return tx

    def outcome(self, tx, dst):
        """What `dst` gets of tx: OK or the reason it got nothing. Call it at tx.arrive
        (every transmission that could overlap has started by then)."""
        r = self._outcome(tx, dst)
        self.counts[r] += 1
        return r

    def _outcome(self, tx, dst):
        for node in (tx.src, dst):
            if node != GATEWAY and (self.in_dead_zone(node, tx.start)
                                    or self.in_dead_zone(node, tx.end)):
                return DEAD_ZONE
        for other in self.recent:
            if tx.overlaps(other):
                if other.src == dst:
                    return HALF_DUPLEX
                return COLLISION
        if self.loss and self.rng.random() < self.loss:
            return LOSS
        return OK


def split_packets(buf):
    """Cut a UART byte stream into the packets a module would put on the air: each
    frame is 0x00 | COBS | 0x00 (protocol/framing.py). `buf` is a bytearray; whole
    packets are removed from it and returned, a partial one stays."""
    out = []
    while True:
        start = 0
        while start < len(buf) and buf[start] == 0:
            start += 1
        if start >= len(buf):
            del buf[:]
            return out
        end = buf.find(b"\x00", start)
        if end < 0:
            if start:
                del buf[:start - 1]
            return out
        out.append(b"\x00" + bytes(buf[start:end]) + b"\x00")
        del buf[:end]
