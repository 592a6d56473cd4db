"""Node entry point (copied to the board's root as main.py; also importable as
firmware.main for tests). It must never brick a node in the field:

* Console escape. For 3 s after reset the console says so and waits: any key, the
  board's BOOT button (config "escape_pin", default GPIO0 on ESP32) held low, or a
  file named SAFE in the root (`mpremote touch :SAFE`) stops here and leaves the
  REPL to the technician. The escape is checked before config.json is trusted, so a
  config that crashes the app cannot lock anyone out.
* Crash restart. An exception in the app is printed, counted in crash.json and the
  node resets after a delay that doubles with each consecutive crash (10 s up to
  5 min; a watchdog already running may cut that to its own timeout), so a
  persistent fault can never become a tight reset loop that wears the flash or hides
  the console. After an hour of clean running the count resets.
* Watchdog. The app feeds it only at the end of a completed step (firmware/app.py);
  a hung driver or radio resets the node, and the reset cause goes out in HELLO.

The wiring (board file -> drivers, relays, radio) lives here too, so firmware/app.py
stays a pure composition of objects that tests build from fakes.
"""
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

ESCAPE_S = const(3)
CRASH_FILE = "crash.json"
SAFE_FILE = "SAFE"
CLEAN_RUN_S = const(3600)


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


def escape_requested(hal, console=print, key_pressed=_key_pressed, seconds=ESCAPE_S):
    if hal.exists(SAFE_FILE):
        console("SAFE file present: staying in the REPL (delete it to run the node)")
        return True
    pin = None
    num = _escape_pin(hal)
    if isinstance(num, int) and num >= 0:
        try:
            pin = hal.pin_in(num, "up")
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


# --- crash bookkeeping --------------------------------------------------------------

def crash_count(hal):
    try:
        import json
        f = hal.open(CRASH_FILE, "r")
        try:
            return int(json.loads(f.read()).get("crashes", 0))
        finally:
            f.close()
    except Exception:
        return 0


def set_crash_count(hal, n):
    import json
    tmp = CRASH_FILE + ".tmp"
    f = hal.open(tmp, "w")
    try:
        f.write(json.dumps({"crashes": n}))
    finally:
        f.close()
    hal.rename(tmp, CRASH_FILE)


def restart_delay_s(crashes):
    return min(300, 10 * (1 << min(crashes, 5)))


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
        return EbyteRadio(board.uart(hal, "lora"), hal.pin_out(s["m0"]), hal.pin_out(s["m1"]),
                          hal.pin_in(s["aux"]), hal, baudrate=s.get("baudrate", 9600), **kw)
    except (ValueError, KeyError, TypeError) as e:
        console("radio: %s: radio off until config.json 'radio' is fixed" % e)
        return None


# --- the loop -------------------------------------------------------------------------

class MonoClock:
    """Monotonic seconds from ticks_ms, across its wrap-around."""

    def __init__(self, hal):
        self.hal = hal
        self.last = hal.ticks_ms()
        self.ms = 0

    def now(self):
        t = self.hal.ticks_ms()
        self.ms += self.hal.ticks_diff(t, self.last)
        self.last = t
        return self.ms / 1000.0


def wire(hal, console=print):
    """The boot wiring: config.json (checked, with its fallbacks), the board file, the
    drivers, the radio and the relays -> (cfg, sources, radio, siren, strobe). The board
    module is dropped before this returns; drop_boot_modules() does the rest once the
    Node is built."""
    from firmware import board as board_mod
    from firmware import nodeconfig
    cfg = nodeconfig.load(hal, console)
    board = board_mod.load(hal, cfg.board if cfg.board != "unknown" else "esp32_devkitc")
    sources = build_sources(hal, board, cfg, console)
    radio = build_radio(hal, board, cfg, console) if cfg.key else None
    siren = board.output(hal, "siren") if board.has("outputs", "siren") else None
    strobe = board.output(hal, "strobe") if board.has("outputs", "strobe") else None
    board = None
    board_mod.unload()
    return cfg, sources, radio, siren, strobe


def drop_boot_modules():
    """Free the code that only boot needs (firmware/unload.py): the config and rule
    checks, the driver factory, the HAL's set-up half and the radio's configuration
    mode. On a board without frozen modules that is heap the node's data gets."""
    from firmware.unload import unload, unload_config
    unload_config()
    for name in ("firmware.drivers.factory", "firmware.halsetup", "firmware.radio.ebyte_config"):
        unload(name)


def run(hal, console=print, max_steps=None):
    import gc

    from firmware.app import Node
    cfg, sources, radio, siren, strobe = wire(hal, console)
    wdt = hal.watchdog(cfg.watchdog_ms)
    clock = MonoClock(hal)
    seed = hal.ticks_us() ^ (cfg.node << 8)
    node = Node(hal, cfg, sources, radio, siren, strobe, wdt, rand=_rand(seed),
                reset_cause=hal.reset_cause(), console=console, mem_free=getattr(gc, "mem_free", None))
    drop_boot_modules()
    gc.collect()
    node.start(clock.now())
    cap_ms = cfg.watchdog_ms // 2
    clean = False
    steps = 0
    while max_steps is None or steps < max_steps:
        steps += 1
        now = clock.now()
        wake = node.step(now)
        if not clean and now > CLEAN_RUN_S:
            clean = True
            if crash_count(hal):
                set_crash_count(hal, 0)
        ms = cap_ms if wake is None else int((wake - clock.now()) * 1000)
        if ms <= 0:
            continue
        if node.must_listen(clock.now()):
            hal.sleep_ms(min(ms, 20))       # the UART must be read while a reply may come
        elif cfg.sleep == "light" and ms > 50:
            hal.lightsleep(min(ms, cap_ms))  # RAM kept; the rain IRQ still counts and wakes
        else:
            hal.sleep_ms(min(ms, cap_ms))
    return node


def _rand(seed):
    state = [seed & 0x7FFFFFFF or 1]

    def rand():
        state[0] = (1103515245 * state[0] + 12345) & 0x7FFFFFFF
        return (state[0] >> 7) / 16777216.0
    return rand


def main(hal=None, console=print, escape_s=ESCAPE_S, key_pressed=_key_pressed):
    if hal is None:
        from firmware.hal import Hal
        hal = Hal()
    if escape_requested(hal, console, key_pressed, escape_s):
        return "repl"
    try:
        run(hal, console)
    except KeyboardInterrupt:
        console("interrupted: REPL")
        return "repl"
    except Exception as e:
        n = crash_count(hal) + 1
        delay = restart_delay_s(n - 1)
        try:
            import sys
            sys.print_exception(e)
        except (ImportError, AttributeError):
            console("node crashed: %r" % (e,))
        console("node crashed (%d in a row): restarting in %d s" % (n, delay))
        try:
            set_crash_count(hal, n)
        except OSError:
            pass
        hal.sleep_ms(delay * 1000)
        hal.machine.reset()
    return "stopped"


if __name__ == "__main__":
    main()
