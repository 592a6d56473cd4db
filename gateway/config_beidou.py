"""The `[beidou]` section of site.toml: the BeiDou short-message fallback for alarms
(gateway/beidou.py, docs/beidou.md). Checked with gateway/config.py's checker, so its
problems are reported with the rest, each naming the file, the key and what is allowed.

    [beidou]
    port = "/dev/ttyUSB1"          # the RDSS terminal's serial port
    baudrate = 115200
    dest = "0242286"               # the county command terminal's card number (7 digits)
    card = "bds2"                  # bds2 (78 B/message), bds3-regional, bds3-global
    gateway_number = 1             # this gateway in the message header (1..65535)
    key_file = "beidou.key"        # 32+ random bytes as hex, mode 0600 (`stationctl keygen`)
    fallback_after_s = 20          # an alarm not PUBACKed this long goes by BeiDou
"""
import re
from dataclasses import dataclass

from gateway.beidou import CARD_BYTES
from protocol import bdmsg
from protocol.mic import BadKey, check_key

KEYS = ("port", "baudrate", "dest", "card", "max_bytes", "gateway_number", "key_file",
        "fallback_after_s", "confirm_timeout_s", "min_interval_s")


@dataclass(frozen=True)
class Beidou:
    port: str
    baudrate: int
    dest: str
    card: str
    max_bytes: int
    gateway_number: int
    key_file: str
    key: bytes
    fallback_after_s: float
    confirm_timeout_s: float
    min_interval_s: float

    def __repr__(self):                       # never the key
        return "Beidou(port=%r, dest=%r, card=%r, max_bytes=%d)" % (
            self.port, self.dest, self.card, self.max_bytes)


def parse(c, doc, baudrates):
    t = c.table(doc, "beidou", "beidou", required=False)
    if t is None:
        return None
    c.unknown(t, KEYS, "beidou")
    card = c.value(t, "card", "beidou", str, default="bds2", choices=tuple(CARD_BYTES))
    most = CARD_BYTES.get(card, 78)
    r = dict(
        port=c.value(t, "port", "beidou", str, pattern=re.compile(r"^\S+$"),
                     pattern_text="a serial device path such as /dev/ttyUSB1"),
        baudrate=c.value(t, "baudrate", "beidou", int, default=115200, choices=baudrates),
        dest=c.value(t, "dest", "beidou", str, pattern=re.compile(r"^[0-9]{1,7}$"),
                     pattern_text="the receiving card number, up to 7 digits, as a string"),
        card=card,
        max_bytes=c.value(t, "max_bytes", "beidou", int, default=most,
                          lo=bdmsg.HEADER + bdmsg.MIC_LEN + bdmsg.ALARM_MAX, hi=most),
        gateway_number=c.value(t, "gateway_number", "beidou", int, lo=1, hi=65535),
        key_file=c.file_path(t, "key_file", "beidou", required=True, secret=True,
                             hint=": make one with `openssl rand -hex 32 > beidou.key` and `chmod 600 beidou.key`"),
        fallback_after_s=c.value(t, "fallback_after_s", "beidou", float, default=20.0, lo=0.0,
                                 hi=3600.0),
        confirm_timeout_s=c.value(t, "confirm_timeout_s", "beidou", float, default=10.0,
                                  lo=1.0, hi=600.0),
        min_interval_s=c.value(t, "min_interval_s", "beidou", float, default=0.0, lo=0.0,
                               hi=3600.0),
    )
    key = b""
    if r["key_file"] and not any(i.key == "beidou.key_file" for i in c.issues):
        key = _read_key(c, r["key_file"])
    if any(i.key.startswith("beidou") for i in c.issues):
        return None
    return Beidou(key=key, **r)


def _read_key(c, path):
    try:
        with open(path) as f:
            text = f.read().strip()
        key = bytes.fromhex(text)
        check_key(key)
        return key
    except (OSError, ValueError) as e:
        why = str(e) if isinstance(e, BadKey) else "not 32-128 hex digits"
        c.err("beidou.key_file", "%s: %s: make one with `openssl rand -hex 32`" % (path, why))
        return b""
