"""The simulated radio medium (hil/medium.py): airtime, collisions, half duplex, dead
zones, loss, and cutting a UART stream into packets."""
import pytest

from hil.medium import COLLISION, DEAD_ZONE, GATEWAY, HALF_DUPLEX, LOSS, OK, Medium, split_packets
from protocol.airtime import airtime_s
from protocol.framing import Deframer, wrap


def test_airtime_follows_the_lora_parameters():
    m = Medium(sf=9, bw_hz=125000, cr=1)
    assert m.airtime_of(40) == pytest.approx(0.288, abs=0.002)     # SF9/125k, 40 B: 288 ms
    assert Medium(sf=12).airtime_of(40) > 6 * m.airtime_of(40)
    tx = m.transmit(101, 10.0, bytes(40))
    assert tx.end - tx.start == pytest.approx(airtime_s(40, 9, 125000, 1))
    assert tx.arrive == pytest.approx(tx.end + m.delay_s)
    assert m.airtime[101] == pytest.approx(tx.end - tx.start)


def test_bad_radio_parameters_are_refused():
    with pytest.raises(ValueError, match="spreading factor"):
        Medium(sf=13)
    with pytest.raises(ValueError, match="loss"):
        Medium(loss=1.5)
    with pytest.raises(ValueError, match="dead zone"):
        Medium().add_dead_zone(101, 10, 5)


def test_overlapping_transmissions_destroy_each_other():
    m = Medium()
    a = m.transmit(101, 0.0, bytes(30))
    b = m.transmit(102, a.end - 0.01, bytes(30))      # starts before a ends
    c = m.transmit(103, b.end + 1.0, bytes(30))       # clear air
    assert m.outcome(a, GATEWAY) == COLLISION
    assert m.outcome(b, GATEWAY) == COLLISION
    assert m.outcome(c, GATEWAY) == OK
    assert m.counts[COLLISION] == 2 and m.counts[OK] == 1


def test_back_to_back_transmissions_do_not_collide():
    m = Medium()
    a = m.transmit(101, 0.0, bytes(30))
    b = m.transmit(102, a.end, bytes(30))
    assert m.outcome(a, GATEWAY) == OK and m.outcome(b, GATEWAY) == OK


def test_a_module_sends_back_to_back_packets_one_after_the_other():
    m = Medium()
    ack = m.transmit(GATEWAY, 5.0, bytes(20))
    cfg = m.transmit(GATEWAY, 5.0, bytes(60))          # handed over together (ACK + CONFIG)
    assert cfg.start == ack.end
    assert m.outcome(ack, 101) == OK and m.outcome(cfg, 101) == OK
    later = m.transmit(GATEWAY, cfg.end + 1.0, bytes(20))
    assert later.start == cfg.end + 1.0


def test_half_duplex_a_transmitting_module_hears_nothing():
    m = Medium()
    up = m.transmit(101, 0.0, bytes(30))
    ack = m.transmit(GATEWAY, 0.05, bytes(20))        # the gateway talks over the uplink
    assert m.outcome(up, GATEWAY) == HALF_DUPLEX
    assert m.outcome(ack, 101) == HALF_DUPLEX


def test_dead_zone_cuts_both_directions_only_inside_the_window():
    m = Medium()
    m.add_dead_zone(101, 100.0, 200.0)
    inside = m.transmit(101, 150.0, bytes(20))
    assert m.outcome(inside, GATEWAY) == DEAD_ZONE
    down = m.transmit(GATEWAY, 160.0, bytes(20))
    assert m.outcome(down, 101) == DEAD_ZONE
    assert m.outcome(down, 102) == OK                  # another node still hears it
    after = m.transmit(101, 200.5, bytes(20))
    assert m.outcome(after, GATEWAY) == OK
    assert m.in_dead_zone(101, 199.9) and not m.in_dead_zone(101, 200.0)


def test_loss_is_seeded_and_near_its_probability():
    def run(seed):
        m = Medium(loss=0.2, seed=seed)
        out = []
        for i in range(2000):
            tx = m.transmit(101, i * 10.0, bytes(20))
            out.append(m.outcome(tx, GATEWAY))
        return out
    a, b = run(7), run(7)
    assert a == b                                       # a run can be replayed
    lost = a.count(LOSS)
    assert 300 < lost < 500                             # 2000 * 0.2 = 400
    assert run(8) != a


def test_split_packets_cuts_frames_and_keeps_a_partial_one():
    f1, f2 = wrap(b"\x01" * 20), wrap(b"\x02" * 30)
    buf = bytearray(f1 + f2 + f1[:7])
    pkts = split_packets(buf)
    assert pkts == [f1, f2]
    buf.extend(f1[7:])
    assert split_packets(buf) == [f1]
    assert Deframer().feed(pkts[0] + pkts[1]) == [b"\x01" * 20, b"\x02" * 30]


def test_split_packets_turns_a_cut_write_into_a_packet_the_receiver_rejects():
    f = wrap(b"\x05" * 40)
    buf = bytearray(f[:15])            # a node lost power in the middle of a write
    assert split_packets(buf) == []
    buf.extend(wrap(b"\x06" * 10))
    garbage, good = split_packets(buf)
    items = Deframer().feed(garbage)
    assert items and all(isinstance(i, str) for i in items)
    assert Deframer().feed(good) == [b"\x06" * 10]
