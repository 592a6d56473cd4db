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

The escape and the wiring (board file -> drivers, relays, radio) run once, so they
live in firmware/startup.py, which is dropped once the node runs.
"""
ESCAPE_S = 3
CRASH_FILE = "crash.json"
CLEAN_RUN_S = 3600


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


def run(hal, console=print, max_steps=None, probe=None):
    """The node's loop. probe(node, before) is called around each step when given
    (tools/rp2/node_steps.py measures steps on a board with it)."""
    import gc

    from firmware import halsetup, startup
    from firmware.app import Node
    from firmware.logscan import open_log
    cfg, sources, radio, siren, strobe = startup.wire(hal, console)
    wdt = halsetup.watchdog(hal, cfg.watchdog_ms, console)
    clock = MonoClock(hal)
    seed = hal.ticks_us() ^ (cfg.node << 8)
    node = Node(hal, cfg, sources, radio, siren, strobe, wdt, rand=_rand(seed),
                reset_cause=halsetup.reset_cause(hal), console=console, mem_free=getattr(gc, "mem_free", None),
                downlink=downlink)
    open_log(node.log, node.clock)
    startup.drop_boot_modules()
    del startup, halsetup, open_log
    gc.collect()
    node.start(clock.now())
    cap_ms = hal.watchdog_ms // 2        # the timeout in force (halsetup.watchdog())
    clean = False
    steps = 0
    while max_steps is None or steps < max_steps:
        steps += 1
        now = clock.now()
        if probe:
            probe(node, True)
        wake = node.step(now)
        if probe:
            probe(node, False)
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


def downlink(node, now, payload, mtype):
    """A CONFIG or ZONE downlink, which the Node hands here (firmware/app.py imports no
    boot code): firmware/downlink.py, loaded for it with the config checks and the CBOR
    decoder. Where boot dropped them (run() on a board, to make room for the node's data)
    they are dropped again however this ends; where they stayed loaded, they stay."""
    from firmware.unload import config_dropped, unload_config
    dropped = config_dropped()
    try:
        import firmware.downlink  # (binds the package only: nothing keeps the module)
        firmware.downlink.handle(node, now, payload, mtype)
    finally:
        if dropped:
            unload_config()


def _rand(seed):
    state = [seed & 0x7FFFFFFF or 1]

    def rand():
        state[0] = (1103515245 * state[0] + 12345) & 0x7FFFFFFF
        return (state[0] >> 7) / 16777216.0
    return rand


def main(hal=None, console=print, escape_s=ESCAPE_S, key_pressed=None):
    if hal is None:
        from firmware.hal import Hal
        hal = Hal()
    from firmware import startup
    if startup.escape_requested(hal, console, key_pressed, escape_s):
        return "repl"
    del startup
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
