"""What a run proved: readings and alarms the nodes produced, matched against what the
subscriber decoded, and the scenario's expectations checked.

Matching is by content, not by the gateway's word: a node reports every sample it took
("R" lines) and when samples left its RAM for its flash log ("P"); the subscriber's
readings are matched to them by (node, channel, time, value). Times must agree within
TIME_TOL_S unless the gateway flagged them approximate (a node that lost its clock
base in a power cut); those match by value within the node's possible off time."""
import json

from hil import world as W

TIME_TOL_S = 2
APPROX_TOL_S = 6 * 3600


class Result:
    def __init__(self, name):
        self.name = name
        self.figures = {}
        self.checks = []          # (name, ok, detail)
        self.lines = []

    @property
    def passed(self):
        return all(ok for _, ok, _ in self.checks)

    def check(self, name, ok, detail=""):
        self.checks.append((name, bool(ok), detail))

    def text(self):
        out = list(self.lines)
        out.append("checks:")
        for name, ok, detail in self.checks:
            out.append("  [%s] %s%s" % ("PASS" if ok else "FAIL", name,
                                        (": " + detail) if detail else ""))
        out.append("result: %s" % ("PASSED" if self.passed else "FAILED"))
        return "\n".join(out)

    def json_line(self):
        d = {"scenario": self.name}
        d.update(self.figures)
        d["passed"] = self.passed
        d["failed_checks"] = [n for n, ok, _ in self.checks if not ok]
        return json.dumps(d, sort_keys=False)


def _match_readings(rig, res):
    sub = rig.sub
    gauges = {spec.node for spec, _g in rig.gauges}
    index = {}
    by_chan = {}
    for s in rig.sent:
        index.setdefault((s.node, s.chan, s.t), []).append(s)
        by_chan.setdefault((s.node, s.chan), []).append(s)
    unknown, time_err, approx = [], 0, 0
    for r in sub.readings.values():
        if r.node in gauges:
            continue                 # checked against what the gauge served (_gauges)
        hit = None
        for dt in (0, -1, 1, -2, 2):
            for s in index.get((r.node, r.chan, r.t + dt), ()):
                if not s.matched and s.value == r.value and s.fault == r.fault:
                    hit = s
                    break
            if hit:
                time_err = max(time_err, abs(dt))
                break
        if hit is None and r.flags & 1:
            best = None
            for s in by_chan.get((r.node, r.chan), ()):
                if not s.matched and s.value == r.value and s.fault == r.fault \
                        and abs(s.t - r.t) <= APPROX_TOL_S:
                    if best is None or abs(s.t - r.t) < abs(best.t - r.t):
                        best = s
            hit = best
            if hit is not None:
                approx += 1
        if hit is None:
            unknown.append(r)
        else:
            hit.matched = True
    return unknown, time_err, approx


def _order_errors(sub):
    errs = 0
    runs = {}
    for r in sub.readings.values():
        if not r.flags & 1:
            runs.setdefault((r.node, r.chan), []).append((r.seq, r.idx, r.t))
    for lst in runs.values():
        lst.sort()
        for a, b in zip(lst, lst[1:]):
            if b[2] < a[2]:
                errs += 1
    return errs


def _match_alarms(rig):
    subs = sorted(rig.sub.alarms.values(), key=lambda a: (a[3], a[4], a.get(15, 0)))
    used = set()
    for na in rig.node_alarms:
        for i, a in enumerate(subs):
            if i in used:
                continue
            if (a[3], a[8], a[5], a[6], a[7]) == (na.node, na.chan, na.event, na.level, na.prev) \
                    and abs(a[13] - na.t) <= max(TIME_TOL_S, 0):
                used.add(i)
                na.matched = a
                break
    unknown = [a for i, a in enumerate(subs) if i not in used]
    return unknown


def evaluate(rig):
    sc, sub = rig.sc, rig.sub
    sub.check_schema()
    res = Result(sc.name)
    ex = sc.expect
    unknown, time_err, approx = _match_readings(rig, res)
    packed = [s for s in rig.sent if s.packed]
    pending = sum(1 for s in rig.sent if not s.packed and id(s) not in rig.allowed_loss)
    lost_ram = sum(1 for s in rig.sent if id(s) in rig.allowed_loss and not s.matched)
    # packed into a log record in RAM, cut before the record reached flash: as allowed as
    # an unpacked sample, and the one term that keeps sent = delivered + lost + this
    lost_packed_ram = sum(1 for s in packed if id(s) in rig.allowed_loss and not s.matched)
    lost = sum(1 for s in packed if not s.matched and id(s) not in rig.allowed_loss)
    delivered = sum(1 for s in rig.sent if s.matched)
    alarms_unknown = _match_alarms(rig)
    missing_alarms = [a for a in rig.node_alarms if a.matched is None]
    lat_wall = [(a.matched["wall"] - a.wall) * 1000 for a in rig.node_alarms if a.matched]
    lat_sim = [a.matched[14] / 1000.0 - a.matched[13] for a in rig.node_alarms if a.matched]
    reds = [a for a in sub.alarms.values() if a[6] == 4 and a[5] in (1, 2)]
    t_end = rig.clock.t
    days = max(t_end, 1.0) / 86400.0
    air = [rig.medium.airtime.get(n.id, 0.0) for n in sc.nodes]
    red_lead = None
    if sc.failure_s is not None and reds:
        first = min(a[13] for a in reds)
        red_lead = rig.epoch + sc.failure_s - first
    false_reds = len(reds) if not ex.get("red", False) else 0
    if ex.get("red", False) and sc.failure_s is not None:
        false_reds = sum(1 for a in reds if a[13] > rig.epoch + sc.failure_s)
    bseqs = sorted(sub.batches)
    gaps = (bseqs[-1] - len(bseqs)) if bseqs else 0
    levels = {}
    for a in sub.alarms.values():
        levels[a[3]] = max(levels.get(a[3], 0), a[6])
    f = res.figures
    f.update({
        "seed": rig.seed, "runtime": rig.runtime, "sim_s": round(t_end),
        "sent": len(packed), "stored": rig.stats["stored"], "delivered": delivered, "lost": lost,
        "lost_in_ram_at_power_cut": lost_ram, "packed_lost_in_ram_at_power_cut": lost_packed_ram,
        "pending_in_ram_at_end": pending,
        "duplicated": sub.duplicates, "conflicts": len(sub.conflicts),
        "duplicated_across_batches": sub.duplicates_across_batches,
        "batches_resent": sum(n - 1 for n in sub.batches.values()),
        "unknown_readings": len(unknown), "approx_time_readings": approx,
        "time_error_s_max": time_err, "order_errors": _order_errors(sub),
        "alarms": len(rig.node_alarms), "alarms_delivered": len(rig.node_alarms) -
        len(missing_alarms), "alarms_unknown": len(alarms_unknown),
        "alarm_duplicates": sub.alarm_duplicates,
        "alarm_latency_wall_ms_max": round(max(lat_wall), 1) if lat_wall else None,
        "alarm_latency_sim_s_max": round(max(lat_sim), 3) if lat_sim else None,
        "red_lead_time_s": None if red_lead is None else int(red_lead),
        "false_reds": false_reds, "max_level": {str(k): v for k, v in sorted(levels.items())},
        # per node: (readings the subscriber got, alarms it got), e.g. for a board among
        # simulated nodes (hil/pico_board.py)
        "delivered_by_node": {str(n.id): [sum(1 for s in rig.sent if s.node == n.id and s.matched),
                                          sum(1 for a in rig.node_alarms
                                              if a.node == n.id and a.matched)]
                              for n in sc.nodes},
        "airtime_s_per_node_day": round(sum(air) / len(air) / days, 2),
        "batches": len(bseqs), "batch_seq_gaps": gaps,
        "gateway_counters": {str(k): v for k, v in sorted(sub.counters.items())},
        "schema_errors": len(sub.errors),
    })
    ans = sorted(rig.answer_ms)
    if ans:
        f["gw_ack_wall_ms_p50"] = round(ans[len(ans) // 2], 1)
        f["gw_ack_wall_ms_p99"] = round(ans[min(len(ans) - 1, int(len(ans) * 0.99))], 1)
    heaps = [n.live_heap for n in rig.nodes if n.live_heap is not None]
    f["node_live_heap_max_bytes"] = max(heaps) if heaps else None
    f["node_heap_limit"] = rig.heap if rig.runtime == "micropython" else None
    f.update(rig.stats)
    f["medium"] = dict(rig.medium.counts)
    if getattr(rig, "hub_result", None) is not None:     # `--hub N`: hil/hubcheck.py
        h = f["hub"] = rig.hub_result
        res.check("hub stored every reading once", h["missing"] == 0 and h["extra"] == 0 and
                  h["content_differs"] == 0 and h["readings"] == h["expected"] > 0, str(h))
    # ---- the checks every scenario makes
    res.check("readings flowed", len(packed) > 0 and delivered > 0,
              "%d packed, %d delivered" % (len(packed), delivered))
    res.check("nothing lost", lost <= ex.get("allowed_lost", 0),
              "%d of %d packed readings never reached the subscriber" % (lost, len(packed)))
    res.check("uplink decodes per SPEC", not sub.errors, "; ".join(sub.errors[:3]))
    res.check("duplicates carry their dedup key", not sub.conflicts and not unknown,
              "%d conflicts, %d readings matching no sample (first: %r)" % (
                  len(sub.conflicts), len(unknown),
                  unknown[0].content() if unknown else None))
    res.check("reading times right", time_err <= TIME_TOL_S, "max error %d s" % time_err)
    res.check("order per node follows seq", f["order_errors"] == 0,
              "%d inversions" % f["order_errors"])
    res.check("every alarm delivered", not missing_alarms,
              "%d of %d missing" % (len(missing_alarms), len(rig.node_alarms)))
    res.check("after a trip the node's next frame on the air is the ALARM (I3)",
              rig.stats["alarm_not_first_on_air"] == 0,
              "%d of %d trips sent something else first" % (
                  rig.stats["alarm_not_first_on_air"],
                  rig.stats["alarm_not_first_on_air"] + rig.stats["alarm_first_on_air"]))
    res.check("no alarm nobody raised", not alarms_unknown,
              "%d unknown alarms" % len(alarms_unknown))
    res.check("batch seqs without gaps", gaps == 0, "%d missing" % gaps)
    res.check("the gateway never exited by itself", rig.stats["gw_crashes"] == 0,
              "%d exits" % rig.stats["gw_crashes"])
    res.check("no node crashed or ran without its config",
              rig.stats["node_crashes"] == 0 and rig.stats["node_config_errors"] == 0,
              "; ".join(rig.notes[:2]))
    # ---- the scenario's own expectations
    if ex.get("alarm_latency", False):
        # Wall-clock latency depends on the machine's load: it is a figure
        # (alarm_latency_wall_ms_max, and `python -m bench hil`), never a pass/fail.
        res.check("alarms raised, delivered and timed", bool(lat_wall),
                  "no alarm reached the subscriber, so no latency was measured")
    for node, lvl in ex.get("min_level", {}).items():
        got = levels.get(int(node), 0)
        res.check("node %s reaches level >= %d" % (node, lvl), got >= lvl, "got %d" % got)
    for node, lvl in ex.get("max_level", {}).items():
        got = levels.get(int(node), 0)
        res.check("node %s stays at level <= %d" % (node, lvl), got <= lvl, "got %d" % got)
    if sc.failure_s is not None:
        need = ex.get("red_lead_min_s", 1800)
        res.check("red >= %d s before failure" % need, red_lead is not None and red_lead >= need,
                  "lead %s s" % red_lead)
    res.check("no false red", false_reds == 0, "%d" % false_reds)
    if ex.get("intensified"):
        ok = _intensified(rig)
        res.check("intensified sampling after the trip", ok,
                  "" if ok else "no run at the intensified interval after a trip")
    if ex.get("alarms_first_on_reconnect"):
        n_before, n_alarms = _alarms_first(rig)
        f["data_batches_before_outage_alarms"] = n_before
        window = sc.gateway["inflight"]
        backlog = sum(1 for e in rig.sub.log if e[1] == "data" and rig.broker_restart_wall
                      and e[0] >= rig.broker_restart_wall - 0.5)
        f["data_batches_after_reconnect"] = backlog
        res.check("outage alarms published before the backlog",
                  n_alarms > 0 and n_before <= window and backlog > window,
                  "%d alarms, %d of %d backlog batches ahead of them (in-flight window %d)"
                  % (n_alarms, n_before, backlog, window))
    if ex.get("zone_sirens"):
        _zone_checks(rig, res, ex["zone_sirens"])
    if ex.get("readings_once"):
        # A broker killed between taking a batch and sending its PUBACK (or after its
        # last save of the subscriber's queue) gets that batch again, same seq and
        # bytes: QoS 1 and SPEC §9.2 allow it and consumers dedup. Without a broker
        # restart nothing may come twice, and never one reading in two batches.
        resent_ok = rig.broker_restart_wall is not None
        res.check("every reading arrived once (a batch re-sent after a broker kill aside)",
                  lost == 0 and sub.duplicates_across_batches == 0
                  and (sub.duplicates == 0 or resent_ok),
                  "%d duplicates (%d across batch seqs, %d batches re-sent%s), %d lost"
                  % (sub.duplicates, sub.duplicates_across_batches,
                     sum(n - 1 for n in sub.batches.values()),
                     "" if resent_ok else ", no broker restart", lost))
    if ex.get("beidou_red_within_s") is not None:
        _beidou_checks(rig, res, ex["beidou_red_within_s"])
    if ex.get("forged_rejected"):
        rej = sub.counters.get(3, 0)
        res.check("forged frames rejected and counted", rej > 0 and not unknown
                  and not alarms_unknown, "frames_rejected=%d" % rej)
    rain = _rain_totals(rig)
    if rain:
        f["rain_mm_delivered"] = {k: v[0] / 10.0 for k, v in rain.items()}
        bad = {k: v for k, v in rain.items() if v[0] != v[1]}
        res.check("rain totals at the subscriber equal the gauges' tips", not bad,
                  "node/chan: (delivered, fallen) in 0.1 mm %r" % bad if bad else "")
    for spec, g in rig.gauges:
        rs = [r for r in sub.readings.values() if r.node == spec.node]
        foreign = sorted({r.value for r in rs if r.value not in g.served})
        f.setdefault("gauge_readings", {})[spec.name] = len(rs)
        res.check("gauge %s: readings delivered, each a value it served" % spec.name,
                  rs and not foreign, "%d readings, values never served: %s" % (
                      len(rs), foreign[:5]))
        if any(isinstance(x, W.Silent) for x in spec.channel.sensor.faults):
            res.check("gauge %s stops answering: offline, then back online" % spec.name,
                      rig.stats["gauge_offline"] > 0 and rig.stats["gauge_online_again"] > 0,
                      "offline %d, online again %d" % (rig.stats["gauge_offline"],
                                                       rig.stats["gauge_online_again"]))
    if rig.commands:
        f["commands"] = {}
        for _t, _verb, cid, _payload in rig.commands:
            results = [d.get(5) for d in sub.results_for(cid)]
            f["commands"][cid] = results
            res.check("command %s applied at the node" % cid, "applied" in results,
                      "results %s" % results)
    for node, (start, end, quiet_until) in ex.get("emergency_window", {}).items():
        iv = sc.intervals_of(int(node))
        a, b = rig.epoch + start * 3600, rig.epoch + end * 3600
        c = rig.epoch + quiet_until * 3600
        ts = sorted({r.t for r in sub.readings.values() if r.node == int(node)})
        gaps = [y - x for x, y in zip(ts, ts[1:])]
        inside = [g for (x, g) in zip(ts, gaps) if a <= x < b]
        after = [g for (x, g) in zip(ts, gaps) if b + iv["sample_s"] <= x < c]
        tol = TIME_TOL_S      # each stamp may be a second off (receive time rounding)
        ok = bool(inside) and min(inside) <= iv["intensified_s"] + tol and \
            (not after or min(after) >= iv["sample_s"] - tol)
        res.check("node %s sampled at its intensified interval in emergency mode, and only "
                  "then" % node, ok, "" if ok else "steps inside %s, after %s" % (
                      sorted(set(inside))[:5], sorted(set(after))[:5]))
    if ex.get("faults_reported"):
        codes = sorted({r.fault for r in sub.readings.values() if r.fault is not None})
        want = [c for c in _fault_codes(sc)]
        res.check("sensor faults delivered as fault states", all(c in codes for c in want),
                  "fault codes at the subscriber %s, expected %s" % (codes, want))
    for k in ("gw_kills", "node_kills"):
        if ex.get(k):
            res.check("%s done" % k, rig.stats[k] >= ex[k], "%d of %d" % (rig.stats[k], ex[k]))
    _lines(rig, res)
    return res


def _rain_totals(rig):
    """For tipping buckets on the real driver, the rain the subscriber got vs the tips
    the world made between the node's boot and its last delivered sample (only for
    runs without power cuts: a node that is off counts nothing)."""
    if any(a["do"] == "node_power_cuts" for a in rig.sc.actions):
        return {}
    out = {}
    for np_ in rig.nodes:
        for c in np_.spec.channels:
            if c.source != "rain":
                continue
            rs = [r for r in rig.sub.readings.values() if r.node == np_.id and r.chan == c.chan]
            if not rs:
                continue
            tenths = int(round(c.tip_mm * 10))
            t_last = max(r.t for r in rs) - rig.epoch
            fallen = (c.sensor.sample(t_last) // tenths - c.sensor.sample(np_.first_boot_t)
                      // tenths) * tenths
            got = sum(r.value for r in rs if r.value is not None)
            out["%d/0x%02x" % (np_.id, c.chan)] = (got, fallen)
    return out


def _fault_codes(sc):
    """Fault codes the scenario's faults must produce: open circuit 1, broken loop 8."""
    out = set()
    for n in sc.nodes:
        for c in n.channels:
            for f in c.sensor.faults:
                if isinstance(f, W.OpenCircuit):
                    out.add(1)
                elif isinstance(f, W.BrokenLoop):
                    out.add(8)
    return sorted(out)


def _intensified(rig):
    for na in rig.node_alarms:
        if na.event != 1:
            continue
        iv = rig.sc.intervals_of(na.node)["intensified_s"]
        ts = sorted(r.t for r in rig.sub.readings.values()
                    if r.node == na.node and r.chan == na.chan and na.t <= r.t <= na.t + 3600)
        if any(b - a == iv for a, b in zip(ts, ts[1:])):
            return True
    return False


def _alarms_first(rig):
    if rig.broker_restart_wall is None:
        return 0, 0
    log = sorted(e for e in rig.sub.log if e[0] >= rig.broker_restart_wall - 0.5)
    outage = [a for a in rig.sc.actions if a["do"] == "broker_down"]
    a0 = rig.epoch + outage[0]["at"]
    a1 = a0 + outage[0]["for"]
    keys = [k for k, a in rig.sub.alarms.items() if a0 <= a[13] < a1]
    if not keys:
        return 0, 0
    last = max(i for i, e in enumerate(log) if e[1] == "alarm" and e[2] in keys) \
        if any(e[1] == "alarm" and e[2] in keys for e in log) else -1
    n_before = sum(1 for e in log[:max(last, 0)] if e[1] == "data")
    return n_before, len(keys)


def _lines(rig, res):
    f = res.figures
    sc = rig.sc
    res.lines += [
        "scenario %s (seed %d, %s nodes, %s): %s" % (sc.name, rig.seed, len(sc.nodes),
                                                     rig.runtime, sc.description),
        "simulated %.1f h in %.1f s of wall time; %d node steps; %d frames to the gateway"
        % (f["sim_s"] / 3600.0, rig.stats.get("wall_s", 0), rig.stats["node_steps"],
           rig.stats["frames_to_gw"]),
        "readings: sent %d, stored %d, delivered %d, lost %d, duplicated %d, lost in RAM at power"
        " cuts %d, still in RAM at the end %d" % (f["sent"], rig.stats["stored"], f["delivered"],
                                                  f["lost"], f["duplicated"],
                                         f["lost_in_ram_at_power_cut"],
                                         f["pending_in_ram_at_end"]),
        "alarms: %d raised at nodes, %d delivered; max latency %s ms wall, %s s simulated;"
        " red lead time %s s; false reds %d" % (
            f["alarms"], f["alarms_delivered"], f["alarm_latency_wall_ms_max"],
            f["alarm_latency_sim_s_max"], f["red_lead_time_s"], f["false_reds"]),
        "radio: %s s airtime per node per day; medium %s" % (f["airtime_s_per_node_day"],
                                                             f["medium"]),
        "gateway: %d batches, counters %s; kills %d, broker outages %d, node power cuts %d"
        % (f["batches"], f["gateway_counters"], rig.stats["gw_kills"],
           rig.stats["broker_outages"], rig.stats["node_kills"]),
    ]
    for n in rig.notes[:5]:
        res.lines.append("note: " + n)


def _zone_checks(rig, res, zx):
    """zone_sirens = { zone = [ids], outside = [ids], min_level = 3, within_s = N }: from the
    first member alarm at min_level, every zone node's siren is on within N simulated
    seconds; no node outside ever sounds (docs/zones.md)."""
    zone, outside = set(zx["zone"]), set(zx.get("outside", []))
    lvl = zx.get("min_level", 3)
    trips = [a.t - rig.epoch for a in rig.node_alarms if a.node in zone and a.level >= lvl]
    f = res.figures
    if not trips:
        res.check("a zone member tripped at level >= %d" % lvl, False, "no such alarm")
        return
    t0 = min(trips)
    lat = {}
    for node in sorted(zone):
        ons = [t for n, t, on in rig.siren_changes if n == node and on and t >= t0 - 1]
        lat[node] = round(ons[0] - t0, 1) if ons else None
    f["zone_siren_latency_s"] = {str(k): v for k, v in lat.items()}
    worst = max((v for v in lat.values() if v is not None), default=None)
    f["zone_siren_latency_s_max"] = worst
    res.check("every siren of the zone on within %d s of the trip" % zx["within_s"],
              all(v is not None and v <= zx["within_s"] for v in lat.values()),
              "latency per node %s" % lat)
    sounded = sorted({n for n, _t, on in rig.siren_changes if n in outside and on})
    res.check("no siren outside the zone", not sounded, "sounded: %s" % sounded)


def _beidou_checks(rig, res, within_s):
    """The first red reaches the "platform" through the simulated BeiDou terminal within
    `within_s` simulated seconds of the node's trip (docs/beidou.md)."""
    f = res.figures
    reds = [a.t - rig.epoch for a in rig.node_alarms if a.level == 4 and a.event in (1, 2)]
    msgs = [(t, m) for t, m in rig.bd_received]
    f["beidou_messages"] = len(msgs)
    f["beidou_paced_s"] = round(rig.bd_paced)
    f["beidou_alarms"] = sum(len(m["alarms"]) for _, m in msgs)
    if not reds:
        res.check("a red was raised", False, "no red alarm at any node")
        return
    t_red = min(reds)
    got = [t for t, m in msgs if any(a.level == 4 for a in m["alarms"])]
    lat = round(got[0] - t_red, 1) if got else None
    f["beidou_red_latency_s"] = lat
    res.check("red via BeiDou within %d s of the trip" % within_s,
              lat is not None and lat <= within_s, "latency %s s" % lat)
    keys = [a.key() for _, m in msgs for a in m["alarms"]]
    matched = set(rig.sub.alarms)          # (node, seq, index)
    res.check("every BeiDou alarm also arrived over MQTT (dedup key)",
              set(keys) <= matched, "%d of %d not on MQTT" % (len(set(keys) - matched), len(set(keys))))
