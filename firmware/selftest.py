"""Node self-test: one pass over everything a technician checks on the hillside, printed
as a machine-readable table on the console (`stationctl selftest` runs it and formats it).

    SELFTEST BEGIN 1
    <item>\t<status>\t<value>\t<detail>
    ...
    SELFTEST END <number of items with status fault>

status is ok, warn, fault or info. Items: fw, config, board, one `chan:0xNN` per
configured channel (value = the scaled integer of protocol/channels.py, or the fault
name), supply_mv, mcu_temp, radio (answering, and the module's stored settings),
heap_free, clock. Nothing is written to flash and nothing is sent on the radio; the
node application must not be running (stationctl stops it first). Runs under the
MicroPython unix port with a fake `machine` as well as on a board.
"""
import gc

VERSION = 1


def _line(console, item, status, value="", detail=""):
    # tabs and newlines inside a field would break the table
    console("%s\t%s\t%s\t%s" % (item, status, str(value).replace("\t", " ").replace("\n", " "),
                                str(detail).replace("\t", " ").replace("\n", " ")))
    return 1 if status == "fault" else 0


def _quiet(msgs):
    def console(m):
        msgs.append(str(m))
    return console


def _fault_name(code):
    from firmware import faults
    return faults.name(code)


def run(hal=None, console=print, probe_radio=True, sources=None):
    """Print the table; returns the number of faults. `sources` ({chan: driver}) is built
    from the config and board file unless given (tests pass drivers on fakes)."""
    if hal is None:
        from firmware.hal import Hal
        hal = Hal()
    from firmware import nodeconfig
    console("SELFTEST BEGIN %d" % VERSION)
    fails = 0
    try:
        from firmware.app import FW_VERSION
    except ImportError:
        FW_VERSION = "?"
    fails += _line(console, "fw", "info", FW_VERSION)
    msgs = []
    cfg = nodeconfig.load(hal, _quiet(msgs))
    if cfg.safe:
        fails += _line(console, "config", "fault", "none",
                       "no valid config.json: run stationctl provision; " + "; ".join(msgs[-2:]))
    else:
        fails += _line(console, "config", "ok", cfg.version, "node %d, %d channels, %d rules"
                       % (cfg.node, len(cfg.channels), len(cfg.rules)))
    board = None
    try:
        from firmware import board as board_mod
        board = board_mod.load(hal, cfg.board if cfg.board != "unknown" else board_mod.default_name())
        fails += _line(console, "board", "ok", board.name, board.mcu)
    except ValueError as e:
        fails += _line(console, "board", "fault", cfg.board, e)
    if board is not None:
        fails += _channels(hal, board, cfg, console, sources)
        if probe_radio and not cfg.safe:
            fails += _radio(hal, board, cfg, console)
        elif probe_radio:
            fails += _line(console, "radio", "warn", "not probed", "no config: radio stays off")
    fails += _line(console, "heap_free", "info", _mem_free())
    fails += _clock(console)
    console("SELFTEST END %d" % fails)
    return fails


def _mem_free():
    gc.collect()
    try:
        return gc.mem_free()
    except AttributeError:
        return -1


def _channels(hal, board, cfg, console, sources):
    if sources is None:
        from firmware.startup import build_sources
        sources = build_sources(hal, board, cfg, _quiet([]))
    fails = 0
    supply = None
    supply_chans = 0
    for chan, driver, _ in cfg.channels:
        src = sources.get(chan)
        try:
            value, fault = src.read() if src is not None else (None, 12)
        except Exception as e:  # a driver bug is a finding, not the end of the test
            fails += _line(console, "chan:0x%02x" % chan, "fault", "error", "%s: %r" % (driver, e))
            continue
        if fault:
            fails += _line(console, "chan:0x%02x" % chan, "fault", _fault_name(fault), driver)
            supply_chans += chan >> 3 in (5, 6)
        else:
            fails += _line(console, "chan:0x%02x" % chan, "ok", value, driver)
            if chan >> 3 in (5, 6) and supply is None:     # battery / supply kinds, in mV
                supply = value
    if supply is not None:
        fails += _line(console, "supply_mv", "ok" if supply > 3300 else "warn", supply,
                       "" if supply > 3300 else "low: check the battery and the solar panel")
    elif supply_chans:
        fails += _line(console, "supply_mv", "warn", "unknown", "the battery channel is faulty")
    else:
        fails += _line(console, "supply_mv", "warn", "unknown", "no battery channel configured")
    t = hal.mcu_temperature_c()
    fails += _line(console, "mcu_temp", "info", "none" if t is None else "%.1f" % t)
    return fails


def _radio(hal, board, cfg, console):
    from firmware.radio import ebyte_config
    from firmware.startup import build_radio
    msgs = []
    radio = build_radio(hal, board, cfg, _quiet(msgs))
    if radio is None:
        return _line(console, "radio", "fault", "none", "; ".join(msgs) or "no radio")
    try:
        settings = ebyte_config.read_config(radio)
    except Exception as e:
        return _line(console, "radio", "fault", "error", repr(e))
    if not settings:
        return _line(console, "radio", "fault", "no answer",
                     "%s module did not answer in config mode: check wiring (M0/M1/AUX, TX/RX "
                     "crossed) and its supply" % radio.model)
    text = ",".join("%s=%s" % (k, settings[k]) for k in sorted(settings))
    return _line(console, "radio", "ok", radio.model, text)


def _clock(console):
    import time
    year = time.localtime()[0]
    unix = int(time.time())
    if time.gmtime(0)[0] == 2000:      # older board ports count from 2000
        unix += 946684800
    if year < 2024:
        return _line(console, "clock", "warn", unix, "not set: the node takes the time "
                     "from the gateway's first ACK")
    return _line(console, "clock", "ok", unix, "unix seconds")
