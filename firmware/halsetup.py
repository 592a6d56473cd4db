"""The boot-time half of the hardware seam (firmware/hal.py): building pins, ADC
channels, UARTs and the watchdog, and reading why the chip reset or woke. Boot code
(firmware/main.py, startup.py, board.py, drivers/factory.py) calls these while the node
is wired up, then main.py drops this module (firmware/unload.py) and a board without
frozen modules gets its heap back. Each function takes the Hal as its first argument;
this module imports hal.py, never the reverse."""
from firmware.hal import AdcChannel

# machine.ADC attenuation constant names (esp32 port) by the name used in board files
ATTEN_NAMES = {"0db": "ATTN_0DB", "2.5db": "ATTN_2_5DB", "6db": "ATTN_6DB", "11db": "ATTN_11DB"}

_RESET_NAMES = (("PWRON_RESET", "power_on"), ("HARD_RESET", "hard"), ("WDT_RESET", "watchdog"),
                ("DEEPSLEEP_RESET", "deep_sleep"), ("SOFT_RESET", "soft"), ("BROWNOUT_RESET", "brownout"))
_WAKE_NAMES = (("PIN_WAKE", "pin"), ("EXT0_WAKE", "ext0"), ("EXT1_WAKE", "ext1"),
               ("TIMER_WAKE", "timer"), ("TOUCHPAD_WAKE", "touch"), ("ULP_WAKE", "ulp"))


def pin_in(hal, num, pull=None):
    """pull: None, "up" or "down"."""
    P = hal.machine.Pin
    if pull == "up":
        return P(num, P.IN, P.PULL_UP)
    if pull == "down":
        return P(num, P.IN, P.PULL_DOWN)
    if pull is not None:
        raise ValueError("pin %r: pull %r not allowed: use None, 'up' or 'down'" % (num, pull))
    return P(num, P.IN)


def pin_out(hal, num, value=0):
    P = hal.machine.Pin
    return P(num, P.OUT, value=value)


def adc(hal, mcu, spec):
    """An AdcChannel for a board-file ADC entry: {"pin": n, "atten": "11db",
    "floor_mv": 150, "ceiling_mv": 2450, "bits": 12} on esp32 (bits optional),
    {"pin": 26} or {"channel": 4} on rp2040."""
    m = hal.machine
    floor_uv = spec.get("floor_mv", 0) * 1000
    ceiling_uv = spec.get("ceiling_mv", 3300) * 1000
    if mcu.startswith("esp32"):
        atten = spec.get("atten", "11db")
        if atten not in ATTEN_NAMES:
            raise ValueError("ADC pin %r: atten %r not allowed: use one of %s"
                             % (spec.get("pin"), atten, ", ".join(sorted(ATTEN_NAMES))))
        a = getattr(m.ADC, ATTEN_NAMES[atten])
        try:
            adc = m.ADC(m.Pin(spec["pin"]), atten=a)
        except TypeError:  # ports before the atten= keyword
            adc = m.ADC(m.Pin(spec["pin"]))
            adc.atten(a)
        bits = spec.get("bits")
        if bits and hasattr(adc, "width"):  # classic ESP32 only; read_uv() is unaffected
            adc.width(getattr(m.ADC, "WIDTH_%dBIT" % bits))
        return AdcChannel(adc, floor_uv, ceiling_uv, uv_method=hasattr(adc, "read_uv"))
    if "channel" in spec:
        adc = m.ADC(spec["channel"])
    else:
        adc = m.ADC(m.Pin(spec["pin"]))
    return AdcChannel(adc, floor_uv, ceiling_uv, vref_uv=spec.get("vref_mv", 3300) * 1000)


def uart(hal, uart_id, baudrate, tx=None, rx=None, timeout_ms=0, rxbuf=512):
    """A machine.UART (8N1). timeout_ms=0 makes reads non-blocking; the drivers poll."""
    kw = {"baudrate": baudrate, "bits": 8, "parity": None, "stop": 1,
          "timeout": timeout_ms, "rxbuf": rxbuf}
    if tx is not None:
        kw["tx"] = hal.machine.Pin(tx)
    if rx is not None:
        kw["rx"] = hal.machine.Pin(rx)
    return hal.machine.UART(uart_id, **kw)


# The longest watchdog timeout a port's WDT accepts, by sys.platform. RP2040: a 24-bit
# counter ticking twice per microsecond (erratum RP2040-E1), so machine.WDT raises
# ValueError above 8388 ms; config.json allows watchdog_s 10..3600, which would make
# every boot on a Pico crash (found on the rp2 port, tests/rp2/test_pico_node.py). The
# table of such limits, (port, ms), lives in watchdog(): a local, not one more global name.


def watchdog(hal, timeout_ms, console=print):
    """Once started a watchdog cannot be stopped on esp32/rp2: feed it from the main
    loop's progress only, never from a timer. A timeout longer than the port's limit
    is cut to that limit; hal.watchdog_ms is the timeout in force (the main loop
    never sleeps more than half of it)."""
    import sys
    for platform, limit in (("rp2", 8388),):
        if sys.platform == platform and timeout_ms > limit:
            console("watchdog: %d ms is more than %s allows: using %d ms" % (timeout_ms, platform, limit))
            timeout_ms = limit
    hal.watchdog_ms = timeout_ms
    return hal.machine.WDT(timeout=timeout_ms)


def reset_cause(hal):
    """The reason for the last reset as a name from protocol/messages.RESET_CAUSES
    (power_on, hard, watchdog, deep_sleep, soft, brownout), or unknown(<n>)."""
    m = hal.machine
    cause = m.reset_cause()
    for attr, label in _RESET_NAMES:
        if getattr(m, attr, None) == cause:
            return label
    return "unknown(%d)" % cause


def wake_on_pin(hal, pin, level=0):
    """Let `pin` at `level` wake the MCU from deep sleep (esp32 EXT0, e.g. the rain
    reed so a tip during deep sleep is not lost). False where the port cannot."""
    e = hal._esp32_mod()
    if e is None or not hasattr(e, "wake_on_ext0"):
        return False
    # positional, as documented (the port's stubs declare pin and level positional-only)
    e.wake_on_ext0(pin, e.WAKEUP_ANY_HIGH if level else e.WAKEUP_ALL_LOW)
    return True


def wake_reason(hal):
    """What ended the last deep sleep: pin, ext0, ext1, timer, touch, ulp, or none."""
    m = hal.machine
    if not hasattr(m, "wake_reason"):
        return "none"
    r = m.wake_reason()
    for attr, label in _WAKE_NAMES:
        if getattr(m, attr, None) == r:
            return label
    return "none"
