"""Warning levels: the national four-level scheme plus normal.

Numbers grow with severity so levels compare with < and >; they are the values
carried on the radio and in uplink CBOR (SPEC.md, "Warning levels")."""
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

NORMAL = const(0)
BLUE = const(1)     # level IV, attention
YELLOW = const(2)   # level III, caution
ORANGE = const(3)   # level II, warning
RED = const(4)      # level I, danger

NAMES = ("normal", "blue", "yellow", "orange", "red")
ROMAN = ("", "IV", "III", "II", "I")


def name(level):
    if 0 <= level < len(NAMES):
        return NAMES[level]
    raise ValueError("unknown warning level %r: allowed 0..4 (normal, blue, yellow, orange, red)" % (level,))


def parse(text):
    """Level from a name ('red'), a roman numeral ('I') or a number; ValueError otherwise."""
    if isinstance(text, int):
        name(text)
        return text
    t = str(text).strip()
    low = t.lower()
    if low in NAMES:
        return NAMES.index(low)
    if t.upper() in ROMAN[1:]:
        return ROMAN.index(t.upper())
    raise ValueError("unknown warning level %r: allowed normal, blue, yellow, orange, red "
                     "(or IV, III, II, I)" % (text,))
