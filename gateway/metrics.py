"""`/metrics`: the gateway's figures in the Prometheus text format (prometheus_client).

Everything comes from the daemon's status snapshot (gateway/daemon.py writes it every
few seconds) and the status page's alarm history, so a scrape never touches the store
or the radio. Counters the store and the radio keep since the store was created keep
counting across restarts; the uplink's counters start again at each start of the daemon.
"""
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import CollectorRegistry

from protocol import levels


class SnapshotCollector:
    def __init__(self, source):
        self.source = source        # .snapshot() -> dict or None, .history, .clock()

    def describe(self):
        return []

    def collect(self):
        snap = self.source.snapshot()
        now = self.source.clock()
        up = GaugeMetricFamily("stationgw_snapshot_present",
                               "1 if the daemon's status snapshot could be read")
        up.add_metric([], 1 if snap else 0)
        yield up
        if not snap:
            return
        g = GaugeMetricFamily("stationgw_snapshot_age_seconds",
                              "Age of the daemon's status snapshot (stale: daemon stuck or down)")
        g.add_metric([], max(0.0, now - snap.get("t", 0)))
        yield g
        yield from _nodes(snap, self.source.history.node_levels(), now)
        yield from _lanes(snap)
        yield from _counters(snap)
        yield from _radio(snap)
        yield from _uplink(snap)
        yield from _modbus(snap)
        yield from _store(snap)


def _nodes(snap, node_levels, now):
    fams = {
        "last_seen": GaugeMetricFamily("stationgw_node_last_heard_age_seconds",
                                       "Seconds since the node was last heard",
                                       labels=["node", "name"]),
        "battery": GaugeMetricFamily("stationgw_node_battery_volts", "Node battery voltage",
                                     labels=["node", "name"]),
        "rssi": GaugeMetricFamily("stationgw_node_rssi_dbm", "RSSI of the node's last frame",
                                  labels=["node", "name"]),
        "log": GaugeMetricFamily("stationgw_node_log_depth",
                                 "Frames waiting in the node's flash log", labels=["node", "name"]),
        "gaps": GaugeMetricFamily("stationgw_node_seq_gaps",
                                  "Frame seqs missing between the node's floor and its newest",
                                  labels=["node", "name"]),
        "level": GaugeMetricFamily("stationgw_node_warning_level",
                                   "Newest warning level from the node's alarms "
                                   "(0 normal, 1 blue, 2 yellow, 3 orange, 4 red)",
                                   labels=["node", "name"]),
        "frames": CounterMetricFamily("stationgw_node_frames",
                                      "Frames accepted from the node since the daemon started",
                                      labels=["node", "name"]),
        "dl": GaugeMetricFamily("stationgw_node_downlink_queue",
                                "Commands queued for the node", labels=["node", "name"]),
    }
    for node, d in snap.get("nodes", {}).items():
        lab = [str(node), d.get("name", "")]
        if d.get("last_seen") is not None:
            fams["last_seen"].add_metric(lab, max(0.0, now - d["last_seen"]))
        if d.get("battery_mv") is not None:
            fams["battery"].add_metric(lab, d["battery_mv"] / 1000.0)
        if d.get("rssi_dbm") is not None:
            fams["rssi"].add_metric(lab, d["rssi_dbm"])
        if d.get("log_depth") is not None:
            fams["log"].add_metric(lab, d["log_depth"])
        if isinstance(d.get("seq_gaps"), int):
            fams["gaps"].add_metric(lab, d["seq_gaps"])
        if isinstance(d.get("frames"), int):
            fams["frames"].add_metric(lab, d["frames"])
        fams["dl"].add_metric(lab, d.get("downlink_queue", 0))
        fams["level"].add_metric(lab, node_levels.get(int(node), levels.NORMAL))
    yield from fams.values()


def _lanes(snap):
    depth = GaugeMetricFamily("stationgw_lane_depth",
                              "Records waiting per uplink lane (alarm, live, backlog; "
                              "unacked_batches counts batches)", labels=["lane"])
    age = GaugeMetricFamily("stationgw_lane_oldest_age_seconds",
                            "Age of the oldest record waiting in the lane", labels=["lane"])
    for lane, d in snap.get("lanes", {}).items():
        depth.add_metric([lane], d.get("depth") or 0)
        if d.get("oldest_age_s") is not None:
            age.add_metric([lane], d["oldest_age_s"])
    yield depth
    yield age


def _counters(snap):
    c = CounterMetricFamily("stationgw_store_events",
                            "Store counters since it was created: readings_thinned and "
                            "readings_dropped (quota), frames_rejected, frames_duplicate, "
                            "alarms_dropped, rejected_<reason>", labels=["event"])
    for name, v in sorted(snap.get("counters", {}).items()):
        if isinstance(v, int):
            c.add_metric([name], v)
    yield c


def _radio(snap):
    r = snap.get("radio")
    if not r:
        return
    rej = CounterMetricFamily("stationgw_radio_rejects", "Radio frames refused, by reason "
                              "(since the daemon started)", labels=["reason"])
    for reason, v in sorted((r.get("rejects") or {}).items()):
        rej.add_metric([reason], v)
    yield rej
    for key, name, text in (("commits", "stationgw_radio_commits", "Store commits of radio "
                             "frame groups"),
                            ("commit_failures", "stationgw_radio_commit_failures",
                             "Store commits that failed (frames not acked)"),
                            ("frames_acked", "stationgw_radio_frames_acked",
                             "Radio frames acked after their commit")):
        if isinstance(r.get(key), int):
            c = CounterMetricFamily(name, text)
            c.add_metric([], r[key])
            yield c


def _uplink(snap):
    b = snap.get("broker") or {}
    g = GaugeMetricFamily("stationgw_uplink_connected", "1 while the MQTT broker link is up",
                          labels=["broker"])
    g.add_metric([str(b.get("broker"))], 1 if b.get("connected") else 0)
    yield g
    for key, name, text in (("batches_acked", "stationgw_uplink_batches_acked",
                             "Batches PUBACKed since the daemon started"),
                            ("readings_acked", "stationgw_uplink_readings_acked",
                             "Readings PUBACKed since the daemon started")):
        if isinstance(b.get(key), int):
            c = CounterMetricFamily(name, text)
            c.add_metric([], b[key])
            yield c
    if isinstance(b.get("inflight_batches"), int):
        g = GaugeMetricFamily("stationgw_uplink_inflight_batches", "Batches awaiting PUBACK")
        g.add_metric([], b["inflight_batches"])
        yield g
    if b.get("last_puback") is not None:
        g = GaugeMetricFamily("stationgw_uplink_last_puback_timestamp_seconds",
                              "Unix time of the last PUBACK")
        g.add_metric([], b["last_puback"])
        yield g
    a = b.get("alarms") or {}
    if a:
        lat = GaugeMetricFamily("stationgw_alarm_publish_wait_seconds",
                                "Alarm wait from store commit to PUBACK over the last 2048 "
                                "alarms", labels=["quantile"])
        for q, key in (("0.5", "wait_ms_p50"), ("0.99", "wait_ms_p99"), ("1", "wait_ms_max")):
            if a.get(key) is not None:
                lat.add_metric([q], a[key] / 1000.0)
        yield lat
        for key in ("published", "acked"):
            if isinstance(a.get(key), int):
                c = CounterMetricFamily("stationgw_alarms_%s" % key,
                                        "Alarms %s to the broker since the daemon started" % key)
                c.add_metric([], a[key])
                yield c


def _modbus(snap):
    mb = snap.get("modbus") or {}
    if not mb:
        return
    online = GaugeMetricFamily("stationgw_modbus_device_online", "1 if the device's last poll "
                               "succeeded", labels=["device", "node"])
    level = GaugeMetricFamily("stationgw_modbus_device_warning_level", "Warning level of the "
                              "device's rules", labels=["device", "node"])
    polls = CounterMetricFamily("stationgw_modbus_polls", "Polls by result since the daemon "
                                "started", labels=["device", "node", "result"])
    for name, d in sorted(mb.items()):
        lab = [name, str(d.get("node"))]
        online.add_metric(lab, 1 if d.get("online") else 0)
        level.add_metric(lab, d.get("level") or 0)
        for key, result in (("polls_ok", "ok"), ("timeouts", "timeout"),
                            ("crc_errors", "crc_error"), ("exceptions", "exception"),
                            ("connect_failures", "connect_failed")):
            if isinstance(d.get(key), int):
                polls.add_metric(lab + [result], d[key])
    yield online
    yield level
    yield polls


def _store(snap):
    s = snap.get("store") or {}
    if s.get("used_bytes") is not None:
        g = GaugeMetricFamily("stationgw_store_used_bytes", "Bytes the store uses")
        g.add_metric([], s["used_bytes"])
        yield g
    if s.get("quota_bytes"):
        g = GaugeMetricFamily("stationgw_store_quota_bytes", "Store quota; thinning above it")
        g.add_metric([], s["quota_bytes"])
        yield g


def registry(source):
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SnapshotCollector(source))
    return reg
