"""Integer scaling shared by the drivers: rounding division and two-point lines.

Values stay integers end to end (channel units, protocol/channels.py), so a reading
means the same on a single-precision MCU as on the gateway."""


def div_round(a, b):
    """a / b rounded to the nearest integer, halves away from zero."""
    if b < 0:
        a, b = -a, -b
    if a >= 0:
        return (2 * a + b) // (2 * b)
    return -((-2 * a + b) // (2 * b))


def line(x, x1, y1, x2, y2):
    """The value at x on the straight line through (x1, y1) and (x2, y2)."""
    return y1 + div_round((x - x1) * (y2 - y1), x2 - x1)


def pow10_scale(raw, shift):
    """raw * 10**shift as a rounded integer (shift may be negative)."""
    if shift >= 0:
        return raw * 10 ** shift
    return div_round(raw, 10 ** -shift)
