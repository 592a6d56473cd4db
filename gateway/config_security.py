"""Config sections of issue 12: `[commands]` (who may command the nodes, and how much
work commands may queue) and `[mqtt.reconnect]` (how fast the uplink comes back after a
broker outage). gateway/config.py calls `parse(c, doc)` and keeps the result in
`SiteConfig.security`; reference in docs/security.md.

  [commands]
  operators_file = "operators.toml"   # mode 0600; without it commands are refused
  max_skew_s = 300                    # signed time stamp window (and the replay cache span)
  rate_per_min = 20                   # per operator unless its entry says otherwise
  max_pending_per_node = 16
  max_pending_total = 512

  [mqtt.reconnect]
  min_s = 0.5                         # first retry after a lost connection
  max_s = 30.0                        # back-off cap
  probe_s = 0.25                      # while waiting, a TCP probe of host:port this often;
                                      # when it answers, reconnect at once (0: off)
"""
from dataclasses import dataclass

from gateway import cmdauth

COMMANDS_KEYS = ("operators_file", "max_skew_s", "rate_per_min", "max_pending_per_node",
                 "max_pending_total")
RECONNECT_KEYS = ("min_s", "max_s", "probe_s")


@dataclass(frozen=True)
class Commands:
    operators_file: str
    operators: dict
    max_skew_s: int
    rate_per_min: int
    max_pending_per_node: int
    max_pending_total: int

    def __repr__(self):       # operators hold keys: names only
        return "Commands(%s: operators %s)" % (self.operators_file, sorted(self.operators))


@dataclass(frozen=True)
class Reconnect:
    min_s: float = 0.5
    max_s: float = 30.0
    probe_s: float = 0.25


@dataclass(frozen=True)
class Security:
    commands: object          # Commands, or None: every command is refused
    reconnect: Reconnect


def parse(c, doc):
    """c: gateway.config._Checker. Records issues in c; returns Security."""
    from gateway import downlink as dl
    commands = None
    t = c.table(doc, "commands", "commands", required=False)
    if t is not None:
        c.unknown(t, COMMANDS_KEYS, "commands")
        path = c.file_path(t, "operators_file", "commands", required=True, secret=True,
                           hint=": make keys with `stationgw operator-key NAME` (mode 0600)")
        ops = {}
        if path and not any(i.key == "commands.operators_file" for i in c.issues):
            try:
                ops = cmdauth.load_operators(path, dl.VERBS)
            except cmdauth.OperatorsError as e:
                c.err("commands.operators_file", str(e))
        commands = Commands(
            operators_file=path, operators=ops,
            max_skew_s=c.value(t, "max_skew_s", "commands", int, default=300, lo=5, hi=3600),
            rate_per_min=c.value(t, "rate_per_min", "commands", int, default=20, lo=1, hi=600),
            max_pending_per_node=c.value(t, "max_pending_per_node", "commands", int,
                                         default=dl.MAX_PENDING_PER_NODE, lo=1, hi=256),
            max_pending_total=c.value(t, "max_pending_total", "commands", int,
                                      default=dl.MAX_PENDING_TOTAL, lo=1, hi=10000))
    rc = Reconnect()
    m = doc.get("mqtt")
    r = c.table(m, "reconnect", "mqtt.reconnect", required=False) if isinstance(m, dict) \
        else None
    if r is not None:
        c.unknown(r, RECONNECT_KEYS, "mqtt.reconnect")
        rc = Reconnect(
            min_s=c.value(r, "min_s", "mqtt.reconnect", float, default=0.5, lo=0.05, hi=60.0),
            max_s=c.value(r, "max_s", "mqtt.reconnect", float, default=30.0, lo=0.1, hi=3600.0),
            probe_s=c.value(r, "probe_s", "mqtt.reconnect", float, default=0.25, lo=0.0,
                            hi=60.0))
        if rc.probe_s is not None and 0 < rc.probe_s < 0.02:
            c.err("mqtt.reconnect.probe_s", "%g is too often: 0 (off) or 0.02..60" % rc.probe_s)
        if rc.min_s is not None and rc.max_s is not None and rc.max_s < rc.min_s:
            c.err("mqtt.reconnect.max_s", "must be >= min_s (%g)" % rc.min_s)
    return Security(commands, rc)
