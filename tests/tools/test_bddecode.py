"""`stationctl decode --beidou`: a BeiDou alarm message as hex or as the $BDTXR sentence
the county's command terminal prints, MIC checked with the gateway's BeiDou key."""
import json

from gateway.beidou import sentence
from protocol import bdmsg
from protocol.bdmsg import BdAlarm
from tools import cli, errors

KEY = bytes(range(50, 82))
T = 1_784_246_400


def message():
    a = [BdAlarm(101, 4242, 0, 1, 4, 3, 0x10, 7, 2, 1234, 1000, T - 20),
         BdAlarm(102, 17, 1, 3, 0, 2, 0x08, 1, 3, 40, 300, T - 300)]
    return bdmsg.encode(KEY, 12, 5, T, a, more=True)


def test_hex_with_key_in_words(tmp_path, capsys):
    kf = tmp_path / "bd.key"
    kf.write_text(KEY.hex())
    assert cli.main(["decode", "--beidou", message().hex(), "--beidou-key", str(kf)]) == 0
    out = capsys.readouterr().out
    assert "gateway 12, seq 5" in out and "MIC verified" in out and "more queued" in out
    assert "node 101 seq 4242 #0  trip RED (was orange)" in out
    assert "node 102 seq 17 #1  clear NORMAL" in out


def test_txr_sentence_as_json_without_key(capsys):
    line = sentence("BDTXR", 1, "0242286", 1, "", message().hex().upper()).decode().strip()
    assert cli.main(["decode", "--beidou", line, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["mic_checked"] is False
    assert [a["node"] for a in d["alarms"]] == [101, 102]
    assert d["alarms"][0]["t"] == T - 20


def test_wrong_key_and_garbage_get_clear_errors(tmp_path, capsys):
    kf = tmp_path / "bd.key"
    kf.write_text(bytes(range(1, 33)).hex())
    assert cli.main(["decode", "--beidou", message().hex(), "--beidou-key", str(kf)]) == errors.KEY_MISMATCH
    assert "MIC" in capsys.readouterr().err
    assert cli.main(["decode", "--beidou", "zz"]) == errors.BAD_INPUT
    assert "neither hex" in capsys.readouterr().err


def test_zone_downlink_frame_in_words(capsys):
    """A ZONE downlink (SPEC 3.5) with its payload and the downlink flags named."""
    import struct

    from protocol import frame as fr
    from protocol.mic import Hmac
    raw = fr.encode(Hmac(KEY), fr.ZONE, 101, 3, 1_780_000_000, struct.pack(">IBB", 41, 3, 2),
                    fr.F_CONGESTED)
    assert cli.main(["decode", raw.hex()]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ZONE node 101 seq 3") and "flags congested" in out
    assert "re=41, level=orange, zone=2" in out
