"""Board definitions as data: firmware/variants/<name>.json, checked when loaded.

A board file names every pin the node uses and the ADC facts that differ between
boards (attenuation, linear range, divider and shunt values). Code never hard-codes a
pin: a new board is a new JSON file. A bad file raises ValueError naming the file, the
key and what is allowed, before any pin is touched."""
import json

from firmware import halsetup
from firmware.hal import Output

VARIANTS_DIR = "firmware/variants"

# mcu: (usable GPIOs, ADC-capable GPIOs, input-only GPIOs)
_ESP32_GPIO = tuple(range(0, 6)) + tuple(range(12, 20)) + (21, 22, 23, 25, 26, 27) + tuple(range(32, 40))
_ESP32S3_GPIO = tuple(range(0, 22)) + tuple(range(33, 49))
MCUS = {
    "esp32": (_ESP32_GPIO, tuple(range(32, 40)), tuple(range(34, 40))),
    "esp32s3": (_ESP32S3_GPIO, tuple(range(1, 11)), ()),
    "rp2040": (tuple(range(0, 30)), (26, 27, 28, 29), ()),
}

INPUTS = ("rain",)
OUTPUTS = ("siren", "strobe", "status_led")
ADCS = ("drawwire", "excitation", "loop420", "battery")
UARTS = {"rs485": ("de",), "lora": ("m0", "m1", "aux")}
TEMPERATURE_SOURCES = ("esp32", "rp2040_adc4", "none")


class BoardError(ValueError):
    pass


class Board:
    def __init__(self, data, source="<board>"):
        self.source = source
        self.data = data
        _check(data, source)
        self.name = data["board"]
        self.mcu = data["mcu"]

    def spec(self, group, role):
        """The raw dict for e.g. ("adc", "loop420"); BoardError if the board has none."""
        g = self.data.get(group, {})
        if role not in g:
            raise BoardError("%s: board %s has no %s.%s: add it to the board file (it has %s)"
                             % (self.source, self.name, group, role, ", ".join(sorted(g)) or "none"))
        return g[role]

    def has(self, group, role):
        return role in self.data.get(group, {})

    def input_pin(self, hal, role):
        s = self.spec("inputs", role)
        return halsetup.pin_in(hal, s["pin"], s.get("pull"))

    def output(self, hal, role):
        s = self.spec("outputs", role)
        return Output(halsetup.pin_out(hal, s["pin"], 1 - s.get("active", 1)), s.get("active", 1))

    def adc(self, hal, role):
        return halsetup.adc(hal, self.mcu, self.spec("adc", role))

    def uart(self, hal, role, baudrate=None):
        s = self.spec("uarts", role)
        return halsetup.uart(hal, s["id"], baudrate or s.get("baudrate", 9600), s.get("tx"), s.get("rx"))


def unload():
    """Free this module after boot. The board file is needed only to build the pins,
    ADCs and UARTs; its checks are most of this module's RAM (~8 KB on the 64-bit unix
    port, about half that on an ESP32). Drop every Board object as well, since its
    methods keep the module alive."""
    from firmware.unload import unload as drop
    drop("firmware.board")


# The board file of a node without a valid config, by sys.platform: it must at least
# name pins and ADC settings the chip has (the esp32 file's ADC attenuation does not
# exist on rp2, and a Pico running on it crashed at every boot: tests/rp2). The table,
# (sys.platform, board), is local to default_name(): no global name on the node's heap.


def default_name():
    import sys
    for platform, name in (("rp2", "rp2040_pico"),):
        if sys.platform == platform:
            return name
    return "esp32_devkitc"


def load(hal, name, directory=VARIANTS_DIR):
    """Board from <directory>/<name>.json through the hal's filesystem."""
    path = "%s/%s.json" % (directory, name)
    try:
        f = hal.open(path, "r")
    except OSError:
        raise BoardError("%s: no such board file: pick one of firmware/variants/*.json "
                         "or write one for your board" % path)
    try:
        try:
            data = json.load(f)
        except ValueError as e:
            raise BoardError("%s: not valid JSON (%s): fix the file" % (path, e))
    finally:
        f.close()
    return Board(data, path)


def _fail(source, key, msg):
    raise BoardError("%s: key '%s': %s" % (source, key, msg))


def _pin(source, key, value, allowed, used):
    if not isinstance(value, int) or value not in allowed:
        _fail(source, key, "%r is not a usable pin on this MCU: allowed %s" % (value, _ranges(allowed)))
    if value in used:
        _fail(source, key, "pin %d is already used by '%s': each pin has one job" % (value, used[value]))
    used[value] = key


def _ranges(pins):
    out, start, prev = [], None, None
    for p in sorted(pins):
        if start is None:
            start = prev = p
        elif p == prev + 1:
            prev = p
        else:
            out.append("%d..%d" % (start, prev) if prev > start else "%d" % start)
            start = prev = p
    if start is not None:
        out.append("%d..%d" % (start, prev) if prev > start else "%d" % start)
    return ", ".join(out)


def _check(d, src):
    if not isinstance(d, dict):
        raise BoardError("%s: the top level must be a JSON object" % src)
    for k in ("board", "mcu"):
        if not isinstance(d.get(k), str):
            _fail(src, k, "missing or not a string")
    mcu = d["mcu"]
    if mcu not in MCUS:
        _fail(src, "mcu", "%r is not supported: allowed %s" % (mcu, ", ".join(sorted(MCUS))))
    gpio, adc_pins, input_only = MCUS[mcu]
    outputs_ok = [p for p in gpio if p not in input_only]
    used = {}
    for role, s in d.get("inputs", {}).items():
        key = "inputs.%s" % role
        if role not in INPUTS:
            _fail(src, key, "unknown input: allowed %s" % ", ".join(INPUTS))
        _pin(src, key + ".pin", s.get("pin"), gpio, used)
        if s.get("pull") not in (None, "up", "down"):
            _fail(src, key + ".pull", "%r: allowed null, \"up\", \"down\"" % (s.get("pull"),))
    for role, s in d.get("outputs", {}).items():
        key = "outputs.%s" % role
        if role not in OUTPUTS:
            _fail(src, key, "unknown output: allowed %s" % ", ".join(OUTPUTS))
        _pin(src, key + ".pin", s.get("pin"), outputs_ok, used)
        if s.get("active", 1) not in (0, 1):
            _fail(src, key + ".active", "%r: allowed 0 (active low) or 1 (active high)" % (s.get("active"),))
    for role, s in d.get("adc", {}).items():
        key = "adc.%s" % role
        if role not in ADCS:
            _fail(src, key, "unknown ADC input: allowed %s" % ", ".join(ADCS))
        _pin(src, key + ".pin", s.get("pin"), adc_pins, used)
        if mcu.startswith("esp32") and s.get("atten", "11db") not in halsetup.ATTEN_NAMES:
            _fail(src, key + ".atten", "%r: allowed %s" % (s.get("atten"), ", ".join(sorted(halsetup.ATTEN_NAMES))))
        if s.get("bits", 12) not in (9, 10, 11, 12):
            _fail(src, key + ".bits", "%r: allowed 9, 10, 11, 12" % (s.get("bits"),))
        lo, hi = s.get("floor_mv", 0), s.get("ceiling_mv", 3300)
        if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo < hi <= 3600):
            _fail(src, key, "floor_mv/ceiling_mv must be integers with 0 <= floor < ceiling <= 3600")
        if "divider" in s:
            dv = s["divider"]
            if not (isinstance(dv, list) and len(dv) == 2 and dv[0] >= 0 and dv[1] > 0):
                _fail(src, key + ".divider", "%r: give [r_top_ohm, r_bottom_ohm], r_bottom > 0" % (dv,))
        if "shunt_ohm" in s and not s["shunt_ohm"] > 0:
            _fail(src, key + ".shunt_ohm", "%r: must be a positive resistance in ohm" % (s["shunt_ohm"],))
    for role, s in d.get("uarts", {}).items():
        key = "uarts.%s" % role
        if role not in UARTS:
            _fail(src, key, "unknown UART: allowed %s" % ", ".join(sorted(UARTS)))
        if not isinstance(s.get("id"), int):
            _fail(src, key + ".id", "missing: the hardware UART number (e.g. 1)")
        _pin(src, key + ".tx", s.get("tx"), outputs_ok, used)
        _pin(src, key + ".rx", s.get("rx"), gpio, used)
        for ctl in UARTS[role]:
            allowed = gpio if ctl == "aux" else outputs_ok
            _pin(src, "%s.%s" % (key, ctl), s.get(ctl), allowed, used)
    t = d.get("temperature", {"source": "none"}).get("source")
    if t not in TEMPERATURE_SOURCES:
        _fail(src, "temperature.source", "%r: allowed %s" % (t, ", ".join(TEMPERATURE_SOURCES)))
