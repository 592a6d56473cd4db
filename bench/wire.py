"""`python -m bench wire`: bytes per reading on air and on the uplink, ours against
one JSON message per reading, SenML-CBOR (RFC 8428) and ThingsBoard gateway JSON, for the
same deterministic 24-hour station trace (a landslide node with rain, displacement and
water level sampled every minute, reporting every 10 minutes, with a storm).

Air:    our READINGS frames including header, MIC, COBS, CRC and delimiters, as written
        to the LoRa module's UART; baselines as bare payloads (no framing, no MIC: they
        are given every advantage).
Uplink: whole MQTT PUBLISH packets (fixed header, topic, packet id, MQTT 5 content-type
        property for ours) carrying what the gateway publishes for the same readings.
"""
import argparse
import datetime
import json
import math
import random

import cbor2

from gateway.batcher import encode_batch
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


def mqtt_publish_len(topic, payload_len, v5_content_type=None, qos=1):
    """Size of an MQTT PUBLISH packet (3.1.1, or 5 with one content-type property)."""
    var = 2 + len(topic.encode()) + (2 if qos else 0)
    if v5_content_type is not None:
        props = 1 + 2 + len(v5_content_type) if v5_content_type else 0
        var += _varint_len(props) + props
    rem = var + payload_len
    return 1 + _varint_len(rem) + rem


def ours_uplink(frames):
    total = 0
    for bseq, (seq, t_send, blocks, _) in enumerate(frames, 1):
        rows, idx = [], 0
        for b in blocks:
            for k, v in enumerate(b.values):
                rows.append((0, NODE, seq, idx, b.chan, t_send - b.age + k * b.step, v, None, 0))
                idx += 1
        payload = encode_batch("lushi", "gw1", bseq, t_send + 1, rows, counters={1: 0, 2: 0, 3: 0, 4: 0, 5: 0})
        total += mqtt_publish_len(TOPIC_OURS, len(payload), "application/cbor")
    return total


MODBUS_NODE = 9001
MODBUS_POINTS = (("water_level", channels.chan_id(3)), ("temperature", channels.chan_id(7)))
MODBUS_BATCHES_S = (1, 5, 10, 60)


def modbus_polls(seconds, seed=1):
    """[(t, [value per point])]: a radar level gauge with a temperature register, polled
    every second (level in mm with a little noise and a slow rise, temperature in 0.1 °C)."""
    rng = random.Random(seed)
    out = []
    for i in range(seconds):
        level = 1500 + i // 90 + int(round(rng.gauss(0, 1.5)))
        temp = 215 + (i // 600) % 3
        out.append((T0 + i, [level, temp]))
    return out


def modbus_rows(polls, per_poll_seq):
    """The gateway's reading rows for the polls: windowed keys as gateway/modbus.py gives
    them (seq per WINDOW polls, idx = point * WINDOW + poll), or the former one seq per
    poll (idx = point), which can only make single-reading runs."""
    from gateway.modbus import WINDOW
    rows = []
    for k, (t, vals) in enumerate(polls):
        seq, pos = (k + 1, 0) if per_poll_seq else (1 + k // WINDOW, k % WINDOW)
        for i, v in enumerate(vals):
            idx = i if per_poll_seq else i * WINDOW + pos
            rows.append((len(rows), MODBUS_NODE, seq, idx, MODBUS_POINTS[i][1], t, v, None, 0))
    return rows


def modbus_uplink(batch_s, seconds=3600, seed=1):
    """Uplink bytes per Modbus reading at 1 s polls, batches every batch_s: ours (runs),
    ours with one seq per poll (before runs), ThingsBoard gateway JSON, all whole MQTT
    PUBLISH packets."""
    polls = modbus_polls(seconds, seed)
    n = len(polls) * len(MODBUS_POINTS)
    out = {}
    for name, per_poll in (("runs", False), ("per_poll", True)):
        rows = modbus_rows(polls, per_poll)
        total = 0
        for b, start in enumerate(range(0, len(rows), batch_s * len(MODBUS_POINTS)), 1):
            part = rows[start:start + batch_s * len(MODBUS_POINTS)]
            payload = encode_batch("lushi", "gw1", b, part[-1][5] + 1, part,
                                   counters={1: 0, 2: 0, 3: 0, 4: 0, 5: 0})
            total += mqtt_publish_len(TOPIC_OURS, len(payload), "application/cbor")
        out[name] = total / n
    tb = 0
    for start in range(0, len(polls), batch_s):
        msg = {"Gauge %d" % MODBUS_NODE: [
            {"ts": t * 1000, "values": {name: units(chan, v)
                                        for (name, chan), v in zip(MODBUS_POINTS, vals)}}
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
    for b in MODBUS_BATCHES_S:
        m = modbus_uplink(b, seed=seed)
        fig["modbus_%ds_uplink_bytes_per_reading" % b] = round(m["runs"], 3)
        fig["modbus_%ds_per_poll_seq_bytes_per_reading" % b] = round(m["per_poll"], 3)
        fig["modbus_%ds_thingsboard_bytes_per_reading" % b] = round(m["thingsboard"], 3)
        fig["modbus_%ds_vs_thingsboard" % b] = round(m["runs"] / m["thingsboard"], 4)
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
            ("uplink: JSON message per reading", f["uplink_json_bytes_per_reading"], f["uplink_vs_json"]),
            ("uplink: SenML-CBOR per report", f["uplink_senml_bytes_per_reading"],
             round(f["uplink_bytes_per_reading"] / f["uplink_senml_bytes_per_reading"], 4)),
            ("uplink: ThingsBoard gateway JSON", f["uplink_thingsboard_bytes_per_reading"], f["uplink_vs_thingsboard"])]
    for name, v, ratio in rows:
        print("%-36s %10.2f %10s" % (name, v, "" if ratio is None else "%.3f" % ratio))
    print()
    print("Modbus device (%d points) polled every 1 s for an hour; uplink bytes per reading"
          % len(MODBUS_POINTS))
    print("%-10s %14s %16s %12s %10s" % ("batch", "ours (runs)", "seq per poll", "ThingsBoard",
                                        "ours/TB"))
    for b in MODBUS_BATCHES_S:
        print("%-10s %14.2f %16.2f %12.2f %10.3f" % (
            "%d s" % b, f["modbus_%ds_uplink_bytes_per_reading" % b],
            f["modbus_%ds_per_poll_seq_bytes_per_reading" % b],
            f["modbus_%ds_thingsboard_bytes_per_reading" % b], f["modbus_%ds_vs_thingsboard" % b]))
    print()
    print("typical 3-channel one-sample frame: %d bytes (%d on the UART); 10-minute report frame: %d bytes"
          % (f["frame_bytes_typical"], f["frame_wire_bytes_typical"], f["frame_bytes_report"]))
    print(json.dumps(f, sort_keys=True))
    return 0
