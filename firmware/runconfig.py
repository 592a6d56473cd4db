"""The configuration a node runs on, as plain records.

A `NodeConfig` is built and filled by firmware/nodeconfig.py (`checked(raw, source)`),
which holds the checks, the console messages and the flash handling. That module is
large and needed only at boot and when a CONFIG downlink arrives, so it lives apart and
can be unloaded (firmware/unload.py) while these records, which the running node keeps,
stay small. nodeconfig.py imports this module, never the reverse."""
DEFAULT_INTERVALS = {"sample_s": 60, "intensified_s": 10, "report_s": 600, "status_s": 3600}


class NodeConfig:
    """A checked configuration: its fields are set by firmware/nodeconfig.py's checks
    (build one with nodeconfig.checked(raw, source))."""

    def chan_ids(self):
        return [c[0] for c in self.channels]

    def __repr__(self):
        # never the key: consoles end up in photos and support tickets
        return "NodeConfig(v%d node %d board %s, %d channels, %d rules)" % (
            self.version, self.node, self.board, len(self.channels), len(self.rules))


class SafeConfig:
    """No valid config on flash: sample the supply, log, never transmit (no key)."""

    def __init__(self, board="unknown"):
        from protocol.channels import chan_id, kind_by_name
        self.source = "built-in safe defaults"
        self.version = 0
        self.node = 0
        self.key = None
        self.board = board
        self.channels = [(chan_id(kind_by_name("battery")), "battery", {})]
        self.intervals = dict(DEFAULT_INTERVALS)
        self.rules = []
        self.sleep = "none"
        self.log_bytes = 64 * 1024
        self.watchdog_ms = 60000
        self.radio = {}
        self.safe = True

    def chan_ids(self):
        return [c[0] for c in self.channels]

    def __repr__(self):
        return "SafeConfig(no key: logging only)"
