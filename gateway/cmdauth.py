"""Who may command the nodes: signed command envelopes, checked before anything is parsed
(SPEC 9.5, docs/security.md).

A command on `<prefix>/<site>/<gw>/cmd/<verb>` is a CBOR map, the *envelope*:

  {"v": 1, "op": "alice", "site": "lushi", "gw": "gw1", "verb": "emergency",
   "t": 1767225600, "nonce": h'16 random bytes', "dangerous": false,
   "cmd": h'<the command document: JSON or CBOR bytes, as before>',
   "mac": h'HMAC-SHA256(operator key, "stationcmd/1" || canonical CBOR of the map
            without "mac")'}

The MAC covers site, gateway and verb, so a command cannot be replayed to another
gateway or as another verb; `t` (Unix s, within `max_skew_s` of the gateway's clock) and
the nonce (never accepted twice while `t` is in the window) stop replays of the same
bytes. An operator's entry in the operator keys file lists the verbs it may send and
whether it may send dangerous commands at all; a dangerous command (see `danger()`)
also needs `"dangerous": true` inside the signed envelope, so nobody lowers protection
by accident. Pure logic: time is passed in.
"""
import hashlib
import hmac
import os
import stat
import tomllib

import cbor2

ENVELOPE_V = 1
DOMAIN = b"stationcmd/1"
ENVELOPE_KEYS = ("v", "op", "site", "gw", "verb", "t", "nonce", "dangerous", "cmd", "mac")
MAX_ENVELOPE = 4096
NONCE_MIN, NONCE_MAX = 8, 32
DEFAULT_SKEW_S = 300
MAX_NONCES = 20000            # the replay cache's bound; refuse (not forget) beyond it

# Refusal reasons (counted as commands_refused_<reason>).
R_MALFORMED = "malformed"
R_UNKNOWN_OPERATOR = "unknown_operator"
R_MAC = "mac"
R_WRONG_TARGET = "wrong_target"
R_STALE = "stale"
R_REPLAY = "replay"
R_VERB = "verb_not_allowed"
R_DANGEROUS = "dangerous_not_confirmed"
R_RATE = "rate_limited"

# What counts as dangerous (logged as such, needs the explicit flag).
LONG_SAMPLE_S = 900           # a station sampling slower than every 15 min misses a surge
LONG_INTENSIFIED_S = 120
LONG_REPORT_S = 3600
LONG_EMERGENCY_S = 6 * 3600   # emergency mode drains the battery


class Refused(Exception):
    """A command that is not accepted; `reason` is one of the R_* names."""

    def __init__(self, reason, detail):
        super().__init__(detail)
        self.reason = reason


class Operator:
    __slots__ = ("name", "key", "verbs", "dangerous", "rate_per_min")

    def __init__(self, name, key, verbs, dangerous=False, rate_per_min=None):
        self.name, self.key, self.verbs = name, key, frozenset(verbs)
        self.dangerous, self.rate_per_min = dangerous, rate_per_min

    def __repr__(self):      # never the key
        return "Operator(%s, verbs=%s, dangerous=%s)" % (self.name, sorted(self.verbs),
                                                         self.dangerous)


def mac_input(env):
    body = {k: v for k, v in env.items() if k != "mac"}
    return DOMAIN + cbor2.dumps(body, canonical=True)


def sign(key, op, site, gw, verb, cmd_bytes, t, nonce=None, dangerous=False):
    """The envelope bytes an operator publishes (what `stationgw sign-command` prints)."""
    env = {"v": ENVELOPE_V, "op": op, "site": site, "gw": gw, "verb": verb, "t": int(t),
           "nonce": nonce if nonce is not None else os.urandom(16),
           "dangerous": bool(dangerous), "cmd": bytes(cmd_bytes)}
    env["mac"] = hmac.new(key, mac_input(env), hashlib.sha256).digest()
    return cbor2.dumps(env)


class TokenBucket:
    def __init__(self, per_min, burst):
        self.rate, self.burst = per_min / 60.0, float(burst)
        self.tokens, self.at = float(burst), None

    def take(self, now):
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class CommandAuth:
    """Checks envelopes. operators: {name: Operator}."""

    def __init__(self, operators, site, gw, max_skew_s=DEFAULT_SKEW_S, rate_per_min=20,
                 burst=10, max_nonces=MAX_NONCES):
        self.operators = dict(operators)
        self.site, self.gw = site, gw
        self.max_skew_s = max_skew_s
        self.rate_per_min, self.burst = rate_per_min, burst
        self.max_nonces = max_nonces
        self.nonces = {}          # (op, nonce bytes) -> t of the command
        self.buckets = {}
        self.refused = {}         # reason -> count
        self.accepted = 0

    def check(self, verb, payload, now):
        """-> (operator name, command bytes, dangerous flag). Raises Refused. Records the
        nonce only when everything else passed (a refused command can be sent again)."""
        try:
            env = self._envelope(payload)
            op = self.operators.get(env["op"])
            if op is None:
                raise Refused(R_UNKNOWN_OPERATOR, "operator %r is not in the operator keys "
                              "file" % (env["op"],))
            want = hmac.new(op.key, mac_input(env), hashlib.sha256).digest()
            if not hmac.compare_digest(want, env["mac"]):
                raise Refused(R_MAC, "signature does not verify for operator %r" % op.name)
            if env["site"] != self.site or env["gw"] != self.gw or env["verb"] != verb:
                raise Refused(R_WRONG_TARGET, "signed for %s/%s/%s, received on %s/%s/%s" % (
                    env["site"], env["gw"], env["verb"], self.site, self.gw, verb))
            if abs(now - env["t"]) > self.max_skew_s:
                raise Refused(R_STALE, "signed at t=%d, %d s from the gateway's clock (at most "
                              "%d): check the operator's clock and send it again"
                              % (env["t"], now - env["t"], self.max_skew_s))
            self._prune(now)
            nk = (op.name, env["nonce"])
            if nk in self.nonces:
                raise Refused(R_REPLAY, "nonce already used: a replay, or a repeat of the "
                              "same signed bytes; sign the command again")
            if verb not in op.verbs:
                raise Refused(R_VERB, "operator %r may not send %s (allowed: %s)"
                              % (op.name, verb, ", ".join(sorted(op.verbs)) or "none"))
            if len(self.nonces) >= self.max_nonces:
                raise Refused(R_RATE, "too many commands in the replay window; wait")
            b = self.buckets.get(op.name)
            if b is None:
                rate = op.rate_per_min or self.rate_per_min
                # a burst of up to half a minute's worth (an operator sending a batch)
                b = self.buckets[op.name] = TokenBucket(rate, max(self.burst, min(300,
                                                                                  rate // 2)))
            if not b.take(now):
                raise Refused(R_RATE, "operator %r sends faster than %d commands a minute"
                              % (op.name, op.rate_per_min or self.rate_per_min))
        except Refused as e:
            self.refused[e.reason] = self.refused.get(e.reason, 0) + 1
            raise
        self.nonces[nk] = env["t"]
        self.accepted += 1
        return op, env["cmd"], env["dangerous"]

    def allow_dangerous(self, op, confirmed, why):
        """A dangerous command: both the operator's permission and the signed flag."""
        if not op.dangerous:
            r = Refused(R_DANGEROUS, "operator %r may not send dangerous commands (%s)"
                        % (op.name, why))
        elif not confirmed:
            r = Refused(R_DANGEROUS, "dangerous command (%s): sign it with the dangerous "
                        "flag (`--dangerous`) if you mean it" % why)
        else:
            return
        self.refused[r.reason] = self.refused.get(r.reason, 0) + 1
        raise r

    def _envelope(self, payload):
        if len(payload) > MAX_ENVELOPE:
            raise Refused(R_MALFORMED, "command envelope over %d bytes" % MAX_ENVELOPE)
        try:
            env = cbor2.loads(payload)
        except Exception:
            env = None
        if not isinstance(env, dict):
            raise Refused(R_MALFORMED, "not a signed command envelope (a CBOR map): sign "
                          "commands with `stationgw sign-command` (docs/security.md)")
        if set(env) != set(ENVELOPE_KEYS):
            raise Refused(R_MALFORMED, "envelope keys must be exactly %s"
                          % ", ".join(ENVELOPE_KEYS))
        types = {"v": int, "op": str, "site": str, "gw": str, "verb": str, "t": int,
                 "nonce": bytes, "dangerous": bool, "cmd": bytes, "mac": bytes}
        for k, ty in types.items():
            v = env[k]
            if not isinstance(v, ty) or (ty is int and isinstance(v, bool)):
                raise Refused(R_MALFORMED, "envelope %r must be %s" % (k, ty.__name__))
        if env["v"] != ENVELOPE_V or not NONCE_MIN <= len(env["nonce"]) <= NONCE_MAX or \
                len(env["mac"]) != 32 or not 0 <= env["t"] < 1 << 40:
            raise Refused(R_MALFORMED, "envelope version, nonce, mac or t out of range")
        return env

    def _prune(self, now):
        if len(self.nonces) < 1024 and len(self.nonces) % 64:
            return
        cut = now - self.max_skew_s
        self.nonces = {k: t for k, t in self.nonces.items() if t >= cut}

    # persistence: nonces must survive a restart, or a command could be replayed
    def dump_nonces(self):
        return [[op, n, t] for (op, n), t in self.nonces.items()]

    def load_nonces(self, items, now):
        for it in items or ():
            if isinstance(it, list) and len(it) == 3 and isinstance(it[1], bytes) and \
                    isinstance(it[2], int) and it[2] >= now - self.max_skew_s:
                self.nonces[(it[0], it[1])] = it[2]


def danger(cmd, node_channels=None):
    """Why a parsed command (gateway.downlink.Command) is dangerous, or '' if it is not.
    Dangerous: anything sent to all nodes (except a status request), rules that remove
    protection (an empty list, or a channel of the node left without a rule), long
    sampling or report intervals, long emergency modes."""
    from protocol import messages as msg
    why = []
    if cmd.verb != "request-status" and cmd.all_nodes:
        why.append("all nodes")
    p = cmd.partial
    iv = p.get(msg.C_INTERVALS) or {}
    for key, lim, name in ((msg.I_SAMPLE_S, LONG_SAMPLE_S, "sample_s"),
                           (msg.I_INTENSIFIED_S, LONG_INTENSIFIED_S, "intensified_s"),
                           (msg.I_REPORT_S, LONG_REPORT_S, "report_s")):
        if iv.get(key, 0) > lim:
            why.append("%s %d > %d" % (name, iv[key], lim))
    if p.get(msg.C_EMERGENCY_S, 0) > LONG_EMERGENCY_S:
        why.append("emergency %d s > %d" % (p[msg.C_EMERGENCY_S], LONG_EMERGENCY_S))
    if msg.C_RULES in p:
        rules = p[msg.C_RULES]
        if not rules:
            why.append("removes every rule")
        elif node_channels:
            covered = {r[1] for r in rules}
            for n in cmd.nodes:
                left = sorted(c for c in node_channels.get(n, ()) if c not in covered)
                if left:
                    why.append("node %d channel(s) %s left without a rule" % (
                        n, ",".join(str(c) for c in left)))
    return "; ".join(why)


# ---------------------------------------------------------------------- the keys file

class OperatorsError(ValueError):
    """The operator keys file is wrong; the message names the file, key and fix."""


def load_operators(path, verbs):
    """`[operators.<name>] key = "<64 hex>", verbs = [...], dangerous = false,
    rate_per_min = 20` -> {name: Operator}. The file must be mode 0600 (no group/other
    bits): it holds secrets."""
    problems = []
    try:
        st = os.stat(path)
    except OSError as e:
        raise OperatorsError("%s: cannot read the operator keys file: %s"
                             % (path, e.strerror)) from None
    if st.st_mode & 0o077:
        raise OperatorsError("%s holds operator keys but is readable by group or others (mode "
                             "%04o): run `chmod 600 %s`" % (path, stat.S_IMODE(st.st_mode), path))
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise OperatorsError("%s: %s" % (path, e)) from None
    out = {}
    extra = [k for k in doc if k != "operators"]
    if extra:
        problems.append("unknown key(s) %s: only [operators.<name>] tables" % ", ".join(extra))
    ops = doc.get("operators", {})
    if not isinstance(ops, dict) or not ops:
        problems.append("no [operators.<name>] table: add one per operator "
                        "(`stationgw operator-key NAME` makes a key)")
        ops = {}
    for name, t in ops.items():
        where = "operators.%s" % name
        if not isinstance(t, dict):
            problems.append("%s must be a table" % where)
            continue
        for k in t:
            if k not in ("key", "verbs", "dangerous", "rate_per_min"):
                problems.append("%s.%s: unknown key; allowed key, verbs, dangerous, "
                                "rate_per_min" % (where, k))
        try:
            key = bytes.fromhex(t.get("key", "")) if isinstance(t.get("key"), str) else b""
        except ValueError:
            key = b""
        if len(key) != 32 or key.count(key[0]) == len(key):
            problems.append("%s.key must be 64 hex digits of a random 32-byte key (make one "
                            "with `stationgw operator-key %s`)" % (where, name))
        v = t.get("verbs")
        if not isinstance(v, list) or not v or any(x not in verbs for x in v):
            problems.append("%s.verbs must be a non-empty list of %s" % (where, ", ".join(verbs)))
            v = []
        d = t.get("dangerous", False)
        if not isinstance(d, bool):
            problems.append("%s.dangerous must be true or false" % where)
        r = t.get("rate_per_min")
        if r is not None and (not isinstance(r, int) or isinstance(r, bool) or not 1 <= r <= 600):
            problems.append("%s.rate_per_min must be an integer 1..600" % where)
            r = None
        out[name] = Operator(name, key, v, d is True, r)
    if problems:
        raise OperatorsError("%s: %s" % (path, "; ".join(problems)))
    return out
