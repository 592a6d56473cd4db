"""Siren and strobe patterns per warning level, phase-locked and latched by level."""
from firmware.alarm_out import PATTERNS, AlarmOut
from protocol.levels import BLUE, NORMAL, ORANGE, RED, YELLOW


class Relay:
    def __init__(self):
        self.on_ = False
        self.switches = 0

    def on(self):
        self.switches += not self.on_
        self.on_ = True

    def off(self):
        self.switches += self.on_
        self.on_ = False


def timeline(out, siren, strobe, t0, t1, step=50):
    s = []
    for t in range(t0, t1, step):
        out.update(t)
        s.append((t, siren.on_, strobe.on_))
    return s


def test_outputs_off_at_normal_and_after_clear():
    siren, strobe = Relay(), Relay()
    out = AlarmOut(siren, strobe)
    assert not siren.on_ and not strobe.on_
    out.set_level(RED, 1000)
    assert siren.on_ and strobe.on_
    out.set_level(NORMAL, 5000)
    assert not siren.on_ and not strobe.on_
    assert out.next_change(5000) is None


def test_red_siren_is_steady_and_strobe_flashes_twice_a_second():
    siren, strobe = Relay(), Relay()
    out = AlarmOut(siren, strobe)
    out.set_level(RED, 10_000)
    tl = timeline(out, siren, strobe, 10_000, 20_000)
    assert all(s for _, s, _ in tl)
    on_ms = sum(50 for _, _, b in tl if b)
    assert on_ms == 10_000 * 200 // 500
    assert out.next_change(10_000) == 10_200


def test_orange_siren_is_intermittent_and_yellow_blue_are_silent():
    siren, strobe = Relay(), Relay()
    out = AlarmOut(siren, strobe)
    out.set_level(ORANGE, 0)
    tl = timeline(out, siren, strobe, 0, 8000)
    assert [s for t, s, _ in tl if t in (0, 1950, 2000, 3950, 4000)] == [True, True, False, False, True]
    for level in (YELLOW, BLUE):
        out.set_level(level, 100_000)
        tl = timeline(out, siren, strobe, 100_000, 120_000)
        assert not any(s for _, s, _ in tl)
        assert any(b for _, _, b in tl)


def test_pattern_is_a_function_of_level_and_time_only():
    a_siren, a_strobe, b_siren, b_strobe = Relay(), Relay(), Relay(), Relay()
    a, b = AlarmOut(a_siren, a_strobe), AlarmOut(b_siren, b_strobe)
    a.set_level(ORANGE, 777)
    b.set_level(ORANGE, 777)
    for t in range(777, 20_000, 333):
        a.update(t)
        assert a.state(t) == b.state(t)
    # setting the same level again does not restart the pattern (latched)
    assert not a.set_level(ORANGE, 5000) and a.set_at == 777


def test_missing_relays_are_allowed_and_every_level_has_a_pattern():
    out = AlarmOut(None, None)
    out.set_level(RED, 0)
    out.update(10)
    assert set(PATTERNS) == {NORMAL, BLUE, YELLOW, ORANGE, RED}


def test_private_level_numbers_agree_with_protocol_levels():
    """alarm_out compiles the level numbers in (so a node need not keep protocol.levels
    in its heap); they must be the wire's numbers."""
    from firmware import alarm_out
    assert (alarm_out._NORMAL, alarm_out._BLUE, alarm_out._YELLOW, alarm_out._ORANGE, alarm_out._RED) \
        == (NORMAL, BLUE, YELLOW, ORANGE, RED)
    assert sorted(PATTERNS) == [NORMAL, BLUE, YELLOW, ORANGE, RED]
