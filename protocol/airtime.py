"""LoRa time on air (Semtech AN1200.13 / SX127x datasheet), for the node's transmit
budget and the HIL radio medium. Pure arithmetic.

    T_sym      = 2**SF / BW
    T_preamble = (n_preamble + 4.25) * T_sym
    n_payload  = 8 + max(ceil((8*PL - 4*SF + 28 + 16*CRC - 20*IH) / (4*(SF - 2*DE))) * (CR + 4), 0)
with IH = 1 for implicit header, DE = 1 (low data rate optimisation) when T_sym >= 16 ms
(SF11/SF12 at 125 kHz), CR = 1..4 for 4/5..4/8."""


def airtime_s(payload_len, sf=9, bw_hz=125000, cr=1, preamble=8, explicit_header=True, crc=True, ldro=None):
    if not 6 <= sf <= 12:
        raise ValueError("spreading factor %r: allowed 6..12" % (sf,))
    if not 1 <= cr <= 4:
        raise ValueError("coding rate %r: allowed 1..4 (4/5..4/8)" % (cr,))
    t_sym = (1 << sf) / bw_hz
    if ldro is None:
        ldro = t_sym >= 0.016
    de = 1 if ldro else 0
    ih = 0 if explicit_header else 1
    num = 8 * payload_len - 4 * sf + 28 + (16 if crc else 0) - 20 * ih
    den = 4 * (sf - 2 * de)
    n = 8 + max(-(-num // den) * (cr + 4), 0)
    return (preamble + 4.25) * t_sym + n * t_sym
