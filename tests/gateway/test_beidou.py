"""The BeiDou fallback (gateway/beidou.py): RDSS 2.1 sentences, the terminal's
conversation, which alarms go and in what order, and the whole path through a real pty
to the simulated terminal (hil/bdterminal.py) on a stepped clock."""
import os
import secrets
import time

import pytest
import serial

from gateway import beidou as bd
from gateway import config as gconfig
from gateway.config_beidou import Beidou
from gateway.records import Alarm
from hil.bdterminal import SimTerminal
from protocol import bdmsg

KEY = bytes(range(9, 41))
T0 = 1_784_246_400.0





def test_checksums_match_published_examples():
    # examples from the RDSS 2.1 quick-start (docs/beidou.md [R1])
    assert bd.sentence("CCICA", 0, "00") == b"$CCICA,0,00*7B\r\n"
    name, f = bd.parse(b"$BDICI,0242286,00242286,0000011,6,60,3,N,0*38")
    assert name == "BDICI" and f[0] == "0242286" and f[4] == "60"


def test_splitter_resyncs_after_garbage_and_names_bad_sentences():
    s = bd.Splitter()
    out = s.feed(b"\xff\xfejunk\r\n$CCICA,0,00*7C\r\nno")
    out += s.feed(b"ise$BDICI,0242286,00242286,0000011,6,60,3,N,0*38\r\n")
    assert out[0] == "garbage"
    assert out[1].startswith("bad sentence: checksum")
    assert out[2] == ("BDICI", ["0242286", "00242286", "0000011", "6", "60", "3", "N", "0"])


def test_terminal_learns_the_card_then_sends_and_is_confirmed():
    t = bd.Terminal("0111111", confirm_timeout_s=10)
    assert t.start(0) == b"$CCICA,0,00*7B\r\n"
    assert not t.ready(0)
    ev = t.feed(bd.sentence("BDICI", "0242286", "00242286", "0000011", 6, 60, 3, "N", 0), 1)
    assert ev == [(bd.CARD, "0242286", 60)]
    line = t.send(b"\xb1\x00", 7, 1)
    assert line.startswith(b"$CCTXA,0111111,1,1,B100*")
    assert not t.ready(2)                       # one in flight
    assert t.feed(bd.sentence("BDFKI", "TXA", "Y", "Y", 0, 0), 2) == [(bd.CONFIRMED, 7)]
    assert not t.ready(30) and t.ready(61)      # the card's interval


def test_terminal_honours_wait_and_times_out_silence():
    t = bd.Terminal("0111111", confirm_timeout_s=10)
    t.feed(bd.sentence("BDICI", "0242286", "00242286", "0000011", 6, 60, 3, "N", 0), 0)
    t.send(b"\x01", 1, 0)
    ev = t.feed(bd.sentence("BDFKI", "TXA", "N", "N", 0, 95), 1)
    assert ev[0][0] == bd.FAILED and "too early" in ev[0][2]
    assert not t.ready(90) and t.ready(96)
    t.send(b"\x01", 2, 96)
    assert t.poll(100) == []
    assert t.poll(106)[0][:2] == (bd.FAILED, 2)


def _alarm(node, seq, level, t, rx=None, event=1):
    return Alarm(node, seq, 0, event, level, 0, 0x10, 3, 2, 900, 800, int(t),
                 int((rx if rx is not None else t) * 1000))


def test_fallback_waits_for_puback_time_then_orders_red_first_newest_first():
    fb = bd.Fallback(after_s=20)
    pend = [(1, _alarm(101, 10, 2, T0)), (2, _alarm(102, 11, 4, T0 + 1)),
            (3, _alarm(103, 12, 4, T0 + 5)), (4, _alarm(104, 13, 0, T0 + 6, event=3))]
    assert fb.update(T0 + 10, pend, uplink_up=True) == []          # MQTT may still ack them
    assert len(fb.update(T0 + 30, pend, uplink_up=True)) == 4
    order = [a.key()[0] for a in fb.queue.ordered()]
    assert order == [103, 102, 101, 104]                             # red newest, red, yellow, clear
    alarms, more = fb.take(bdmsg.BDS2_MAX, T0 + 30)
    assert [a.node for a in alarms][:2] == [103, 102] and len(alarms) >= 3
    fb.failed(alarms)                                                # back in the queue
    alarms, _ = fb.take(bdmsg.BDS2_MAX, T0 + 100)
    fb.confirmed_sent(alarms)
    assert all(a.key() not in fb.queue.items for a in alarms)
    assert fb.update(T0 + 200, pend, uplink_up=True) == []           # confirmed: not again


def test_fallback_sends_at_once_while_the_uplink_is_down_and_drops_pubacked():
    fb = bd.Fallback(after_s=20)
    pend = [(1, _alarm(101, 10, 4, T0))]
    assert fb.update(T0 + 1, pend, uplink_up=False) == [(101, 10, 0)]
    fb.update(T0 + 2, [], uplink_up=True)                            # the broker took it
    assert len(fb.queue) == 0


class FakeStore:
    def __init__(self):
        self.pending = []

    def pending_alarms(self):
        return list(self.pending)


def settings(**over):
    d = dict(port="pty", baudrate=115200, dest="0111111", card="bds2", max_bytes=78,
             gateway_number=7, key_file="k", key=KEY, fallback_after_s=20.0,
             confirm_timeout_s=10.0, min_interval_s=0.0)
    d.update(over)
    return Beidou(**d)


@pytest.fixture
def pty_pair():
    master, slave = os.openpty()
    ser = serial.Serial(os.ttyname(slave), 115200, timeout=0)
    yield master, ser
    ser.close()
    os.close(slave)
    os.close(master)


def _readable(fd):
    import select
    return bool(select.select([fd], [], [], 0.002)[0])


def test_red_goes_through_the_simulated_terminal_within_interval_plus_60s(pty_pair):
    master, ser = pty_pair
    clock = [T0]
    got = []
    term = SimTerminal(master, lambda: clock[0], interval_s=60, feedback_s=2, deliver_s=5,
                       on_message=lambda card, dest, p, t: got.append((t, bdmsg.decode(p, KEY))))
    term.fail_next = 1                                   # the first try fails: resent
    store = FakeStore()
    up = [False]                                         # the uplink is down
    # a routine yellow first, then the red 10 s later: the red leads its message
    store.pending = [(1, _alarm(101, 50, 2, T0 + 5))]
    # Simulated time moves on only once each side's bytes have crossed the pty (counted,
    # not a 2 ms select: a loaded kernel can take longer, and the clock would run ahead)
    sent = [0, 0]                                        # bytes the service wrote, read
    real_write = ser.write

    def counted_write(b):
        sent[0] += len(b)
        return real_write(b)
    ser.write = counted_write
    svc = bd.BeidouService(settings(), ser, store, lambda: up[0], lambda: clock[0], key=KEY)
    svc._write(svc.terminal.start(clock[0]))
    red_at = T0 + 15
    while clock[0] < T0 + 400:
        if clock[0] >= red_at and len(store.pending) == 1:
            store.pending.append((2, _alarm(102, 60, 4, red_at)))
        svc.step()
        deadline = time.monotonic() + 60
        while sent[1] < sent[0] and time.monotonic() < deadline:
            if _readable(master):
                data = os.read(master, 65536)
                sent[1] += len(data)
                term.handle(data)
        due = sum(len(a[0]) for t, kind, a in term.timers if kind == "write" and t <= clock[0])
        waiting = ser.in_waiting
        term.tick()
        while ser.in_waiting < waiting + due and time.monotonic() < deadline:
            time.sleep(0.0005)
        clock[0] += 0.5
    reds = [(t, m) for t, m in got if any(a.level == 4 for a in m["alarms"])]
    assert reds, term.log
    print("red via BeiDou after %.1f s" % (reds[0][0] - red_at))
    assert reds[0][0] - red_at <= 60 + 60                 # card interval + 60 s
    keys = [a.key() for _, m in got for a in m["alarms"]]
    assert sorted(set(keys)) == [(101, 50, 0), (102, 60, 0)]   # each confirmed, none lost
    assert any(w == "failed" for _, w in term.log)               # the failure was retried
    assert not any("interval" in w for _, w in term.log)         # never sent too early
    assert svc.stats()["queued"] == 0


def test_config_section_is_checked_with_the_rest(tmp_path, site_base):
    BASE, write_keys = site_base
    write_keys(tmp_path)
    kf = tmp_path / "beidou.key"
    kf.write_text(secrets.token_hex(32))
    os.chmod(kf, 0o600)
    good = BASE + '\n[beidou]\nport = "/dev/ttyUSB1"\ndest = "0242286"\ngateway_number = 3\nkey_file = "beidou.key"\n'
    (tmp_path / "site.toml").write_text(good)
    cfg = gconfig.load(str(tmp_path / "site.toml"))
    assert cfg.beidou.max_bytes == 78 and cfg.beidou.dest == "0242286"
    assert "key" not in repr(cfg.beidou).replace("key_file", "")
    bad = good.replace('dest = "0242286"', 'dest = 242286').replace('gateway_number = 3', 'gateway_number = 0') \
        + 'card = "bds9"\n'
    (tmp_path / "site.toml").write_text(bad)
    with pytest.raises(gconfig.ConfigError) as e:
        gconfig.load(str(tmp_path / "site.toml"))
    text = str(e.value)
    for k in ("beidou.dest", "beidou.gateway_number", "beidou.card"):
        assert k in text
    os.chmod(kf, 0o644)
    (tmp_path / "site.toml").write_text(good)
    with pytest.raises(gconfig.ConfigError, match="chmod 600"):
        gconfig.load(str(tmp_path / "site.toml"))
