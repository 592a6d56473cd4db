"""Ebyte E22/E32 driver against the fake module (tests/firmware/fake_ebyte.py), the
LoRa airtime arithmetic, and the loopback radio over a real pty."""
import os
import select

import pytest
from fake_ebyte import Air, FakeEbyte
from hypothesis import given
from hypothesis import strategies as st

from firmware import halsetup
from firmware.hal import Hal
from firmware.radio import ebyte, ebyte_config
from firmware.radio.ebyte import EbyteRadio
from firmware.radio.loopback import LoopbackRadio
from firmware.radio.radio import lora_airtime_ms


class Station:
    """One MCU + module: its own fake pins and UART, sharing the test's clock and air."""

    def __init__(self, fake_machine, clock, air, model, uart_id, base_pin, **kw):
        self.hal = Hal(machine=fake_machine, clock=clock)
        m0 = halsetup.pin_out(self.hal, base_pin, 0)
        m1 = halsetup.pin_out(self.hal, base_pin + 1, 0)
        aux = halsetup.pin_in(self.hal, base_pin + 2)
        uart = halsetup.uart(self.hal, uart_id, kw.get("baudrate", 9600))
        self.module = FakeEbyte(model, uart, m0, m1, aux, clock, air)
        self.radio = EbyteRadio(uart, m0, m1, aux, self.hal, model=model, **kw)
        self.uart = uart


@pytest.fixture
def air(clock):
    return Air(clock)


def station(fake_machine, clock, air, model="e22", n=0, **kw):
    return Station(fake_machine, clock, air, model, uart_id=n + 1, base_pin=10 * n + 10, **kw)


def test_e32_reads_factory_config_and_version(fake_machine, clock, air):
    s = station(fake_machine, clock, air, "e32")
    cfg = ebyte_config.read_config(s.radio)
    assert cfg["addr"] == 0 and cfg["chan"] == 0x17 and cfg["uart_baud"] == 9600
    assert cfg["air_rate"] == 2400 and cfg["fixed"] is False and cfg["fec"] is True
    assert cfg["sub_packet"] == 58
    assert ebyte_config.read_version(s.radio) == b"\xc3\x32\x48\x14"
    assert s.module.mode() == "normal" and s.radio.mode == ebyte.NORMAL


def test_e32_write_config_saves_the_six_byte_block(fake_machine, clock, air):
    s = station(fake_machine, clock, air, "e32")
    assert ebyte_config.write_config(s.radio, {"addr": 0x1234, "chan": 6, "air_rate": 4800, "fixed": True,
                                 "power": 2})
    # C0 | ADDH ADDL | SPED 00 011 011 | CHAN | OPTION 1 1 000 1 10
    assert s.module.saved == bytes([0xC0, 0x12, 0x34, 0x1B, 0x06, 0xC6])
    assert ebyte_config.read_config(s.radio)["addr"] == 0x1234


def test_e22_write_config_registers_and_read_back(fake_machine, clock, air):
    s = station(fake_machine, clock, air, "e22")
    assert ebyte_config.write_config(s.radio, {"addr": 0x0102, "netid": 7, "air_rate": 9600, "sub_packet": 64,
                                 "chan": 65, "fixed": True, "rssi_byte": True, "lbt": True})
    # ADDH ADDL NETID REG0(011 00 100) REG1(10 0 000 00) CH REG3(1 1 0 1 0 011)
    assert s.module.saved == bytes([0x01, 0x02, 0x07, 0x64, 0x80, 65, 0xD3])
    cfg = ebyte_config.read_config(s.radio)
    assert cfg["sub_packet"] == 64 and cfg["fixed"] and cfg["rssi_byte"] and cfg["lbt"]
    assert s.module.mode() == "normal"


@pytest.mark.parametrize("model", ["e22", "e32"])
def test_apply_keeps_other_settings_and_writes_only_when_needed(fake_machine, clock, air, model):
    s = station(fake_machine, clock, air, model, fixed=True, air_rate=4800)
    assert ebyte_config.write_config(s.radio, {"addr": 0x0042, "chan": 9})
    writes = s.module.config_writes
    assert ebyte_config.apply(s.radio)
    cfg = ebyte_config.read_config(s.radio)
    assert cfg["addr"] == 0x0042 and cfg["chan"] == 9      # kept
    assert cfg["fixed"] is True and cfg["air_rate"] == 4800  # made to agree with the driver
    assert s.module.config_writes == writes + 1
    assert ebyte_config.apply(s.radio)                                   # next boot: nothing to change
    assert s.module.config_writes == writes + 1


def test_config_runs_at_9600_whatever_the_data_baud(fake_machine, clock, air):
    s = station(fake_machine, clock, air, "e22", baudrate=115200)
    s.module.e22[3] = (7 << 5) | 2  # the module's stored data baud is 115200
    assert ebyte_config.read_config(s.radio)["uart_baud"] == 115200
    assert not s.module.ignored
    assert s.uart.baudrate == 115200  # back to the data baud afterwards


def test_bad_config_values_name_key_and_allowed():
    with pytest.raises(ValueError, match="'air_rate': 5000 not allowed: use one of 300, 1200"):
        ebyte_config.e22_encode({"air_rate": 5000})
    with pytest.raises(ValueError, match="'sub_packet'"):
        ebyte_config.e22_encode({"sub_packet": 100})
    with pytest.raises(ValueError, match="'chan'"):
        ebyte_config.e32_encode({"chan": 300})


def test_silent_module_gives_none_not_a_guess(fake_machine, clock, air):
    s = station(fake_machine, clock, air, "e22")
    s.uart.on_write = None  # module unplugged: nothing answers
    assert ebyte_config.read_config(s.radio) is None
    assert ebyte_config.write_config(s.radio, {"chan": 1}) is False


def test_transparent_packet_arrives_whole(fake_machine, clock, air):
    a = station(fake_machine, clock, air, "e22", 0)
    b = station(fake_machine, clock, air, "e22", 1)
    payload = bytes(range(200))
    assert a.radio.send(payload)
    got = air.run(1500, [b.radio])
    assert got == [(b.radio, payload)]


@pytest.mark.parametrize("model, sub, fixed, ok_len", [
    ("e22", 240, False, 240), ("e22", 64, False, 64), ("e22", 64, True, 61),
    ("e32", 58, False, 58), ("e32", 58, True, 55),
])
def test_writes_above_the_sub_packet_are_refused(fake_machine, clock, air, model, sub, fixed, ok_len):
    a = station(fake_machine, clock, air, model, 0, sub_packet=sub, fixed=fixed, dest=(0, 0x17))
    ebyte_config.apply(a.radio)
    assert a.module.sub_packet() == sub and a.module.fixed() == fixed
    assert a.radio.max_payload == ok_len
    assert not a.radio.send(bytes(ok_len + 1))
    assert a.radio.refused == 1 and air.packets == []
    assert a.radio.send(bytes(ok_len))
    assert len(air.packets) == 1  # one radio packet, never split


def test_send_waits_for_aux_before_writing(fake_machine, clock, air):
    a = station(fake_machine, clock, air, "e22", 0)
    b = station(fake_machine, clock, air, "e22", 1)
    t0 = clock.us
    assert a.radio.send(b"first packet")
    assert a.radio.busy()
    assert a.radio.send(b"second packet")  # blocks until AUX rises, on the fake clock
    assert a.module.written_while_busy == 0
    assert clock.us - t0 >= (12 + 24) * 8 * 1000000 // 2400
    got = [p for _, p in air.run(2000, [b.radio])]
    assert got == [b"first packet", b"second packet"]


def test_aux_stuck_low_gives_up_without_writing(fake_machine, clock, air):
    a = station(fake_machine, clock, air, "e22", 0, aux_timeout_ms=300)
    a.radio.wake()
    a.module.hung = True
    t0 = clock.us
    assert a.radio.send(b"x") is False
    assert a.radio.aux_timeouts == 1 and air.packets == []
    assert 300000 <= clock.us - t0 < 400000


def test_fixed_mode_prefix_reaches_only_the_addressed_module(fake_machine, clock, air):
    a = station(fake_machine, clock, air, "e22", 0, fixed=True, dest=(0x0002, 0x17))
    b = station(fake_machine, clock, air, "e22", 1)
    c = station(fake_machine, clock, air, "e22", 2)
    ebyte_config.apply(a.radio)
    ebyte_config.write_config(b.radio, {"addr": 0x0002})
    ebyte_config.write_config(c.radio, {"addr": 0x0003})
    a.uart.take_tx()
    assert a.radio.send(b"to-b")
    assert a.uart.take_tx() == b"\x00\x02\x17to-b"
    got = air.run(1000, [b.radio, c.radio])
    assert got == [(b.radio, b"to-b")]  # payload only; C did not hear it
    assert a.radio.send(b"all", dest=(0xFFFF, 0x17))
    got = air.run(1000, [b.radio, c.radio])
    assert sorted(r is b.radio for r, _ in got) == [False, True]


def test_rssi_byte_is_stripped_and_kept(fake_machine, clock, air):
    a = station(fake_machine, clock, air, "e22", 0)
    b = station(fake_machine, clock, air, "e22", 1, rssi_byte=True)
    ebyte_config.apply(b.radio)
    a.radio.send(b"hello")
    assert air.run(1000, [b.radio]) == [(b.radio, b"hello")]
    assert b.radio.last_rssi == 0xB0 - 256


def test_sleep_sets_pins_and_stops_reception(fake_machine, clock, air):
    a = station(fake_machine, clock, air, "e22", 0)
    b = station(fake_machine, clock, air, "e22", 1)
    assert b.radio.sleep()
    assert b.module.mode() == "sleep"
    a.radio.send(b"lost")
    assert air.run(1000, [b.radio]) == []
    assert b.radio.wake() and b.module.mode() == "normal"
    a.radio.send(b"heard")
    assert air.run(1000, [b.radio]) == [(b.radio, b"heard")]


@pytest.mark.parametrize("n, sf, ms", [(10, 7, 41), (40, 9, 288), (64, 10, 698), (40, 11, 1069),
                                       (10, 12, 991), (64, 12, 2794)])
def test_lora_airtime_matches_an1200(n, sf, ms):
    assert abs(lora_airtime_ms(n, sf) - ms) < 1  # the NOTES table rounds to whole ms


def test_airtime_estimate_from_air_rate(fake_machine, clock, air):
    s = station(fake_machine, clock, air, "e22", 0)
    assert s.radio.airtime_ms(40) == 214  # 64 byte-times at 2.4 kbps
    assert s.radio.airtime_ms(10) < s.radio.airtime_ms(40)
    exact = station(fake_machine, clock, air, "e22", 1, lora=(9, 125000))
    assert exact.radio.airtime_ms(40) == 288


def test_loopback_radio_over_a_real_pty(fake_machine, clock, pty_pair):
    master, slave_path = pty_pair
    fake_machine.attach(1, slave_path)
    hal = Hal(machine=fake_machine, clock=clock)
    r = LoopbackRadio(halsetup.uart(hal, 1, 9600), hal, max_payload=64)
    assert r.send(b"\x01\x02frame")
    select.select([master], [], [], 2)
    assert os.read(master, 100) == b"\x01\x02frame"
    assert not r.send(bytes(65)) and r.refused == 1
    os.write(master, b"reply")
    deadline = 200
    pkt = None
    while pkt is None and deadline:
        pkt = r.poll()
        clock.advance_ms(1)
        deadline -= 1
    assert pkt == b"reply"
    r.sleep()
    os.write(master, b"ignored")
    assert r.poll() is None and not r.send(b"x")


E22_CONFIGS = st.fixed_dictionaries({
    "addr": st.integers(0, 0xFFFF), "netid": st.integers(0, 255),
    "uart_baud": st.sampled_from(ebyte_config.UART_BAUDS), "parity": st.sampled_from(ebyte_config.PARITIES),
    "air_rate": st.sampled_from(ebyte_config.E22_AIR_RATES),
    "sub_packet": st.sampled_from(ebyte_config.E22_SUB_PACKETS), "rssi_noise": st.booleans(),
    "power": st.integers(0, 3), "chan": st.integers(0, 83), "rssi_byte": st.booleans(),
    "fixed": st.booleans(), "repeater": st.booleans(), "lbt": st.booleans(), "wor_tx": st.booleans(),
    "wor_ms": st.sampled_from([500 * i for i in range(1, 9)])})
E32_CONFIGS = st.fixed_dictionaries({
    "addr": st.integers(0, 0xFFFF), "chan": st.integers(0, 255),
    "uart_baud": st.sampled_from(ebyte_config.UART_BAUDS), "parity": st.sampled_from(ebyte_config.PARITIES),
    "air_rate": st.sampled_from(ebyte_config.E32_AIR_RATES), "fixed": st.booleans(),
    "push_pull": st.booleans(), "wor_ms": st.sampled_from([250 * i for i in range(1, 9)]),
    "fec": st.booleans(), "power": st.integers(0, 3)})


@given(E22_CONFIGS)
def test_e22_registers_round_trip(cfg):
    regs = ebyte_config.e22_encode(cfg)
    assert ebyte_config.e22_decode(regs) == cfg
    # and the fake module, written from the manual, reads the same fields out of them
    assert regs[5] == cfg["chan"] and ((regs[0] << 8) | regs[1]) == cfg["addr"]
    assert [240, 128, 64, 32][regs[4] >> 6] == cfg["sub_packet"] and bool(regs[6] & 0x40) == cfg["fixed"]


@given(E32_CONFIGS)
def test_e32_block_round_trip(cfg):
    block = ebyte_config.e32_encode(cfg)
    decoded = ebyte_config.e32_decode(block)
    assert decoded.pop("sub_packet") == 58
    assert decoded == cfg


def test_packet_completes_after_a_long_silence(fake_machine, clock):
    from firmware.radio.radio import GapPacketizer
    hal = Hal(machine=fake_machine, clock=clock)
    uart = halsetup.uart(hal, 9, 9600)
    p = GapPacketizer(uart, hal, gap_ms=10)
    uart.feed(b"abc")
    assert p.poll() is None
    clock.advance_ms(7 * 24 * 3600 * 1000)  # a week without a poll: ticks_ms wrapped
    assert p.poll() == b"abc"
