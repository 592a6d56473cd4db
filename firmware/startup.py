"""What runs once at start, apart from firmware/main.py so that its heap goes back to
the node afterwards (firmware/unload.py; main.py drops this module once the Node is
built): the console escape that keeps a node from ever being bricked (see main.py's
docstring) and the wiring from the board file to drivers, radio and relays, which keeps
firmware/app.py a pure composition of objects that tests build from fakes.

A channel whose driver cannot be built gets an Unavailable source; only then does this
module stay loaded, as that object's class lives here."""
SAFE_FILE = "SAFE"


class Unavailable:
    """A configured channel whose driver could not be built: reports a fault, never a value."""

    def __init__(self, fault):
        self.fault = fault

    def read(self):
        return None, self.fault


# --- the console escape ------------------------------------------------------------

def _key_pressed(timeout_ms):
    try:
        import select
        import sys
        p = select.poll()
        p.register(sys.stdin, select.POLLIN)
        return bool(p.poll(timeout_ms))
    except Exception:   # no pollable console (e.g. detached): no key then
        return False


def _escape_pin(hal):
    """The pin that drops to the REPL when held low at boot, from config.json if it
    parses (no full check: a broken config must not block the escape)."""
    try:
        import json
        f = hal.open("config.json", "r")
        try:
            pin = json.loads(f.read()).get("escape_pin", 0)
        finally:
            f.close()
    except Exception:
        pin = 0
    return pin


def escape_requested(hal, console=print, key_pressed=None, seconds=3):
    if key_pressed is None:
        key_pressed = _key_pressed
    if hal.exists(SAFE_FILE):
        console("SAFE file present: staying in the REPL (delete it to run the node)")
        return True
    pin = None
    num = _escape_pin(hal)
    if isinstance(num, int) and num >= 0:
        try:
            from firmware import halsetup
            pin = halsetup.pin_in(hal, num, "up")
        except Exception:
            pin = None
    console("node starts in %d s: press a key%s for the REPL"
            % (seconds, " (or hold GPIO%d low)" % num if pin is not None else ""))
    for _ in range(seconds * 10):
        if pin is not None and pin.value() == 0:
            console("escape pin low: staying in the REPL")
            return True
        if key_pressed(100):
            console("key pressed: staying in the REPL")
            return True
    return False


# --- wiring -------------------------------------------------------------------------

def build_sources(hal, board, cfg, console=print):
    """chan id -> driver, from the config's channel list and the board file, through the
    one driver factory (firmware/drivers/factory.py). A channel that cannot be built
    reports not_available; the others still run: one broken sensor must not silence
    the station."""
    from firmware import faults
    from firmware.drivers import factory

    def unavailable(chan, driver, e):
        console("channel 0x%02x (%s): cannot build the driver: %s: it reports "
                "not_available until the config or board file is fixed" % (chan, driver, e))
        return Unavailable(faults.NOT_AVAILABLE)

    # on esp32 an edge during light sleep is only seen if the rain pin may wake the chip;
    # rp2 keeps counting through its light sleep
    wake = getattr(hal.machine, "SLEEP", None) if board.mcu.startswith("esp32") else None
    return factory.build_sources(hal, board, cfg.channels, source="config.json",
                                 on_error=unavailable, rain_wake=wake)


def build_radio(hal, board, cfg, console=print):
    r = cfg.radio or {}
    if not board.has("uarts", "lora"):
        console("radio: board has no uarts.lora: radio off")
        return None
    s = board.spec("uarts", "lora")
    try:
        from firmware.radio.ebyte import EbyteRadio
        kw = {}
        for k in ("model", "air_rate", "sub_packet", "fixed", "rssi_byte", "aux_timeout_ms"):
            if k in r:
                kw[k] = r[k]
        if "dest" in r:
            kw["dest"] = tuple(r["dest"])
        if "lora" in r:
            kw["lora"] = tuple(r["lora"])
        from firmware import halsetup as hs
        return EbyteRadio(board.uart(hal, "lora"), hs.pin_out(hal, s["m0"]), hs.pin_out(hal, s["m1"]),
                          hs.pin_in(hal, s["aux"]), hal, baudrate=s.get("baudrate", 9600), **kw)
    except (ValueError, KeyError, TypeError) as e:
        console("radio: %s: radio off until config.json 'radio' is fixed" % e)
        return None


def wire(hal, console=print):
    """The boot wiring: config.json (checked, with its fallbacks), the board file, the
    drivers, the radio and the relays -> (cfg, sources, radio, siren, strobe), cfg
    without the channels' driver params and the radio settings, which only this reads.
    The board module is dropped before this returns; drop_boot_modules() does the rest
    once the Node is built."""
    from firmware import board as board_mod
    from firmware import nodeconfig
    cfg = nodeconfig.load(hal, console)
    board = board_mod.load(hal, cfg.board if cfg.board != "unknown" else board_mod.default_name())
    sources = build_sources(hal, board, cfg, console)
    radio = build_radio(hal, board, cfg, console) if cfg.key else None
    # the drivers and the radio have taken their settings: the running config keeps no
    # channel params and no radio settings (nodeconfig.apply_downlink carries this over)
    cfg.channels = [(c[0], c[1], None) for c in cfg.channels]
    cfg.radio = None
    siren = board.output(hal, "siren") if board.has("outputs", "siren") else None
    strobe = board.output(hal, "strobe") if board.has("outputs", "strobe") else None
    board = None
    board_mod.unload()
    return cfg, sources, radio, siren, strobe


def drop_boot_modules():
    """Free the code that only boot needs (firmware/unload.py): the config and rule
    checks, the driver factory, the HAL's set-up half, the radio's configuration mode
    and the frame log's scan. On a board without frozen modules that is heap the node's
    data gets."""
    from firmware.unload import unload, unload_config
    unload_config()
    for name in ("firmware.drivers.factory", "firmware.halsetup", "firmware.radio.ebyte_config",
                 "firmware.logscan", "firmware.startup", "firmware.unload"):
        unload(name)        # unload.py itself last: a CONFIG loads it again for a moment
