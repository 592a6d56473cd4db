"""Zone-wide warning fan-out (docs/zones.md): when any member of a warning zone (a slope
and the village below it) reaches the zone's trigger level, the gateway sounds every
siren of the zone - the other radio nodes' sirens and strobes through an authenticated
ZONE downlink (SPEC.md 3.5), and wired sirens and the village broadcast controller
through Modbus coils - at once, without waiting for the platform. The zone clears only
by its configured rule (`members_normal`: every member back to normal for `hold_s`) or
by an authorised `zone-clear` command.

Pure logic, no I/O and no clock reads: `ZoneEngine.level_changed(node, level, now)` and
`tick(now)` return Actions; the daemon writes coils and the radio ingest piggybacks
ZONE frames on the ACKs it sends (`node_level(node)`)."""

SOUND = "sound"
CLEAR = "clear"


class Action:
    __slots__ = ("zone", "what", "level", "nodes", "coils", "reason")

    def __init__(self, zone, what, level, nodes, coils, reason):
        self.zone, self.what, self.level = zone, what, level
        self.nodes, self.coils, self.reason = nodes, coils, reason

    def __repr__(self):
        return "Action(%s %s level=%d nodes=%s coils=%s: %s)" % (
            self.zone, self.what, self.level, sorted(self.nodes), self.coils, self.reason)


class _State:
    __slots__ = ("level", "since", "trigger", "quiet_since")

    def __init__(self):
        self.level = 0            # the zone's sounding level (0: silent)
        self.since = None
        self.trigger = None       # the member that set it off
        self.quiet_since = None   # every member normal since


class ZoneEngine:
    """zones: gateway.config_zones.Zone objects (name, number, nodes, sources, coils,
    min_level, clear, hold_s)."""

    def __init__(self, zones):
        self.zones = tuple(zones)
        self.state = dict((z.name, _State()) for z in self.zones)
        self.levels = {}          # member source (radio node id or "modbus:<dev>") -> level

    def _members(self, z):
        return tuple(z.nodes) + tuple(z.sources)

    def level_changed(self, source, level, now):
        """A member's own warning level moved (from its alarms). Returns Actions."""
        self.levels[source] = level
        out = []
        for z in self.zones:
            if source not in self._members(z):
                continue
            st = self.state[z.name]
            if level >= z.min_level and level > st.level:
                first = st.level == 0
                st.level = level
                st.trigger = source
                st.quiet_since = None
                if first:
                    st.since = now
                out.append(Action(z.name, SOUND, level, set(z.nodes), list(z.coils),
                                  "%s reached level %d" % (source, level)))
            elif st.level and self._all_normal(z):
                if st.quiet_since is None:
                    st.quiet_since = now
            elif st.level:
                st.quiet_since = None
        out.extend(self.tick(now))
        return out

    def _all_normal(self, z):
        for m in self._members(z):
            if self.levels.get(m, 0) > 0:
                return False
        return True

    def tick(self, now):
        out = []
        for z in self.zones:
            st = self.state[z.name]
            if st.level and z.clear == "members_normal" and st.quiet_since is not None \
                    and now - st.quiet_since >= z.hold_s:
                out.append(self._clear(z, "every member normal for %d s" % z.hold_s))
        return out

    def next_due(self):
        t = None
        for z in self.zones:
            st = self.state[z.name]
            if st.level and z.clear == "members_normal" and st.quiet_since is not None:
                d = st.quiet_since + z.hold_s
                t = d if t is None or d < t else t
        return t

    def command(self, verb, zone_name, now):
        """An authorised operator command: `zone-clear` or `zone-sound` (level red)."""
        z = self.zone(zone_name)
        if verb == "zone-clear":
            if not self.state[z.name].level:
                return []
            return [self._clear(z, "cleared by an authorised command")]
        if verb == "zone-sound":
            st = self.state[z.name]
            st.level, st.since, st.trigger, st.quiet_since = 4, now, "command", None
            return [Action(z.name, SOUND, 4, set(z.nodes), list(z.coils), "sounded by command")]
        raise ValueError("zone command %r: allowed zone-clear, zone-sound" % (verb,))

    def zone(self, name):
        for z in self.zones:
            if z.name == name:
                return z
        raise KeyError("no zone %r: configured zones are %s" % (
            name, ", ".join(z.name for z in self.zones) or "none"))

    def _clear(self, z, reason):
        st = self.state[z.name]
        st.level, st.since, st.trigger, st.quiet_since = 0, None, None, None
        return Action(z.name, CLEAR, 0, set(z.nodes), list(z.coils), reason)

    def node_level(self, node):
        """(level, zone number) the node must sound for its zones (the highest)."""
        best = (0, 0)
        for z in self.zones:
            st = self.state[z.name]
            if node in z.nodes and st.level > best[0]:
                best = (st.level, z.number)
        return best

    def coil_wanted(self):
        """{(device, address): on} over all zones (a coil in two zones is on if either is)."""
        want = {}
        for z in self.zones:
            on = self.state[z.name].level > 0
            for c in z.coils:
                want[c] = want.get(c, False) or on
        return want

    def snapshot(self):
        return dict((z.name, {"level": self.state[z.name].level, "since": self.state[z.name].since,
                              "trigger": self.state[z.name].trigger}) for z in self.zones)
