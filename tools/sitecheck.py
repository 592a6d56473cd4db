"""What the gateway needs before it hears a provisioned node, checked by `stationctl
provision` before it touches the board: the keys file private (the gateway refuses a
keys file group or others can read), and the node listed in site.toml `[[nodes]]` with
that keys file as `[radio] keys_file` (the gateway ignores frames of unlisted nodes).

The site config is `--site-config`, or site.toml beside the keys file (the layout of
/etc/stationgw/); without one only the keys file is checked, and provision says what
the gateway's site.toml needs.
"""
import os
import stat
import tomllib

from tools.errors import CONFIG_INVALID, REGISTRY, ToolError


def nodes_snippet(node, channels):
    return ('[[nodes]]\nid = %d\nname = "node-%d"          # a name the duty officer knows\n'
            'channels = [%s]' % (node, node, ", ".join('"%s"' % c for c in channels)))


def check_keys_file(path):
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise ToolError(REGISTRY, "keys file %s is readable by group or others (mode %04o): the "
                        "gateway refuses it. Run `chmod 600 %s` (owner: the gateway's service "
                        "user), then provision again" % (path, mode, path))


def find_site_config(registry, given=None):
    if given:
        return given
    beside = os.path.join(os.path.dirname(os.path.abspath(registry)), "site.toml")
    return beside if os.path.exists(beside) else None


def check_site(site_path, registry, node, channels):
    """None if the site config lists the node with this keys file; else ToolError."""
    try:
        with open(site_path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise ToolError(CONFIG_INVALID, "--site-config %s: %s" % (site_path, e.strerror)) from None
    except tomllib.TOMLDecodeError as e:
        raise ToolError(CONFIG_INVALID, "%s: TOML syntax error: %s: run `stationgw "
                        "check-config %s`" % (site_path, e, site_path)) from None
    radio = doc.get("radio") if isinstance(doc.get("radio"), dict) else None
    if radio is None:
        raise ToolError(CONFIG_INVALID, "%s has no [radio] section, so its gateway hears no "
                        "radio node: add [radio] (port, module, keys_file = \"%s\"), see "
                        "gateway/examples/site.toml" % (site_path, registry))
    kf = radio.get("keys_file", "")
    if isinstance(kf, str) and kf:
        kf = kf if os.path.isabs(kf) else os.path.join(os.path.dirname(
            os.path.abspath(site_path)), kf)
        if os.path.abspath(kf) != os.path.abspath(registry):
            raise ToolError(CONFIG_INVALID, "%s: [radio] keys_file is %s, not the registry %s "
                            "given here: provision with --registry %s so node and gateway "
                            "share the key" % (site_path, kf, registry, kf))
    listed = [n for n in doc.get("nodes", []) if isinstance(n, dict) and n.get("id") == node]
    if not listed:
        raise ToolError(CONFIG_INVALID, "node %d is not in %s, so its gateway would ignore it. "
                        "Add:\n\n%s\n\nthen run `stationgw check-config %s`, restart the "
                        "gateway, and provision again"
                        % (node, site_path, nodes_snippet(node, channels), site_path))
