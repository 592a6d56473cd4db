"""Scenarios as data: hil/scenarios/<name>.toml -> Scenario.

Times may be given in hours, minutes or seconds by suffix (`at_h = 2`, `for_min = 20`,
`duration_s = 600`). Every error names the file, the key and what is allowed.
See docs/hil.md for the format."""
import secrets
import tomllib
from pathlib import Path

from hil import world as W
from protocol import channels

DIR = Path(__file__).resolve().parent / "scenarios"
SOURCES = ("rain", "counter", "direct", "loop420", "drawwire")
MODELS = ("storm", "dry", "creep", "hydrograph", "steady")
FAULTS = ("spikes", "stuck", "drift", "broken_loop", "open_circuit", "silent")
RUNTIMES = ("micropython", "cpython")
_UNITS = (("_h", 3600.0), ("_min", 60.0), ("_s", 1.0))


class ScenarioError(ValueError):
    pass


def names():
    return sorted(p.stem for p in DIR.glob("*.toml"))


def secs(d, base, where, default=None):
    found = [(base + suf, f) for suf, f in _UNITS if base + suf in d]
    if len(found) > 1:
        raise ScenarioError("%s: give only one of %s" % (where, ", ".join(k for k, _ in found)))
    if not found:
        if default is None:
            raise ScenarioError("%s: %s_h, %s_min or %s_s is required" % (where, base, base, base))
        return float(default)
    k, f = found[0]
    v = d[k]
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
        raise ScenarioError("%s.%s: %r: allowed a number >= 0" % (where, k, v))
    return float(v) * f


class Channel:
    def __init__(self, d, where, seed):
        self.name = d.get("id")
        try:
            self.chan = _chan(self.name)
        except (ValueError, KeyError, TypeError):
            raise ScenarioError("%s.id: %r: allowed \"<kind>.<instance>\" with a kind of %s"
                                % (where, self.name, ", ".join(
                                    v[0] for v in channels.KINDS.values()))) from None
        self.source = d.get("source", "direct")
        if self.source not in SOURCES:
            raise ScenarioError("%s.source: %r: allowed %s" % (where, self.source,
                                                               ", ".join(SOURCES)))
        self.tip_mm = d.get("tip_mm", 0.2)
        self.value_4ma = d.get("value_4ma", 0)
        self.value_20ma = d.get("value_20ma", 10000)
        self.sensor = W.Sensor(_model(d, where, seed), [
            _fault(f, "%s.faults[%d]" % (where, i), seed + i) for i, f in
            enumerate(d.get("faults", []))])


def _chan(name):
    kind, inst = name.split(".")
    return channels.chan_id(channels.kind_by_name(kind), int(inst))


def _model(d, where, seed):
    m = d.get("model", "steady")
    if m == "storm":
        burst = secs(d, "burst_end", where, -1)
        return W.RainGauge(W.storm(secs(d, "start", where), secs(d, "duration", where),
                                   d.get("total_mm", 50.0), burst if burst >= 0 else None,
                                   d.get("burst_mm", 53.9), secs(d, "burst", where, 1200)),
                           d.get("tip_mm", 0.2))
    if m == "dry":
        return W.RainGauge(W.Hyetograph(), d.get("tip_mm", 0.2))
    if m == "creep":
        return W.Creep(secs(d, "failure", where), secs(d, "acceleration", where),
                       d.get("v0_mm_h", 0.5), d.get("start_mm", 100.0), d.get("noise", 3.0),
                       seed)
    if m == "hydrograph":
        return W.Hydrograph(d.get("base_mm", 1500), d.get("rise_mm", 2000),
                            secs(d, "start", where), secs(d, "peak_after", where),
                            d.get("k", 3.0))
    if m == "steady":
        return W.Steady(d.get("value", 0), d.get("wander", 0.0), secs(d, "period", where, 86400),
                        d.get("noise", 0.0), seed)
    raise ScenarioError("%s.model: %r: allowed %s" % (where, m, ", ".join(MODELS)))


def _fault(f, where, seed):
    k = f.get("kind")
    start = secs(f, "start", where, 0)
    end = secs(f, "end", where, 1e12)
    if k == "spikes":
        return W.Spikes(f.get("p", 0.01), f.get("magnitude", 1000), start, end, seed)
    if k == "stuck":
        return W.Stuck(start, end)
    if k == "drift":
        return W.Drift(f.get("per_h", 10), start, end)
    if k == "broken_loop":
        return W.BrokenLoop(start, end)
    if k == "open_circuit":
        return W.OpenCircuit(start, end)
    if k == "silent":
        return W.Silent(start, end)
    raise ScenarioError("%s.kind: %r: allowed %s" % (where, k, ", ".join(FAULTS)))


class GaugeSpec:
    """A Modbus-wired gauge at the gateway: a virtual node (SPEC: per-device seqs)."""

    def __init__(self, d, where, seed):
        self.node = d.get("node")
        if not isinstance(self.node, int) or not 1 <= self.node <= 65534:
            raise ScenarioError("%s.node: %r: allowed an integer 1..65534" % (where, self.node))
        self.name = d.get("name", "gauge-%d" % self.node)
        self.channel = Channel(d, where, seed)
        if channels.kind_of(self.channel.chan) != 3:
            raise ScenarioError("%s.id: %r: a gauge measures water_level" % (where,
                                                                          self.channel.name))


class NodeSpec:
    def __init__(self, d, where, defaults, seed):
        self.id = d.get("id")
        if not isinstance(self.id, int) or not 1 <= self.id <= 65534:
            raise ScenarioError("%s.id: %r: allowed an integer 1..65534" % (where, self.id))
        self.key = secrets.token_bytes(32)      # fresh per run: no default keys, ever
        self.channels = [Channel(c, "%s.channels[%d]" % (where, i), seed * 101 + self.id * 7 + i)
                         for i, c in enumerate(d.get("channels", []))]
        if not self.channels:
            raise ScenarioError("%s.channels: at least one channel is required" % where)
        self.rules = d.get("rules", [])
        self.intervals = dict(defaults)
        self.intervals.update(d.get("intervals", {}))
        self.log_kb = d.get("log_kb", 128)


class Scenario:
    def __init__(self, doc, path):
        self.path = str(path)
        self.name = doc.get("name", Path(path).stem)
        self.description = doc.get("description", "")
        self.duration_s = secs(doc, "duration", self.path)
        self.drain_s = secs(doc, "drain", self.path, 7200)
        self.seed = doc.get("seed", 1)
        self.runtime = doc.get("runtime", "micropython")
        if self.runtime not in RUNTIMES:
            raise ScenarioError("%s: runtime: %r: allowed %s" % (self.path, self.runtime,
                                                                  ", ".join(RUNTIMES)))
        # the 64-bit unix port: the node's code as .mpy (~132 KB, every object twice an
        # ESP32's; nodeproc keeps the config checks loaded) + data: remote-command, which
        # applies a set-rules CONFIG, runs at 177.8 KB live at most and passes at 224K.
        # (Its 188.6 KB and its death at 288K were the node compiling source: procs.py.)
        # The node's real budget is tests/firmware/test_node_32bit.py (32-bit, 96 KB).
        self.heap = doc.get("heap", "256K")
        r = doc.get("radio", {})
        self.radio = {"sf": r.get("sf", 9), "bw_hz": r.get("bw_hz", 125000), "cr": r.get("cr", 1),
                      "loss": r.get("loss", 0.0), "delay_s": r.get("delay_s", 0.002)}
        defaults = {"sample_s": 60, "intensified_s": 10, "report_s": 600, "status_s": 3600}
        defaults.update(doc.get("intervals", {}))
        self.nodes = [NodeSpec(n, "%s: nodes[%d]" % (self.path, i), defaults, self.seed)
                      for i, n in enumerate(doc.get("nodes", []))]
        if not self.nodes:
            raise ScenarioError("%s: nodes: at least one [[nodes]] table is required" % self.path)
        self.gauges = [GaugeSpec(g, "%s: gauges[%d]" % (self.path, i), self.seed * 31 + i)
                       for i, g in enumerate(doc.get("gauges", []))]
        self.actions = []
        for i, a in enumerate(doc.get("actions", [])):
            where = "%s: actions[%d]" % (self.path, i)
            b = dict(a)
            b["at"] = secs(a, "at", where, 0)
            for k in ("for", "until", "max_off"):
                if any(k + s in a for s, _ in _UNITS):
                    b[k] = secs(a, k, where)
            self.actions.append(b)
        # [[zones]] go to the gateway's site.toml as they are (gateway/config_zones.py checks them)
        self.zones = doc.get("zones", [])
        self.beidou = doc.get("beidou")       # a simulated BeiDou terminal (hil/bdterminal.py)
        g = doc.get("gateway", {})
        self.gateway = {"max_readings": g.get("max_readings", 5000),
                        "max_age_s": g.get("max_age_s", 0.2), "inflight": g.get("inflight", 8)}
        self.expect = doc.get("expect", {})
        self.failure_s = None
        if any("failure" + s in self.expect for s, _ in _UNITS):
            self.failure_s = secs(self.expect, "failure", self.path + ": expect")

    def intervals_of(self, node):
        for n in self.nodes:
            if n.id == node:
                return n.intervals
        raise KeyError(node)


def load(name_or_path, duration_scale=1.0):
    p = Path(name_or_path)
    if not p.suffix:
        p = DIR / (name_or_path + ".toml")
    if not p.exists():
        raise ScenarioError("no scenario %r: `python -m hil list` shows them (%s)"
                            % (name_or_path, ", ".join(names())))
    with open(p, "rb") as f:
        try:
            doc = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ScenarioError("%s: not valid TOML: %s" % (p, e)) from None
    return Scenario(doc, p)
