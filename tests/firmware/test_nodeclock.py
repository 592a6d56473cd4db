"""The node's time base: ages stay exact across clock corrections."""
from firmware.nodeclock import BASE_BOOT, BASE_UNIX, NodeClock


def test_age_of_a_record_stamped_before_a_clock_correction_is_exact():
    c = NodeClock(boot=1)
    c.sync(0, 1000)
    base, boot, t_ref = c.stamp(100)          # taken at mono 100
    assert base == BASE_UNIX
    c.sync(200, 1203)                          # the gateway says we were 3 s slow
    assert c.elapsed(base, boot, t_ref, 250) == (150, False)
    later = c.stamp(300)
    assert c.elapsed(*later, 310) == (10, False)


def test_small_jitter_does_not_move_the_offset():
    c = NodeClock(boot=1)
    c.sync(0, 1000)
    c.sync(100, 1101)
    assert c.offset == 1000 and c.corrections == []


def test_unsynced_records_of_an_earlier_boot_are_approximate():
    c = NodeClock(boot=2)
    c.saw_record(BASE_BOOT, 1, 500)
    assert c.elapsed(BASE_BOOT, 1, 400, 30) == (130, True)
    assert c.elapsed(BASE_BOOT, 2, 10, 30) == (20, False)
    assert c.elapsed(BASE_UNIX, 1, 1000, 30) is None   # no clock yet: wait for a sync


def test_header_time_flags_the_frame_clock_synced_once_synced():
    from protocol.frame import F_CLOCK_SYNCED
    c = NodeClock(boot=1)
    assert c.header_time(5.5) == (5, 0)               # seconds since boot, no flag
    c.sync(10, 1780000000)
    assert c.header_time(12.5) == (1780000002, F_CLOCK_SYNCED)
