"""Gateway end of the radio link, pure logic (SPEC.md, "Replay rule" and "Acks").

  SeqSet       - which seqs of one node are committed, above a floor (the replay rule)
  GatewayLink  - MIC check, replay/duplicate classification, ACK and CONFIG frames

No I/O and no clock: the caller passes times in and persists SeqSet state itself.
"""
from protocol import frame as fr
from protocol import gwmessages

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
        payload = gwmessages.encode_ack(re, gw_time, ranges)
        return fr.encode(self.signer_for_node(node), fr.ACK, node, dl_seq, gw_time, payload, flags)

    def config(self, node, re, cfg, gw_time, dl_seq, flags=0):
        payload = gwmessages.encode_config(re, cfg)
        return fr.encode(self.signer_for_node(node), fr.CONFIG, node, dl_seq, gw_time, payload, flags)
