"""`python -m bench capacity`: one LoRa channel, N = 10, 30, 100 nodes, a county-wide
storm that puts every node into intensified sampling at the same moment, and a slope
failing under one node. Today's link behaviour (the baseline) and the storm link
(LBT, ACK guard, storm aggregation, alarm priority) run side by side on the same seeds.

What is real and what is modelled:
* real: the node's Sampler (firmware/sampler.py: intervals, report timing, payload
  packing), its NodeLink (protocol/nodelink.py: ack wait, back-off, link-down probes,
  1 % airtime token bucket, alarm pre-emption), frame and ACK encodings with MIC, COBS
  and CRC (their sizes set the airtime), the gateway's replay set and ACK ranges
  (protocol/gwlink.SeqSet), and the rig's radio medium (hil/medium.py: SX127x airtime,
  collisions at every receiver, half duplex, seeded random loss);
* modelled: the gateway commits a frame 50 ms after it arrived (group commit + fsync)
  and then sends its ACK; a node hears its ACK only while it listens (its ack timeout);
  a fraction of node pairs cannot hear each other (hidden terminals, default 10 %:
  a gateway on a ridge, nodes in side valleys), which only matters to LBT; no capture
  effect (an overlap destroys both packets: the pessimistic case).

The story (simulated time): 30 min calm, then the storm for `--storm-h` hours: every
node intensifies at once (sample every 10 s). 30 % of the nodes trip a rain rule
(orange) during the 20-min burst 1 h into the storm and clear 1 h later; the slope node
escalates blue -> yellow -> orange -> red. After the storm, `--drain-h` hours of
normal sampling let retries finish: what is still on the nodes then is "lost".

Figures per N and profile: delivery ratio of readings by the end of the storm and after
the drain, channel occupancy and the busiest node's airtime share (limit 1 %), alarm
latency from trip to gateway commit p50/p99/max and alarms lost, backlog (frames
waiting on the nodes) when the storm ends, longest single transmission (China
470-510 MHz: <= 1 s)."""
import argparse
import heapq
import json
import random
import time

from firmware.sampler import Sampler
from gateway.chanload import ChannelLoad
from hil.medium import COLLISION, GATEWAY, LOSS, OK, Medium
from protocol import frame as fr
from protocol import framing, gwmessages, messages
from protocol.gwlink import SeqSet
from protocol.mic import Hmac
from protocol.nodelink import NodeLink

KEY = bytes(range(1, 33))
CHANS = (0x08, 0x10, 0x18)          # rain.0, displacement.0, water_level.0
COMMIT_S = 0.05
CALM_S = 1800

# today's link: what the firmware does now
TODAY = {"name": "today", "lbt": False, "hint": False}
# the storm link (SPEC.md 6.5): listen before talk with the module's RSSI, with a guard
# after any frame heard for its ACK and alarms deferring for less than routine frames,
# and the gateway's F_CONGESTED hint in ACKs, on which intensified nodes aggregate
# their reports to 5 min
STORM = {"name": "storm-link", "lbt": True, "hint": True}
# the two halves alone, run at the largest N to show what each buys
LBT_ONLY = {"name": "lbt only", "lbt": True, "hint": False}
HINT_ONLY = {"name": "hint only", "lbt": False, "hint": True}


class SimNode:
    def __init__(self, sim, node, rng, profile):
        self.sim, self.node, self.rng = sim, node, rng
        self.boot = rng.uniform(0, 86400)          # monotonic base: grids are not aligned
        self.sampler = Sampler(CHANS, 300, 10, 1800)
        self.link = NodeLink(rng.random)
        self.profile = profile
        self.seq = 0
        self.records = []            # [seq, mtype, payload, n_readings, made_at, alarm ids]
        self.values = [0, 12000, 1500]
        self.listen_until = 0.0
        self.tx_end = 0.0
        self.alarm_times = []        # (t, level) to trip at
        self.wake_at = None

    def local(self, t):
        return int(t + self.boot)

    def next_seq(self):
        self.seq += 1
        return self.seq

    def step(self, t):
        sim = self.sim
        self.link.poll(t)
        lt = self.local(t)
        s = self.sampler
        s.set_intensified(t >= sim.storm_start and t < sim.storm_end, lt)
        while self.alarm_times and self.alarm_times[0][0] <= t:
            at, level, event = self.alarm_times.pop(0)
            seq = self.next_seq()
            aid = (self.node, seq)
            payload = messages.encode_alarms([{messages.A_EVENT: event, messages.A_LEVEL: level,
                                               messages.A_PREV: 0, messages.A_CHAN: 0x10,
                                               messages.A_RULE: 3, messages.A_KIND: 2,
                                               messages.A_VALUE: 1234, messages.A_THRESHOLD: 1000,
                                               messages.A_AGE: 0}])
            self.records.insert(self._alarm_pos(), [seq, fr.ALARM, payload, 0, at, aid])
            sim.alarms[aid] = [at, None]
        if s.report_due(lt):
            n = s.pending()
            payload = s.take(lt)
            self.records.append([self.next_seq(), fr.READINGS, bytes(payload), n, t, None])
            sim.readings_made += n
        for chan in s.due(lt):
            i = CHANS.index(chan)
            self.values[i] += self.rng.choice((-1, 0, 0, 1, 2)) if i else self.rng.choice((0, 0, 1, 2))
            s.add(chan, s.sample_time(chan, lt), self.values[i])
        self.transmit(t)
        return self.next_wake(t)

    def _alarm_pos(self):
        i = 0
        while i < len(self.records) and self.records[i][1] == fr.ALARM:
            i += 1
        return i

    def next_wake(self, t):
        cands = [self.sampler.next_due() - self.boot]
        d = self.link.deadline()
        if d is not None:
            cands.append(d)
        if self.alarm_times:
            cands.append(self.alarm_times[0][0])
        if self.records:
            urgent = self.records[0][1] == fr.ALARM
            if d is None or urgent:
                s = self.link.next_send_time(urgent)
                cands.append(s if s > t else t + 1.0)
        return max(t + 1e-3, min(cands))

    def transmit(self, t):
        if not self.records or t < self.tx_end:
            return
        rec = self.records[0]
        urgent = rec[1] == fr.ALARM
        link = self.link
        if urgent:
            if t < link.next_send_time(True):
                return
            if link.deadline() is not None and link.inflight[2]:
                return
        elif link.deadline() is not None or t < link.next_send_time(False):
            return
        wire = framing.wrap(fr.encode(self.sim.signer, rec[1], self.node, rec[0], int(t),
                                      rec[2], 0, rec[0] - min(r[0] for r in self.records)))
        air = self.sim.medium.airtime_of(len(wire))
        if not link.can_send(t, air, urgent):
            return
        if self.profile["lbt"] and self.sim.channel_busy(self.node, t, urgent):
            link.defer(t, urgent)
            self.sim.lbt_defers += 1
            return
        link.sent(t, rec[0], air, urgent)
        tx = self.sim.medium.transmit(self.node, t, wire)
        self.tx_end = tx.end
        self.listen_until = tx.end + link.ack_timeout_s
        self.sim.sent(tx, self, rec)

    def on_ack(self, t, re, ranges, flags):
        self.link.on_ack(t, re, int(t), ranges)
        self.sampler.congested = bool(flags & fr.F_CONGESTED)
        keep = []
        for r in self.records:
            if any(lo <= r[0] <= hi for lo, hi in ranges):
                continue
            keep.append(r)
        self.records = keep


class Sim:
    def __init__(self, n, profile, seed, storm_h, drain_h, hidden, loss, sf):
        self.rng = random.Random(seed)
        self.medium = Medium(sf=sf, loss=loss, seed=seed)
        self.signer = Hmac(KEY)
        self.load = ChannelLoad(self.medium.airtime_of)
        self.profile = profile
        self.storm_start = CALM_S
        self.storm_end = CALM_S + storm_h * 3600
        self.end = self.storm_end + drain_h * 3600
        self.nodes = {}
        for i in range(n):
            nid = 101 + i
            self.nodes[nid] = SimNode(self, nid, random.Random(seed * 1000 + i), profile)
        ids = list(self.nodes)
        self.deaf = set()
        for a in ids:
            for b in ids:
                if a < b and self.rng.random() < hidden:
                    self.deaf.add((a, b))
                    self.deaf.add((b, a))
        self.alarms = {}             # (node, seq) -> [trip time, commit time]
        self.readings_made = 0
        self.readings_in = 0
        self.readings_in_storm = 0
        self.readings_made_storm = None
        self.backlog_at_end = None
        self.lbt_defers = 0
        self.hinted = 0
        self.storm_air = None
        self.max_air = 0.0
        self.seqsets = {nid: SeqSet() for nid in ids}
        self.events = []
        self._schedule_alarms(ids)
        for nid in ids:
            self.push(self.rng.uniform(0, 10), "wake", nid)

    def _schedule_alarms(self, ids):
        slope = ids[0]
        s0 = self.storm_start
        self.nodes[slope].alarm_times = [(s0 + 1800, 1, 1), (s0 + 3600, 2, 2),
                                         (s0 + 4800, 3, 2), (s0 + 5400, 4, 2)]
        burst = s0 + 3600
        for nid in ids[1:]:
            if self.rng.random() < 0.3:
                at = burst + self.rng.uniform(0, 1200)
                self.nodes[nid].alarm_times = [(at, 3, 1), (at + 3600, 0, 3)]

    def push(self, t, kind, *args):
        heapq.heappush(self.events, (t, id(args), kind, args))

    def channel_busy(self, listener, t, urgent=False):
        """What the listener's module RSSI shows: a packet on the air that it can hear,
        or, for a routine frame, one that ended so recently that its ACK may be on its
        way (firmware/app.py keeps routine frames back 0.5 s after a frame it heard)."""
        guard = 0.0 if urgent else self.ack_guard_s
        for tx in self.medium.recent:
            if tx.start <= t < tx.end + (guard if tx.src != GATEWAY else 0.0):
                if tx.src == listener or (tx.src, listener) in self.deaf:
                    continue
                return True
        return False

    def sent(self, tx, node, rec):
        self.max_air = max(self.max_air, tx.end - tx.start)
        self.push(tx.arrive, "at_gw", tx, node.node, rec[0], rec[3], rec[5])

    def run(self):
        self.ack_guard_s = 0.5          # firmware/app.py: routine frames after a frame heard
        self.calm_air = None
        while self.events:
            t, _, kind, args = heapq.heappop(self.events)
            if t > self.end:
                break
            if self.calm_air is None and t >= self.storm_start:
                self.calm_air = sum(self.medium.airtime.values())
            if self.readings_made_storm is None and t >= self.storm_end:
                self.readings_made_storm = self.readings_made
                self.readings_in_storm = self.readings_in
                self.backlog_at_end = sum(len(n.records) for n in self.nodes.values())
                self.storm_air = sum(self.medium.airtime.values()) - self.calm_air
            if kind == "wake":
                node = self.nodes[args[0]]
                if node.wake_at is not None and node.wake_at != t:
                    continue
                w = node.step(t)
                node.wake_at = w
                self.push(w, "wake", node.node)
            elif kind == "at_gw":
                tx, nid, seq, n, aid = args
                heard = self.medium.outcome(tx, GATEWAY)
                if heard in (OK, COLLISION, LOSS):
                    self.load.heard(t, len(tx.data))     # energy on the channel
                if heard != OK:
                    continue
                ss = self.seqsets[nid]
                if seq not in ss:
                    ss.add(seq)
                    self.readings_in += n
                    if aid is not None:
                        self.alarms[aid][1] = t + COMMIT_S
                self.push(t + COMMIT_S, "ack", nid, seq)
            elif kind == "ack":
                nid, seq = args
                ranges = self.seqsets[nid].ack_ranges(seq)
                payload = gwmessages.encode_ack(seq, int(t), ranges)
                flags = fr.F_CONGESTED if self.profile["hint"] and self.load.congested(t) else 0
                self.hinted += 1 if flags else 0
                wire = framing.wrap(fr.encode(self.signer, fr.ACK, nid, 1, int(t), payload, flags))
                self.load.heard(t, len(wire))
                tx = self.medium.transmit(GATEWAY, t, wire)
                self.push(tx.arrive, "at_node", tx, nid, seq, ranges, flags)
            elif kind == "at_node":
                tx, nid, seq, ranges, flags = args
                node = self.nodes[nid]
                if t > node.listen_until or self.medium.outcome(tx, nid) != OK:
                    continue
                node.on_ack(t, seq, ranges, flags)
                w = node.next_wake(t)
                node.wake_at = w
                self.push(w, "wake", nid)
        return self.figures()

    def figures(self):
        dur = self.end
        lat = sorted(c - a for a, c in self.alarms.values() if c is not None)
        lost = sum(1 for a, c in self.alarms.values() if c is None)
        air = self.medium.airtime
        return {
            "delivery_storm": self.readings_in_storm / max(1, self.readings_made_storm),
            "delivery_final": self.readings_in / max(1, self.readings_made),
            "channel_use": self.storm_air / (self.storm_end - self.storm_start),
            "max_node_air": max(air.get(n, 0.0) for n in self.nodes) / dur,
            "hinted_acks": self.hinted,
            "alarms": len(self.alarms), "alarm_lost": lost,
            "lat": lat,
            "backlog_frames": self.backlog_at_end,
            "lbt_defers": self.lbt_defers,
            "collisions": self.medium.counts["collision"],
            "packets": self.medium.packets,
            "max_tx_s": self.max_air,
        }


def pct(xs, q):
    if not xs:
        return None
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def run_case(n, profile, seeds, args):
    agg = None
    for seed in seeds:
        f = Sim(n, profile, seed, args.storm_h, args.drain_h, args.hidden, args.loss, args.sf).run()
        if agg is None:
            agg = {k: ([] if k != "lat" else []) for k in f}
        for k, v in f.items():
            if k == "lat":
                agg[k].extend(v)
            else:
                agg[k].append(v)
    lat = sorted(agg.pop("lat"))
    out = {}
    for k, v in agg.items():
        if k in ("alarms", "alarm_lost", "lbt_defers", "collisions", "packets", "hinted_acks"):
            out[k] = sum(v)
        elif k in ("backlog_frames",):
            out[k] = max(v)
        elif k in ("max_node_air", "max_tx_s", "channel_use"):
            out[k] = max(v)
        else:
            out[k] = min(v)          # the worst seed
    out["alarm_p50_s"] = pct(lat, 0.5)
    out["alarm_p99_s"] = pct(lat, 0.99)
    out["alarm_max_s"] = lat[-1] if lat else None
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench capacity", description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", default="10,30,100", help="comma-separated node counts")
    ap.add_argument("--seeds", type=int, default=3, help="runs per case (figures: worst seed, latency over all)")
    ap.add_argument("--storm-h", type=float, default=3.0)
    ap.add_argument("--drain-h", type=float, default=2.0)
    ap.add_argument("--hidden", type=float, default=0.1, help="fraction of node pairs that cannot hear each other")
    ap.add_argument("--loss", type=float, default=0.02, help="random packet loss per receiver")
    ap.add_argument("--sf", type=int, default=9)
    args = ap.parse_args(argv)
    ns = [int(x) for x in args.nodes.split(",")]
    seeds = list(range(1, args.seeds + 1))
    rows = []
    t0 = time.monotonic()
    cases = [(n, p) for n in ns for p in (TODAY, STORM)]
    cases += [(max(ns), LBT_ONLY), (max(ns), HINT_ONLY)]
    for n, prof in cases:
        if True:
            r = run_case(n, prof, seeds, args)
            r["n"], r["profile"] = n, prof["name"]
            rows.append(r)
    hdr = ("N", "link", "deliv storm", "deliv final", "chan use storm", "max node air", "alarm p50 s",
           "alarm p99 s", "alarm max s", "alarms lost", "backlog frames", "longest tx s")
    print("bench capacity: SF%d/125 kHz, %.0f h storm + %.0f h drain, %d seed(s), %d%% hidden pairs, "
          "%.0f%% random loss" % (args.sf, args.storm_h, args.drain_h, len(seeds), args.hidden * 100,
                                  args.loss * 100))
    print(" | ".join(hdr))
    for r in rows:
        print(" | ".join((
            str(r["n"]), r["profile"], "%.1f%%" % (100 * r["delivery_storm"]),
            "%.2f%%" % (100 * r["delivery_final"]), "%.1f%%" % (100 * r["channel_use"]),
            "%.2f%%" % (100 * r["max_node_air"]), _s(r["alarm_p50_s"]), _s(r["alarm_p99_s"]),
            _s(r["alarm_max_s"]), "%d/%d" % (r["alarm_lost"], r["alarms"]), str(r["backlog_frames"]),
            "%.2f" % r["max_tx_s"])))
    by = {(r["n"], r["profile"]): r for r in rows}
    ratios = {}
    for n in ns:
        a, b = by[(n, "today")], by[(n, "storm-link")]
        if a["alarm_p99_s"] and b["alarm_p99_s"]:
            ratios[n] = round(a["alarm_p99_s"] / b["alarm_p99_s"], 2)
    print("alarm p99, today / storm-link: %s   (wall %.1f s)" % (
        ", ".join("N=%d x%s" % kv for kv in ratios.items()), time.monotonic() - t0))
    print(json.dumps({"bench": "capacity", "rows": rows, "p99_ratio": ratios}))
    return 0


def _s(v):
    return "-" if v is None else "%.1f" % v
