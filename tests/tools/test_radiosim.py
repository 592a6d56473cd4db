"""The simulated E22 of `stationctl standin --radio` against the node's real driver
configuration code (firmware/radio/ebyte_config.py builds the commands)."""
from tools.radiosim import E22_FACTORY, E22Sim


def test_config_read_write_and_reply_as_the_manual_gives():
    m = E22Sim()
    assert m.from_node(b"\xC1\x00\x07") == (b"\xC1\x00\x07" + E22_FACTORY, None)
    regs = bytes([0x00, 0x11, 0x00, 0x62, 0x00, 0x12, 0xC3])      # RSSI byte + fixed mode
    assert m.from_node(b"\xC0\x00\x07" + regs) == (b"\xC1\x00\x07" + regs, None)
    assert m.from_node(b"\xC1\x05\x01") == (b"\xC1\x05\x01\x12", None)
    # in fixed mode the 3-byte ADDH ADDL CHAN prefix does not go on air
    assert m.from_node(b"\x00\x00\x12\x00\x05abc") == (b"", b"\x00\x05abc")
    # the module appends the RSSI byte: -(256 - 186) = -70 dBm
    assert m.to_node(b"\x00ack") == b"\x00ack" + bytes([186])


def test_frames_are_never_taken_for_commands():
    m = E22Sim()
    for data in (b"\x00\x03\x11\x01", b"\xC0\x00\x07\x01", b"\xC1\x00\x09", b"\xC3\xC3\xC3"):
        reply, air = m.from_node(data)
        assert reply == b"" and air == data
    assert m.commands == 0 and m.packets_up == 4
