"""The BeiDou alarm message (protocol/bdmsg.py, SPEC.md 12)."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import bdmsg
from protocol.bdmsg import BdAlarm

KEY = bytes(range(40, 72))
T = 1_784_246_400


def alarm(node=101, seq=5000, index=0, level=4, t=T - 30, value=1234, thr=1000, event=1):
    return BdAlarm(node, seq, index, event, level, 0, 0x10, 7, 2, value, thr, t)


def test_round_trip_keeps_every_field_and_the_dedup_key():
    a = [alarm(), alarm(102, 77, 1, 3, T - 500, -5, 200, 2)]
    m = bdmsg.encode(KEY, 9, 3, T, a, more=True)
    d = bdmsg.decode(m, KEY)
    assert d["gateway"] == 9 and d["seq"] == 3 and d["time"] == T and d["more"]
    assert [x.as_dict() for x in d["alarms"]] == [x.as_dict() for x in a]
    assert d["alarms"][1].key() == (102, 77, 1)


def test_bds2_message_carries_at_least_three_typical_alarms():
    a = [alarm(100 + i, 100000 + i, 0, 4, T - 60 * i) for i in range(10)]
    n = bdmsg.fit(a, T, bdmsg.BDS2_MAX)
    assert n >= 3
    assert len(bdmsg.encode(KEY, 1, 1, T, a[:n])) <= bdmsg.BDS2_MAX
    assert len(bdmsg.encode(KEY, 1, 1, T, a[:n + 1])) > bdmsg.BDS2_MAX


def test_worst_case_alarm_fits_a_bds2_message_alone():
    a = BdAlarm(65535, 0xFFFFFFFF, 255, 3, 4, 4, 255, 255, 255, -2 ** 31, 2 ** 31 - 1, 0)
    m = bdmsg.encode(KEY, 65535, 65535, 0xFFFFFFFF, [a])
    assert len(m) <= bdmsg.HEADER + bdmsg.MIC_LEN + bdmsg.ALARM_MAX <= bdmsg.BDS2_MAX


def test_forged_or_damaged_message_is_refused_with_a_reason():
    m = bytearray(bdmsg.encode(KEY, 1, 1, T, [alarm()]))
    with pytest.raises(bdmsg.BdMsgError, match="MIC"):
        bdmsg.decode(m, bytes(range(1, 33)))
    m[12] ^= 1
    with pytest.raises(bdmsg.BdMsgError, match="MIC"):
        bdmsg.decode(m, KEY)
    with pytest.raises(bdmsg.BdMsgError, match="too short"):
        bdmsg.decode(m[:12], KEY)
    with pytest.raises(bdmsg.BdMsgError, match="not a BeiDou"):
        bdmsg.decode(b"\x00" + bytes(m[1:]))


def test_out_of_range_alarm_is_not_encoded():
    with pytest.raises(bdmsg.BdMsgError):
        bdmsg.encode(KEY, 1, 1, T, [alarm(level=7)])
    with pytest.raises(bdmsg.BdMsgError):
        bdmsg.encode(KEY, 0, 1, T, [alarm()])


@given(st.binary(max_size=120))
def test_garbage_never_crashes_the_decoder(data):
    try:
        bdmsg.decode(data)
    except bdmsg.BdMsgError:
        pass


@given(st.lists(st.tuples(st.integers(1, 65535), st.integers(0, 2 ** 32 - 1), st.integers(0, 255),
                          st.integers(1, 4), st.integers(0, 4), st.integers(-2 ** 31, 2 ** 31 - 1),
                          st.integers(0, 10 ** 6)), min_size=1, max_size=5))
def test_round_trip_property(rows):
    a = [BdAlarm(n, s, i, e, lv, 0, 8, 1, 3, v, v // 2, T - age) for n, s, i, e, lv, v, age in rows]
    d = bdmsg.decode(bdmsg.encode(KEY, 4, 2, T, a), KEY)
    assert [x.as_dict() for x in d["alarms"]] == [x.as_dict() for x in a]


def test_blind_alarm_travels_as_event_code_zero():
    """Event 4 (a channel that went blind while alarmed) does not fit the 2-bit field;
    SPEC 12 carries it as code 0, and a decoder reads it back as 4."""
    a = BdAlarm(101, 900, 2, 4, 3, 3, 0x10, 7, 5, 1, 0, T - 10)
    m = bdmsg.encode(KEY, 9, 3, T, [a, alarm()])
    elp = m[bdmsg.HEADER + 2 + 2 + 1]           # node u16, seq 900 = 2-byte uvarint, index
    assert elp >> 6 == 0 and (elp >> 3) & 7 == 3 and elp & 7 == 3
    d = bdmsg.decode(m, KEY)
    assert [x.as_dict() for x in d["alarms"]] == [a.as_dict(), alarm().as_dict()]
