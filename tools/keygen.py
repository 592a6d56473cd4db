"""`stationctl keygen NODE_ID --registry keys.toml`: a new random key for one node.

The registry is the gateway's keys file (`radio.keys_file` in site.toml):

    [keys]
    "101" = "<64 hex digits: a 32-byte key>"

It is rewritten whole, in that canonical form, through a temporary file with mode 0600
that is fsync'd and renamed over the old one: a crash leaves the old file or the new
one, never half of either, and the key is never readable by group or others, not even
for a moment. The result is checked with the gateway's own loader
(`gateway.config.load_keys`) before it replaces the old file, so what keygen writes the
gateway accepts. An existing key is only replaced with `--rotate`. Keys are never
printed; `provision` reads them from this file.
"""
import os
import secrets
import stat
import tomllib

from gateway import config as gconfig
from tools.errors import NODE_NOT_IN_REGISTRY, REGISTRY, ToolError

KEY_BYTES = 32
NODE_ID_MAX = gconfig.NODE_ID_MAX

HEADER = """\
# Node radio keys for stationgw (radio.keys_file in site.toml), one per node id.
# Written by `stationctl keygen`; `stationctl provision` copies a node's key onto the node.
# Keep this file mode 0600 and owned by the gateway's service user. Never mail or paste it.
"""


def check_node_id(node):
    if not 1 <= node <= NODE_ID_MAX:
        raise ToolError(REGISTRY, "node id %d out of range: allowed 1..%d" % (node, NODE_ID_MAX))
    return node


def new_key():
    while True:
        k = secrets.token_bytes(KEY_BYTES)
        if k.count(k[0]) != len(k):       # the gateway refuses one repeated byte
            return k


def read_entries(path):
    """The [keys] table as {node: text} exactly as written (placeholders included), or {}
    if the file does not exist. ToolError(REGISTRY) if it cannot be read or parsed."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ToolError(REGISTRY, "%s: cannot read the keys file: %s" % (path, e.strerror)) from None
    except tomllib.TOMLDecodeError as e:
        raise ToolError(REGISTRY, "%s: not valid TOML (%s): fix it by hand or move it away "
                        "and run keygen for every node again" % (path, e)) from None
    other = sorted(k for k in doc if k != "keys")
    if other:
        raise ToolError(REGISTRY, "%s: key '%s': a keys file holds only a [keys] table: move "
                        "'%s' to site.toml or delete it" % (path, other[0], other[0]))
    t = doc.get("keys", {})
    if not isinstance(t, dict):
        raise ToolError(REGISTRY, "%s: key 'keys' must be a table: [keys]" % path)
    out = {}
    for name, v in t.items():
        if not name.isdigit() or not 1 <= int(name) <= NODE_ID_MAX:
            raise ToolError(REGISTRY, "%s: key 'keys.\"%s\"': node ids are integers 1..%d "
                            "written as strings, e.g. \"101\"" % (path, name, NODE_ID_MAX))
        out[int(name)] = v
    return out


def load_keys(path):
    """{node: key bytes} through the gateway's loader (same checks as the gateway)."""
    if not os.path.exists(path):
        raise ToolError(NODE_NOT_IN_REGISTRY, "%s: no such keys file: create it with "
                        "`stationctl keygen NODE_ID --registry %s`" % (path, path))
    try:
        keys = gconfig.load_keys(path)
    except gconfig.ConfigError as e:
        raise ToolError(REGISTRY, "%s\nfix the keys file (or make new keys with "
                        "`stationctl keygen NODE_ID --registry %s --rotate`)" % (e, path)) from None
    return {n: keys.get(n) for n in keys.nodes()}


def key_for(path, node):
    keys = load_keys(path)
    k = keys.get(node)
    if k is None:
        have = ", ".join(str(n) for n in sorted(keys)) or "none"
        raise ToolError(NODE_NOT_IN_REGISTRY, "node %d is not in the registry %s (it has: %s): "
                        "run `stationctl keygen %d --registry %s` first, then restart the "
                        "gateway so it learns the key" % (node, path, have, node, path))
    return k


def is_usable(text):
    """A real key, as the gateway would accept it (not a placeholder, not trivial)."""
    try:
        raw = bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        return False
    return len(raw) == KEY_BYTES and raw.count(raw[0]) != len(raw)


def render(entries):
    lines = [HEADER, "[keys]"]
    for node in sorted(entries):
        lines.append('"%d" = "%s"' % (node, entries[node]))
    return "\n".join(lines) + "\n"


def write_registry(path, entries):
    """Replace the file atomically with mode 0600, keeping the old owner."""
    path = os.path.abspath(path)
    d = os.path.dirname(path)
    tmp = os.path.join(d, ".%s.%d.tmp" % (os.path.basename(path), os.getpid()))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise ToolError(REGISTRY, "%s: cannot write in %s: %s" % (path, d, e.strerror)) from None
    try:
        os.fchmod(fd, 0o600)     # whatever the umask
        try:
            st = os.stat(path)
            if os.geteuid() == 0:
                os.fchown(fd, st.st_uid, st.st_gid)
        except FileNotFoundError:
            pass
        with os.fdopen(fd, "w") as f:
            f.write(render(entries))
            f.flush()
            os.fsync(f.fileno())
        try:
            gconfig.load_keys(tmp)
        except gconfig.ConfigError as e:  # pragma: no cover - render() and the loader disagree
            raise ToolError(REGISTRY, "internal error: the gateway would refuse the new keys "
                            "file (%s); the old file is unchanged" % e) from None
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def keygen(node, registry, rotate=False):
    """Create (or with rotate=True replace) the node's key. Returns a short report."""
    check_node_id(node)
    entries = read_entries(registry)
    old = entries.get(node)
    note = ""
    if old is not None and is_usable(old) and not rotate:
        raise ToolError(REGISTRY, "node %d already has a key in %s: keeping it. To replace it "
                        "(a lost or leaked key) add --rotate, then provision the node again"
                        % (node, registry))
    if old is not None and not is_usable(old):
        note = " (it replaces a placeholder or invalid entry)"
    for n, v in entries.items():
        if n != node and not is_usable(v):
            raise ToolError(REGISTRY, "%s: key 'keys.\"%d\"' is a placeholder or not 64 hex "
                            "digits: run `stationctl keygen %d --registry %s` for it first"
                            % (registry, n, n, registry))
    entries[node] = new_key().hex()
    write_registry(registry, entries)
    mode = stat.S_IMODE(os.stat(registry).st_mode)
    if old is not None and is_usable(old):
        return ("node %d: key ROTATED in %s (mode %04o)%s.\nUntil you provision the node "
                "again it still signs with its old key and the gateway rejects its frames "
                "(MIC). Next: restart the gateway, then\n  stationctl provision --port PORT %d "
                "--registry %s --profile PROFILE" % (node, registry, mode, note, node, registry))
    return ("node %d: key created in %s (mode %04o, %d node(s))%s.\nNext: restart the gateway "
            "so it learns the key, then\n  stationctl provision --port PORT %d --registry %s "
            "--profile PROFILE" % (node, registry, mode, len(entries), note, node, registry))


def run(args):
    print(keygen(args.node, args.registry, args.rotate))
    return 0
