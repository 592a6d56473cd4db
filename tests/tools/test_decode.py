"""decode: frames and captures made by protocol/, uplink messages made by
gateway/batcher.py, MIC checked against a keys file written by keygen."""
import json

import cbor2
import pytest

from gateway import batcher
from gateway.records import Alarm, NodeStatus
from protocol import channels, framing, gwmessages, messages, readings
from protocol import frame as fr
from protocol.mic import Hmac
from tools import cli, decode, errors, keygen

RAIN = channels.chan_id(channels.kind_by_name("rain"))
WATER = channels.chan_id(channels.kind_by_name("water_level"))
DISP = channels.chan_id(channels.kind_by_name("displacement"))


@pytest.fixture
def registry(tmp_path):
    reg = str(tmp_path / "keys.toml")
    keygen.keygen(17, reg)
    keygen.keygen(18, reg)
    return reg, keygen.load_keys(reg)


def readings_frame(key, node=17, seq=42, flags=fr.F_CLOCK_SYNCED, t=1767225600):
    payload = readings.encode([readings.Block(WATER, 600, 300, [2950, 3010, 3050]),
                               readings.Block(RAIN, 600, 600, None, fault=1, count=2)])
    return fr.encode(Hmac(key), fr.READINGS, node, seq, t, payload, flags=flags,
                     back=min(3, seq))


def test_readings_frame_text_with_mic_ok(registry, capsys):
    reg, keys = registry
    raw = readings_frame(keys[17])
    assert cli.main(["decode", raw.hex(), "--registry", reg]) == 0
    out = capsys.readouterr().out
    assert "READINGS node 17 seq 42 back 3" in out and "mic ok" in out
    assert "water_level.0" in out and "2.950 m, 3.010 m, 3.050 m" in out
    assert "first at 2025-12-31T23:50:00Z" in out          # send time - age, clock synced
    assert "fault open_circuit" in out and "idx 3.." in out


def test_readings_json_and_rx_time(registry, capsys):
    reg, keys = registry
    raw = readings_frame(keys[17], flags=0, t=500)
    assert cli.main(["decode", raw.hex(), "--registry", reg, "--json", "--rx-time",
                     "1767225600"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["type"] == "readings" and d["clock"] == "since boot" and d["mic"] == "ok"
    b = d["blocks"][0]
    assert b["values"] == [2950, 3010, 3050] and b["t0"] == 1767225600 - 600
    assert d["blocks"][1]["fault"] == "open_circuit" and d["blocks"][1]["first_idx"] == 3


def test_without_registry_mic_not_checked(registry, capsys):
    _, keys = registry
    assert cli.main(["decode", readings_frame(keys[17]).hex()]) == 0
    assert "mic not checked" in capsys.readouterr().out


def test_alarm_status_hello_ack_frames(registry):
    _, keys = registry
    s = Hmac(keys[17])
    alarm = messages.encode_alarms([{messages.A_EVENT: 2, messages.A_LEVEL: 4, messages.A_PREV: 2,
                                     messages.A_CHAN: DISP, messages.A_RULE: 5, messages.A_KIND: 4,
                                     messages.A_VALUE: 1800, messages.A_THRESHOLD: 3600,
                                     messages.A_AGE: 3}])
    d = decode.describe_frame(fr.encode(s, fr.ALARM, 17, 9, 100, alarm), keys, "k")
    a = d["alarms"][0]
    assert (a["event"], a["level"], a["prev_level"], a["label"], a["kind"]) == (
        "level", "red", "yellow", "displacement.0", "invvel")
    text = "\n".join(decode.frame_text(d))
    assert "LEVEL RED (was yellow) on displacement.0" in text
    st = messages.encode_map({messages.S_BATTERY_MV: 3710, messages.S_FW: "0.1.0",
                              messages.S_LEVEL: 3})
    d = decode.describe_frame(fr.encode(s, fr.STATUS, 17, 10, 100, st), keys, "k")
    assert d["status"] == {"battery_mv": 3710, "fw": "0.1.0", "level": "orange"}
    h = messages.encode_map({messages.H_FW: "0.1.0", messages.H_CHANNELS: [RAIN, WATER]})
    d = decode.describe_frame(fr.encode(s, fr.HELLO, 17, 11, 100, h), keys, "k")
    assert d["hello"]["channels"] == ["rain.0", "water_level.0"]
    ack = gwmessages.encode_ack(11, 1767225600, [(5, 11), (1, 3)])
    d = decode.describe_frame(fr.encode(s, fr.ACK, 17, 3, 100, ack, flags=fr.F_PENDING), keys, "k")
    assert d["ack"] == {"re": 11, "gw_time": 1767225600, "ranges": [[5, 11], [1, 3]]}
    assert d["flags"] == ["pending"]


def test_capture_with_garbage_and_two_frames(registry, tmp_path, capsys):
    reg, keys = registry
    line = (b"\x13\x37garbage" + framing.wrap(readings_frame(keys[17], seq=1))
            + b"\x00\x05\x99\x00" + framing.wrap(readings_frame(keys[18], node=18, seq=2)))
    cap = tmp_path / "line.bin"
    cap.write_bytes(line)
    assert cli.main(["decode", "--capture", str(cap), "--registry", reg]) == 0
    out = capsys.readouterr().out
    assert "READINGS node 17 seq 1" in out and "READINGS node 18 seq 2" in out
    assert out.count("line garbage") == 2


def test_key_mismatch_says_gateway_rejects_and_how_to_fix(registry, capsys):
    reg, _ = registry
    other = bytes(range(1, 33))                 # the node was provisioned with another key
    raw = readings_frame(other)
    assert cli.main(["decode", raw.hex(), "--registry", reg]) == errors.KEY_MISMATCH
    err = capsys.readouterr().err
    assert "key mismatch" in err and "gateway rejects this node's frames" in err
    assert "stationctl provision --port PORT 17 --registry %s" % reg in err


def test_unknown_node_in_capture(registry, tmp_path, capsys):
    reg, _ = registry
    cap = tmp_path / "cap.bin"
    cap.write_bytes(framing.wrap(readings_frame(bytes(range(1, 33)), node=99)))
    assert cli.main(["decode", "--capture", str(cap), "--registry", reg]) == \
        errors.NODE_NOT_IN_REGISTRY
    assert "node 99 is not in the registry" in capsys.readouterr().err


def test_not_hex_and_not_a_frame(capsys):
    assert cli.main(["decode", "zz12"]) == errors.BAD_INPUT
    assert "is not hex" in capsys.readouterr().err
    assert cli.main(["decode", "0102"]) == errors.BAD_INPUT
    assert "not a valid frame: short" in capsys.readouterr().err


def _rows():
    # (id, node, seq, idx, chan, t, value, fault, flags) as gateway/batcher takes them
    return [(1, 17, 42, 0, WATER, 1767225000, 2950, None, 0),
            (2, 17, 42, 1, WATER, 1767225300, 3010, None, 0),
            (3, 17, 42, 3, RAIN, 1767225000, None, 1, 1)]


@pytest.mark.parametrize("schema", [2, 1])
def test_batch_from_gateway_batcher(tmp_path, capsys, schema):
    kw = dict(statuses=[NodeStatus(17, 1767225650, 3710)], counters={1: 0, 2: 0, 3: 2, 4: 1, 5: 0})
    payload = (batcher.encode_batch(7, 1767225700, _rows(), **kw) if schema == 2 else
               batcher.encode_batch_v1("lushi", "gw1", 7, 1767225700, _rows(), **kw))
    f = tmp_path / "b.cbor"
    f.write_bytes(payload)
    topic = ["--topic", "stations/lushi/gw1/data"] if schema == 2 else []
    assert cli.main(["decode", "--batch", str(f)] + topic) == 0
    out = capsys.readouterr().out
    assert "BATCH lushi/gw1 seq 7" in out and "3 readings" in out
    assert "2.950 m, 3.010 m" in out and "fault open_circuit" in out and "(approx times)" in out
    assert "frames_rejected=2" in out and "battery_mv=3710" in out
    d = decode.describe_uplink(payload)
    flat = sorted((n["node"], r["seq"], r["idx"] + k, c["chan"], r["t0"] + k * r["step"], v)
                  for n in d["nodes"] for c in n["channels"] for r in c["runs"]
                  for k, v in enumerate(r["values"]))
    _, ref = batcher.decode_batch_readings(payload)
    assert flat == sorted(x[:6] for x in ref)


def test_alarm_and_status_messages_from_stdin(monkeypatch, capsys):
    import io
    a = Alarm(17, 9, 0, 1, 4, 2, DISP, 5, 4, 1800, 3600, 1767225600, 1767225601000)
    for payload, expect in ((batcher.encode_alarm("lushi", "gw1", a),
                             "ALARM lushi/gw1 node 17 TRIP RED (was yellow) on displacement.0"),
                            (batcher.encode_status("lushi", "gw1", 1, 1767225600, "0.1.0",
                                                   {17: 1767225500}),
                             "STATUS lushi/gw1 ONLINE")):
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(payload)))
        assert cli.main(["decode", "--batch", "-"]) == 0
        assert expect in capsys.readouterr().out


def test_batch_not_cbor(tmp_path, capsys):
    f = tmp_path / "x"
    f.write_bytes(cbor2.dumps([1, 2]))
    assert cli.main(["decode", "--batch", str(f)]) == errors.BAD_INPUT
    assert "not an uplink message" in capsys.readouterr().err


def test_batch_that_breaks_the_cddl_names_the_path(tmp_path, capsys):
    m = cbor2.loads(batcher.encode_batch(7, 1767225700, _rows(),
                                         counters={1: 0, 2: 0, 3: 2, 4: 1, 5: 0}))
    m[5][0][1][0][6][0] = 256       # channel 256
    del m[7][4]                     # and a counter missing: the first failure is reported
    f = tmp_path / "b.cbor"
    f.write_bytes(cbor2.dumps(m))
    assert cli.main(["decode", "--batch", str(f)]) == errors.BAD_INPUT
    err = capsys.readouterr().err
    assert "breaks the uplink schema" in err and "/5/0/1/0/6" in err
