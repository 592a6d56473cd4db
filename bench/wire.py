"""`python -m bench wire`: bytes per reading on air and on the uplink, ours against
one JSON message per reading, SenML-CBOR (RFC 8428) and ThingsBoard gateway JSON, for the
same deterministic 24-hour station trace (a landslide node with rain, displacement and
water level sampled every minute, reporting every 10 minutes, with a storm).

Air:    our READINGS frames including header, MIC, COBS, CRC and delimiters, as written
        to the LoRa module's UART; baselines as bare payloads (no framing, no MIC: they
        are given every advantage).
Uplink: whole MQTT PUBLISH packets (fixed header, remaining length, topic, packet id,
        properties, payload: every byte the client writes for it; tests/bench checks the
        count against the bytes paho writes) carrying what each publishes for the same
        readings. Ours as the gateway publishes (SPEC §9): schema-2 batches under MQTT 5
        topic alias 1 (the full topic once per connection), no content type on data,
        counters when changed or once a minute; its schema-1 form as before issue 13
        (full topic, content type, site/gateway, counters and absolute times in every
        batch) as a baseline. ThingsBoard IoT Gateway publishes with MQTT 3.1.1 to
        v1/gateway/telemetry (no properties). PUBACKs are left out on both sides (QoS 1
        both, one per publish).

Modbus: devices of 2 and 8 registers polled every 1 s for an hour, batches every 1, 5,
10 and 60 s. Sequence numbers are those of a gateway that has run for months (batch seq
above 65535, poll windows above 255): small numbers would flatter the CBOR.
"""
import argparse
import datetime
import json
import math
import random

import cbor2

from gateway.batcher import CounterPolicy, encode_batch, encode_batch_v1
from protocol import channels, framing, gwmessages, readings
from protocol import frame as fr
from protocol.mic import Hmac

NODE = 101
SAMPLE_S = 60
REPORT_S = 600
T0 = 1_784_246_400          # 2026-07-17T00:00:00Z: the trace's day
CHANS = (("rain", channels.chan_id(1)), ("displacement", channels.chan_id(2)),
         ("water_level", channels.chan_id(3)))
TOPIC_OURS = "stations/lushi/gw1/data"
TOPIC_TB = "v1/gateway/telemetry"
BSEQ0 = 1_000_000           # a gateway some months into its life (5 s batches: ~2 months)


def station_day(seed=1):
    """[(t, rain_0.1mm, disp_0.01mm, level_mm)] every minute for 24 h. A storm from 21:00
    peaks at 53.9 mm in 20 minutes near 23:07 (the Xuan'en case); displacement creeps
    0.5 mm/day and speeds up after the storm; the river rises 1.6 m and recedes."""
    rng = random.Random(seed)
    out = []
    disp = 1234.0
    for i in range(24 * 3600 // SAMPLE_S):
        t = T0 + i * SAMPLE_S
        h = i * SAMPLE_S / 3600.0
        # rain intensity in mm/min: showers in the afternoon, the storm at night
        r = 0.0
        if 14.0 <= h < 15.0 and rng.random() < 0.3:
            r = 0.2
        if 21.0 <= h < 24.0:
            r = 0.05 + 4.3 * math.exp(-((h - 22.95) / 0.12) ** 2) + 0.3 * math.exp(-((h - 22.5) / 0.4) ** 2)
        tips = int(r / 0.2 + rng.random())          # 0.2 mm tipping bucket
        rain = tips * 2
        v = 0.5 / 1440 * 100                         # 0.5 mm/day, in 0.01 mm per minute
        if h > 23.0:
            v *= 1 + 30 * (h - 23.0)
        disp += v + rng.gauss(0, 0.4)
        level = 1200 + 1600 * math.exp(-((h - 23.6) / 0.9) ** 2) + rng.gauss(0, 2)
        out.append((t, rain, int(round(disp)), int(round(level))))
    return out


def reports(trace):
    """Group the trace into 10-minute reports: (t_send, [(chan, name, [(t, v)])])."""
    out = []
    per = REPORT_S // SAMPLE_S
    for k in range(0, len(trace), per):
        chunk = trace[k:k + per]
        t_send = chunk[-1][0] + 5
        chans = []
        for j, (name, chan) in enumerate(CHANS):
            chans.append((chan, name, [(row[0], row[1 + j]) for row in chunk]))
        out.append((t_send, chans))
    return out


def ours_air(reps, signer):
    total, frames = 0, []
    seq = 0
    for t_send, chans in reps:
        seq += 1
        blocks = [readings.Block(chan, t_send - pts[0][0], SAMPLE_S, [v for _, v in pts])
                  for chan, _, pts in chans]
        f = fr.encode(signer, fr.READINGS, NODE, seq, t_send, readings.encode(blocks), fr.F_CLOCK_SYNCED)
        w = framing.wrap(f)
        total += len(w)
        frames.append((seq, t_send, blocks, f))
    return total, frames


def ack_air(frames, signer):
    total = 0
    for seq, t_send, _, _ in frames:
        a = fr.encode(signer, fr.ACK, NODE, seq, t_send + 1, gwmessages.encode_ack(seq, t_send + 1, [(1, seq)]))
        total += len(framing.wrap(a))
    return total


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def units(chan, v):
    return round(channels.to_units(chan, v), 6)


def json_per_reading(reps):
    msgs = []
    for _, chans in reps:
        for chan, name, pts in chans:
            for t, v in pts:
                msgs.append(json.dumps({"node": str(NODE), "sensor": name, "ts": iso(t), "value": units(chan, v)},
                                       separators=(",", ":")).encode())
    return msgs


def senml_packs(reps):
    """One SenML-CBOR pack per report: base name and base time once, unit once per name,
    times relative to the base time, values as the shortest exact CBOR number."""
    packs = []
    for _, chans in reps:
        recs = []
        bt = chans[0][2][0][0]
        for chan, name, pts in chans:
            unit = channels.info(chan)[1]
            for i, (t, v) in enumerate(pts):
                r = {0: name, 2: units(chan, v), 6: t - bt}
                if not recs:
                    r[-2] = "urn:dev:station:%d:" % NODE
                    r[-3] = bt
                if i == 0:
                    r[1] = unit
                recs.append(r)
        packs.append(cbor2.dumps(recs, canonical=True))
    return packs


def thingsboard(reps):
    """ThingsBoard IoT Gateway telemetry: {"device": [{"ts": ms, "values": {...}}]} per report."""
    out = []
    for _, chans in reps:
        rows = []
        for i in range(len(chans[0][2])):
            t = chans[0][2][i][0]
            rows.append({"ts": t * 1000, "values": {name: units(chan, pts[i][1]) for chan, name, pts in chans}})
        out.append(json.dumps({"Station %d" % NODE: rows}, separators=(",", ":")).encode())
    return out


def _varint_len(n):
    k = 1
    while n > 127:
        n >>= 7
        k += 1
    return k


def mqtt_publish_len(topic, payload_len, v5_content_type=None, qos=1, topic_alias=None):
    """Size of an MQTT PUBLISH packet: 3.1.1 (no content type, no alias), or 5 with the
    properties given (a content type, a topic alias; "" for none: an empty property
    section still costs its length byte)."""
    var = 2 + len(topic.encode()) + (2 if qos else 0)
    if v5_content_type is not None or topic_alias is not None:
        props = (1 + 2 + len(v5_content_type) if v5_content_type else 0) + \
            (3 if topic_alias else 0)
        var += _varint_len(props) + props
    rem = var + payload_len
    return 1 + _varint_len(rem) + rem


class OursOnMqtt:
    """Our gateway's publishes of data batches on one MQTT 5 connection (SPEC §9):
    schema 2 under topic alias 1 (full topic with the first), counters by CounterPolicy;
    or schema 1 as before (full topic and content type every time, counters always)."""

    def __init__(self, schema=2, bseq0=BSEQ0):
        self.schema = schema
        self.bseq = bseq0
        self.counters = CounterPolicy()
        self.first = True
        self.bytes = 0
        self.publishes = 0

    def publish(self, created, rows):
        self.bseq += 1
        counters = {1: 0, 2: 0, 3: 0, 4: 0, 5: 0}
        if self.schema == 1:
            payload = encode_batch_v1("lushi", "gw1", self.bseq, created, rows, (), counters)
            n = mqtt_publish_len(TOPIC_OURS, len(payload), "application/cbor")
        else:
            payload = encode_batch(self.bseq, created, rows, (),
                                   self.counters.pick(self.bseq, created, counters))
            n = mqtt_publish_len(TOPIC_OURS if self.first else "", len(payload), "",
                                 topic_alias=1)
            self.first = False
        self.bytes += n
        self.publishes += 1
        return payload


def ours_uplink(frames, schema=2):
    up = OursOnMqtt(schema)
    for seq, t_send, blocks, _ in frames:
        rows, idx = [], 0
        for b in blocks:
            for k, v in enumerate(b.values):
                rows.append((0, NODE, seq, idx, b.chan, t_send - b.age + k * b.step, v, None, 0))
                idx += 1
        up.publish(t_send + 1, rows)
    return up.bytes


MODBUS_NODE = 9001
WINDOW_SEQ0 = 20_000        # poll windows of 1024 s: ~8 months of 1 s polls
c = channels.chan_id
# A radar level gauge with a temperature register; and a river station logger with eight
# registers: radar and pressure level, water and air temperature, rain counter
# increments, battery and solar voltage, pore pressure of the bank.
MODBUS_DEVICES = {
    2: (("water_level", c(3)), ("temperature", c(7))),
    8: (("water_level", c(3)), ("water_level_p", c(3, 1)), ("temperature", c(7)),
        ("air_temperature", c(7, 1)), ("rain", c(1)), ("battery", c(5)), ("supply", c(6)),
        ("pore_pressure", c(10))),
}
del c
MODBUS_BATCHES_S = (1, 5, 10, 60)
GOAL_POINTS = 8             # the device the <= 4 B goal is judged on (docs/figures.toml)


def modbus_polls(points, seconds, seed=1):
    """[(t, [value per register])] for one poll a second, in each register's scaled
    integer (SPEC §8.1): noise and slow drifts as the instruments give them."""
    rng = random.Random(seed)
    out = []
    for i in range(seconds):
        level = 1500 + i // 90 + int(round(rng.gauss(0, 1.5)))
        temp = 215 + (i // 600) % 3
        if points == 2:
            out.append((T0 + i, [level, temp]))
            continue
        out.append((T0 + i, [
            level, level + 12 + int(round(rng.gauss(0, 4))), temp,
            183 + (i // 240) % 5, 2 if rng.random() < 0.02 else 0,
            12_640 - i // 400 + int(round(rng.gauss(0, 3))),
            18_200 + int(round(rng.gauss(0, 40))), 4_210 + int(round(rng.gauss(0, 6)))]))
    return out


def modbus_rows(polls, points, per_poll_seq=False):
    """The gateway's reading rows for the polls: keys as gateway/modbus.py gives them
    (seq per WINDOW polls, idx = point * WINDOW + poll), or one seq per poll
    (idx = point), which can only make single-reading runs."""
    from gateway.modbus import WINDOW
    rows = []
    for k, (t, vals) in enumerate(polls):
        if per_poll_seq:
            seq, pos = WINDOW_SEQ0 * WINDOW + k + 1, 0
        else:
            seq, pos = WINDOW_SEQ0 + k // WINDOW, k % WINDOW
        for i, v in enumerate(vals):
            idx = i if per_poll_seq else i * WINDOW + pos
            rows.append((len(rows), MODBUS_NODE, seq, idx, MODBUS_DEVICES[points][i][1], t, v,
                         None, 0))
    return rows


def modbus_uplink(points, batch_s, seconds=3600, seed=1):
    """Uplink bytes per Modbus reading at 1 s polls, batches every batch_s: ours (schema 2
    as published), ours in schema 1 (before), ours with one seq per poll in schema 2,
    ThingsBoard gateway JSON; whole MQTT PUBLISH packets."""
    polls = modbus_polls(points, seconds, seed)
    n = len(polls) * points
    out = {}
    for name, schema, per_poll in (("ours", 2, False), ("schema1", 1, False),
                                   ("per_poll", 2, True)):
        rows = modbus_rows(polls, points, per_poll)
        up = OursOnMqtt(schema)
        for start in range(0, len(rows), batch_s * points):
            part = rows[start:start + batch_s * points]
            up.publish(part[-1][5] + 1, part)
        out[name] = up.bytes / n
    tb = 0
    names = MODBUS_DEVICES[points]
    for start in range(0, len(polls), batch_s):
        msg = {"Gauge %d" % MODBUS_NODE: [
            {"ts": t * 1000, "values": {name: units(chan, v) for (name, chan), v in zip(names, vals)}}
            for t, vals in polls[start:start + batch_s]]}
        tb += mqtt_publish_len(TOPIC_TB, len(json.dumps(msg, separators=(",", ":"))), None)
    out["thingsboard"] = tb / n
    return out


def run(seed=1):
    trace = station_day(seed)
    reps = reports(trace)
    n = sum(len(pts) for _, chans in reps for _, _, pts in chans)
    signer = Hmac(bytes(range(1, 33)))
    air, frames = ours_air(reps, signer)
    acks = ack_air(frames, signer)
    jmsgs = json_per_reading(reps)
    packs = senml_packs(reps)
    tb = thingsboard(reps)
    typical = fr.encode(signer, fr.READINGS, NODE, 123456, T0, readings.encode(
        [readings.Block(chan, 5, 0, [v]) for (_, chan), v in zip(CHANS, trace[0][1:])]), fr.F_CLOCK_SYNCED)
    up_ours = ours_uplink(frames)
    up_ours_v1 = ours_uplink(frames, schema=1)
    up_json = sum(mqtt_publish_len("stations/lushi/gw1/%d/reading" % NODE, len(m), "application/json") for m in jmsgs)
    up_senml = sum(mqtt_publish_len(TOPIC_OURS, len(p), "application/senml+cbor") for p in packs)
    up_tb = sum(mqtt_publish_len(TOPIC_TB, len(p), None) for p in tb)
    storm_mm = max(sum(r[1] for r in trace[i:i + 20]) for i in range(len(trace) - 20)) / 10
    fig = {
        "readings": n,
        "frames": len(frames),
        "storm_max_20min_mm": storm_mm,
        "air_bytes_per_reading": round(air / n, 3),
        "air_json_bytes_per_reading": round(sum(map(len, jmsgs)) / n, 3),
        "air_senml_bytes_per_reading": round(sum(map(len, packs)) / n, 3),
        "air_ack_bytes_per_reading": round(acks / n, 3),
        "uplink_bytes_per_reading": round(up_ours / n, 3),
        "uplink_schema1_bytes_per_reading": round(up_ours_v1 / n, 3),
        "uplink_json_bytes_per_reading": round(up_json / n, 3),
        "uplink_senml_bytes_per_reading": round(up_senml / n, 3),
        "uplink_thingsboard_bytes_per_reading": round(up_tb / n, 3),
        "frame_bytes_typical": len(typical),
        "frame_wire_bytes_typical": len(framing.wrap(typical)),
        "frame_bytes_report": len(frames[0][3]),
    }
    fig["air_vs_json"] = round(fig["air_bytes_per_reading"] / fig["air_json_bytes_per_reading"], 4)
    fig["air_vs_senml"] = round(fig["air_bytes_per_reading"] / fig["air_senml_bytes_per_reading"], 4)
    fig["uplink_vs_thingsboard"] = round(fig["uplink_bytes_per_reading"] / fig["uplink_thingsboard_bytes_per_reading"], 4)
    fig["uplink_vs_json"] = round(fig["uplink_bytes_per_reading"] / fig["uplink_json_bytes_per_reading"], 4)
    fig["modbus_goal_points"] = GOAL_POINTS
    for p in MODBUS_DEVICES:
        for b in MODBUS_BATCHES_S:
            m = modbus_uplink(p, b, seed=seed)
            key = "modbus_%dpt_%ds_" % (p, b)
            fig[key + "uplink_bytes_per_reading"] = round(m["ours"], 3)
            fig[key + "schema1_bytes_per_reading"] = round(m["schema1"], 3)
            fig[key + "per_poll_seq_bytes_per_reading"] = round(m["per_poll"], 3)
            fig[key + "thingsboard_bytes_per_reading"] = round(m["thingsboard"], 3)
            fig[key + "vs_thingsboard"] = round(m["ours"] / m["thingsboard"], 4)
    return fig


def main(argv=()):
    ap = argparse.ArgumentParser(prog="python -m bench wire", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(list(argv))
    f = run(args.seed)
    print("Station trace: %d readings (3 channels, 1-min samples, 10-min reports, %d frames), "
          "storm max %.1f mm in 20 min" % (f["readings"], f["frames"], f["storm_max_20min_mm"]))
    print()
    print("%-36s %10s %10s" % ("bytes per reading", "bytes", "ours/this"))
    rows = [("air: ours (framed, MIC'd)", f["air_bytes_per_reading"], None),
            ("air: JSON message per reading", f["air_json_bytes_per_reading"], f["air_vs_json"]),
            ("air: SenML-CBOR pack per report", f["air_senml_bytes_per_reading"], f["air_vs_senml"]),
            ("air: our ACKs (downlink)", f["air_ack_bytes_per_reading"], None),
            ("uplink: ours (CBOR batch + MQTT 5)", f["uplink_bytes_per_reading"], None),
            ("uplink: ours, schema 1 (before)", f["uplink_schema1_bytes_per_reading"],
             round(f["uplink_bytes_per_reading"] / f["uplink_schema1_bytes_per_reading"], 4)),
            ("uplink: JSON message per reading", f["uplink_json_bytes_per_reading"], f["uplink_vs_json"]),
            ("uplink: SenML-CBOR per report", f["uplink_senml_bytes_per_reading"],
             round(f["uplink_bytes_per_reading"] / f["uplink_senml_bytes_per_reading"], 4)),
            ("uplink: ThingsBoard gateway JSON", f["uplink_thingsboard_bytes_per_reading"], f["uplink_vs_thingsboard"])]
    for name, v, ratio in rows:
        print("%-36s %10.2f %10s" % (name, v, "" if ratio is None else "%.3f" % ratio))
    print()
    for p in MODBUS_DEVICES:
        print("Modbus device, %d registers polled every 1 s for an hour; uplink bytes per reading%s"
              % (p, " (the goal's device: <= 4 B at 5 s batches)" if p == f["modbus_goal_points"]
                 else ""))
        print("%-8s %12s %16s %14s %12s %9s" % ("batch", "ours", "schema 1 (before)",
                                               "seq per poll", "ThingsBoard", "ours/TB"))
        for b in MODBUS_BATCHES_S:
            k = "modbus_%dpt_%ds_" % (p, b)
            print("%-8s %12.2f %16.2f %14.2f %12.2f %9.3f" % (
                "%d s" % b, f[k + "uplink_bytes_per_reading"], f[k + "schema1_bytes_per_reading"],
                f[k + "per_poll_seq_bytes_per_reading"], f[k + "thingsboard_bytes_per_reading"],
                f[k + "vs_thingsboard"]))
        print()
    print("typical 3-channel one-sample frame: %d bytes (%d on the UART); 10-minute report frame: %d bytes"
          % (f["frame_bytes_typical"], f["frame_wire_bytes_typical"], f["frame_bytes_report"]))
    print(json.dumps(f, sort_keys=True))
    return 0
