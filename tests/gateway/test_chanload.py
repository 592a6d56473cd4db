"""The gateway's channel load and its F_CONGESTED hint in ACKs (SPEC.md 6.5)."""
import pytest

from gateway.chanload import ChannelLoad, ebyte_airtime
from gateway.radio import RadioIngest
from protocol import frame as fr
from protocol import framing
from protocol.mic import Hmac

KEY = bytes(range(7, 39))


def test_hint_turns_on_at_high_and_off_below_low():
    load = ChannelLoad(lambda n: 1.0, window_s=60, high=0.15, low=0.075)
    for i in range(8):                   # 8 s of air in a minute: 13 %
        load.heard(float(i), 40)
    assert not load.congested(8.0)
    load.heard(9.0, 40)                  # 9 s: 15 %
    assert load.congested(9.0)
    assert load.congested(30.0)          # still 15 %: stays on
    assert load.congested(63.0)          # 5 s left in the window (8.3 %): hysteresis holds it
    assert not load.congested(65.0)      # 3 s (5 %): off
    assert load.occupancy(200.0) == 0.0


def test_bad_thresholds_are_refused():
    with pytest.raises(ValueError, match="low"):
        ChannelLoad(lambda n: 1.0, high=0.05, low=0.1)


def test_ebyte_airtime_grows_with_bytes_and_falls_with_rate():
    a = ebyte_airtime(2400)
    assert a(200) > a(40) > 0
    assert ebyte_airtime(9600)(200) < a(200)


def _frame(node, seq):
    return framing.wrap(fr.encode(Hmac(KEY), fr.READINGS, node, seq, 1000, b"\x08\x02\x05\x04", 0))


def test_acks_carry_congested_while_the_channel_is_busy():
    load = ChannelLoad(ebyte_airtime(2400), window_s=60, high=0.15, low=0.075)
    ing = RadioIngest({101: KEY}, chanload=load)
    flags = []
    for i in range(40):                   # 40 frames + acks in 40 s: far over 15 %
        ing.feed(_frame(101, i + 1), 1000.0 + i)
        g = ing.take_group()
        for b in ing.committed(g, 1000.0 + i):
            f = fr.decode(framing.Deframer().feed(b)[0], lambda n: Hmac(KEY), fr.DOWNLINK_TYPES)
            flags.append(f.flags)
    assert not flags[0] & fr.F_CONGESTED
    assert flags[-1] & fr.F_CONGESTED
    # a quiet channel: the hint goes away
    ing.feed(_frame(101, 100), 2000.0)
    g = ing.take_group()
    b = ing.committed(g, 2000.0)[0]
    f = fr.decode(framing.Deframer().feed(b)[0], lambda n: Hmac(KEY), fr.DOWNLINK_TYPES)
    assert not f.flags & fr.F_CONGESTED
