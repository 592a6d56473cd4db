"""Uplink messages for the hub's tests, encoded with the gateway's own encoders."""
import cbor2

from gateway.batcher import encode_batch, encode_batch_v1


def batch(seq, node_rows, site="demo", gw="gw1", created=1_780_000_000, counters=None,
          statuses=(), schema=2):
    """node_rows: [(node, nseq, idx, chan, t, value)] -> CBOR batch (schema 2, or 1 as
    gateways upgraded from it still re-send)."""
    rows = [(i, n, s, x, c, t, v, None, 0) for i, (n, s, x, c, t, v) in enumerate(node_rows)]
    counters = counters or {1: 0, 2: 0, 3: 0, 4: 0, 5: 0}
    if schema == 1:
        return encode_batch_v1(site, gw, seq, created, rows, statuses, counters)
    return encode_batch(seq, created, rows, statuses, counters)


def alarm(node, seq, level, prev, chan=0x10, t=1_780_000_000, aidx=0, event=2, site="demo",
          gw="gw1", value=1600, threshold=1500):
    return cbor2.dumps({0: 1, 1: site, 2: gw, 3: node, 4: seq, 15: aidx, 5: event, 6: level,
                        7: prev, 8: chan, 9: 1, 10: 1, 11: value, 12: threshold, 13: t,
                        14: t * 1000 + 200})


def readings(node, seqs, per=3, chan=0x10, t0=1_780_000_000):
    return [(node, s, i, chan, t0 + 60 * s + i, 1000 + s * 10 + i) for s in seqs
            for i in range(per)]
