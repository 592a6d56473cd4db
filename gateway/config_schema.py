"""The site configuration's objects (gateway/config.py loads them): frozen dataclasses
holding tuples, so a loaded config cannot be changed by accident, plus the issue and
error types every check reports with, and the allowed values the checks name."""
import re
from dataclasses import dataclass, field
from types import MappingProxyType

from gateway import config_http, rule_schema
from protocol import trip as _trip

ID_RE = re.compile(r"^[a-z0-9-]{1,32}$")
KEY_PLACEHOLDER = "PLACEHOLDER-NOT-A-KEY-run-stationctl-keygen"
NODE_ID_MAX = 65534
POINT_TABLES = ("holding", "input", "coil", "discrete")
REGISTER_TYPES = ("u16", "i16", "u32", "i32", "f32")
ORDERS = ("big", "little")
BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
AIR_RATES = {"e22": (300, 1200, 2400, 4800, 9600, 19200, 38400, 62500),
             "e32": (300, 1200, 2400, 4800, 9600, 19200),
             "none": None}
RADIO_CHANNELS = {"e22": 83, "e32": 31, "none": 255}
RULE_KINDS = rule_schema.KINDS


class ConfigIssue:
    __slots__ = ("file", "key", "message")

    def __init__(self, file, key, message):
        self.file, self.key, self.message = str(file), key, message

    def __str__(self):
        return "%s: %s: %s" % (self.file, self.key or "(file)", self.message)

    __repr__ = __str__


class ConfigError(Exception):
    """All problems found in a config; `str()` gives one line per problem."""

    def __init__(self, issues):
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


# ---------------------------------------------------------------- the config objects
# Frozen dataclasses holding tuples: a loaded config cannot be changed by accident.

@dataclass(frozen=True)
class Site:
    id: str
    gateway_id: str


@dataclass(frozen=True)
class Storage:
    path: str
    quota_mb: int
    live_horizon_s: float


@dataclass(frozen=True)
class Batch:
    max_readings: int
    max_bytes: int
    max_age_s: float
    schema: int = 2          # data batch schema (SPEC §9.2): 1 only for consumers not yet on 2


@dataclass(frozen=True)
class Mqtt:
    host: str
    port: int
    protocol: str
    client_id: str
    topic_prefix: str
    keepalive_s: int
    inflight: int
    username: str
    password_file: str
    tls_ca: str
    tls_cert: str
    tls_key: str

    @property
    def tls(self):
        return bool(self.tls_ca)

    def read_password(self):
        """The password, read when needed so it never sits in the config object."""
        if not self.password_file:
            return None
        with open(self.password_file, encoding="utf-8") as f:
            return f.read().strip()


class Keys:
    """node id -> 32-byte key. Read-only; repr shows node ids only, never key bytes."""

    def __init__(self, keys, path):
        self._keys = MappingProxyType(dict(keys))
        self.path = path

    def get(self, node):
        return self._keys.get(node)

    def __contains__(self, node):
        return node in self._keys

    def __len__(self):
        return len(self._keys)

    def nodes(self):
        return tuple(sorted(self._keys))

    def __repr__(self):
        return "Keys(%s: nodes %s)" % (self.path, list(self.nodes()))

    __str__ = __repr__


@dataclass(frozen=True)
class Radio:
    port: str
    baudrate: int
    module: str
    channel: int
    air_rate: int
    address: int
    keys_file: str
    keys: Keys = field(repr=False, compare=False)
    m0_gpio: object = 22        # M0/M1: line offsets on gpio_chip (on a Pi the BCM numbers,
    m1_gpio: object = 27        # common LoRa HATs) or line names such as "GPIO22"
    gpio_chip: str = "/dev/gpiochip0"


@dataclass(frozen=True)
class Node:
    id: int
    name: str
    channels: tuple = ()          # expected channel id bytes


@dataclass(frozen=True)
class Bus:
    name: str
    type: str                     # "rtu" | "tcp"
    port: object                  # rtu: device path (str); tcp: TCP port (int)
    host: str = ""
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1

    @property
    def inter_frame_gap_s(self):
        """Modbus RTU silence between frames: 3.5 characters of 11 bits, and a fixed
        1.75 ms above 19200 baud (Modbus over serial line, 2.5.1.1). TCP needs none."""
        if self.type != "rtu":
            return 0.0
        if self.baudrate > 19200:
            return 0.00175
        return 3.5 * 11.0 / self.baudrate


@dataclass(frozen=True)
class Point:
    chan: int                     # channel id byte (protocol/channels.py)
    chan_name: str                # "water_level.0"
    table: str
    address: int
    type: str                     # register type, or "bool" for coil/discrete
    byte_order: str = "big"
    word_order: str = "big"
    scale: float = 1.0
    offset: float = 0.0

    @property
    def count(self):
        """Registers (or bits) this point occupies."""
        return 2 if self.type in ("u32", "i32", "f32") else 1


@dataclass(frozen=True)
class RuleSpec:
    """A trip rule as written in the config, already in the channel's scaled integers."""
    id: int
    chan: int
    kind: str
    level: int
    params: tuple                 # ((name, int), ...) in the engine's wire order

    def param(self, name):
        for k, v in self.params:
            if k == name:
                return v
        raise KeyError(name)

    def to_wire(self):
        return [self.id, self.chan, RULE_KINDS.index(self.kind) + 1, self.level] + \
            [v for _k, v in self.params]

    def rule(self):
        """The protocol/trip.py Rule object."""
        return _trip.Rule.from_wire(self.to_wire())


@dataclass(frozen=True)
class Device:
    name: str
    bus: str
    node: int
    device_id: int
    poll_s: float
    timeout_s: float
    retries: int
    retry_backoff_s: float
    offline_probe_max_s: float
    points: tuple
    rules: tuple


@dataclass(frozen=True)
class AlarmOutput:
    device: str
    address: int
    min_level: int


@dataclass(frozen=True)
class Modbus:
    buses: tuple = ()
    devices: tuple = ()
    alarm_output: object = None   # AlarmOutput or None

    def bus(self, name):
        for b in self.buses:
            if b.name == name:
                return b
        raise KeyError(name)

    def device(self, name):
        for d in self.devices:
            if d.name == name:
                return d
        raise KeyError(name)


@dataclass(frozen=True)
class SiteConfig:
    path: str
    site: Site
    storage: Storage
    batch: Batch
    mqtt: Mqtt
    radio: object                 # Radio or None (a Modbus-only site)
    nodes: tuple
    modbus: Modbus
    warnings: tuple = ()          # ConfigIssue: worth a look, not fatal
    http: config_http.Http = config_http.OFF   # [http]: status page and /metrics
    security: object = None       # gateway.config_security.Security ([commands], reconnect)
    beidou: object = None         # gateway.config_beidou.Beidou or None (issue #17)
    zones: tuple = ()             # gateway.config_zones.Zone (issue #17)

    def node(self, node_id):
        for n in self.nodes:
            if n.id == node_id:
                return n
        return None
