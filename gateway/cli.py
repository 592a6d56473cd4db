"""`stationgw`: the site gateway's command line.

    stationgw check-config site.toml     exit 0 and a summary, or exit 2 and every problem
    stationgw run [-c] site.toml         the daemon (gateway/daemon.py: main(cfg) -> exit code)
    stationgw status [[-c] site.toml]    the daemon's figures (gateway/daemon.py: status(cfg, as_json))
    stationgw operator-key / sign-command  operators' command keys and signed commands
                                         (gateway/opcli.py)

The config file may be given as an argument or with -c/--config, for every command.
Exit codes: 0 ok, 1 the gateway failed (its log says why), 2 bad config or usage.
"""
import argparse
import sys

from gateway import config as gconfig
from protocol import channels, levels

DEFAULT_CONFIG = "/etc/stationgw/site.toml"
EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 2


def summary(cfg):
    """A few lines an operator can check against the site plan."""
    out = ["%s: valid" % cfg.path,
           "site %s, gateway %s" % (cfg.site.id, cfg.site.gateway_id)]
    m = cfg.mqtt
    out.append("mqtt %s:%d (%s, %s%s), topics %s/%s/%s/..." % (
        m.host, m.port, "MQTT 5" if m.protocol == "v5" else "MQTT 3.1.1",
        "TLS" if m.tls else "no TLS", ", mTLS" if m.tls_cert else "",
        m.topic_prefix, cfg.site.id, cfg.site.gateway_id))
    out.append("storage %s (quota %d MB)" % (cfg.storage.path, cfg.storage.quota_mb))
    if cfg.radio is not None:
        r = cfg.radio
        out.append("radio %s on %s, channel %d, air rate %d, %d node(s), keys for %d"
                   % (r.module, r.port, r.channel, r.air_rate, len(cfg.nodes), len(r.keys)))
        for n in cfg.nodes:
            out.append("  node %d %s %s" % (n.id, n.name,
                                            " ".join(channels.label(c) for c in n.channels)))
    else:
        out.append("radio: none (Modbus-only site)")
    mb = cfg.modbus
    for b in mb.buses:
        where = "%s:%d" % (b.host, b.port) if b.type == "tcp" else \
            "%s %d %s%d" % (b.port, b.baudrate, b.parity, b.stopbits)
        out.append("modbus bus %s: %s %s" % (b.name, b.type, where))
        for d in mb.devices:
            if d.bus == b.name:
                out.append("  device %s: id %d, node %d, every %gs, %d point(s), %d rule(s)"
                           % (d.name, d.device_id, d.node, d.poll_s, len(d.points),
                              len(d.rules)))
    if mb.alarm_output is not None:
        a = mb.alarm_output
        out.append("siren: coil %d on %s at %s and above" % (a.address, a.device,
                                                              levels.name(a.min_level)))
    for w in cfg.warnings:
        out.append("warning: %s" % w)
    return "\n".join(out)


def _load(path):
    try:
        return gconfig.load(path)
    except gconfig.ConfigError as e:
        n = len(e.issues)
        print("%s: %d problem%s:" % (path, n, "" if n == 1 else "s"), file=sys.stderr)
        for issue in e.issues:
            print("  %s" % issue, file=sys.stderr)
        return None


def _daemon():
    from gateway import daemon
    return daemon


def cmd_check_config(args, load_daemon=None):
    cfg = _load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    print(summary(cfg))
    return EXIT_OK


def _status_page(cfg, daemon):
    """The status page's hook for daemon.main, or an error line (port taken, ...)."""
    from gateway import statuspage
    try:
        return statuspage.attach(cfg, lambda: daemon.read_status(cfg)), None
    except OSError as e:
        return None, ("cannot serve the status page on %s:%d: %s. Pick another [http] port "
                      "in %s, or stop what listens there (`ss -ltnp | grep :%d`)"
                      % (cfg.http.bind, cfg.http.port, e.strerror or e, cfg.path,
                         cfg.http.port))


def cmd_run(args, load_daemon=_daemon):
    daemon = load_daemon()
    cfg = _load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    if not cfg.http.enabled:
        return daemon.main(cfg)
    attach, err = _status_page(cfg, daemon)
    if err:
        print("stationgw: %s" % err, file=sys.stderr)
        return EXIT_FAIL
    return daemon.main(cfg, attach=attach)


def cmd_status(args, load_daemon=_daemon):
    daemon = load_daemon()
    cfg = _load(args.config)
    if cfg is None:
        return EXIT_CONFIG
    return daemon.status(cfg, args.json)


def _config_arg(p):
    """`CMD site.toml` and `CMD -c site.toml` both work (one uniform command line)."""
    p.add_argument("config_file", nargs="?", metavar="site.toml",
                   help="path to site.toml (default %s)" % DEFAULT_CONFIG)
    p.add_argument("-c", "--config", dest="config_opt", metavar="site.toml",
                   help="the same, as an option")


def parser():
    p = argparse.ArgumentParser(prog="stationgw",
                                description="Monitoring-site gateway: radio nodes and Modbus "
                                            "sensors to a durable store and MQTT.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    c = sub.add_parser("check-config", help="validate a site config; exit 2 listing every "
                                            "problem")
    _config_arg(c)
    c.set_defaults(func=cmd_check_config)
    r = sub.add_parser("run", help="run the gateway (as the systemd service does)")
    _config_arg(r)
    r.set_defaults(func=cmd_run)
    s = sub.add_parser("status", help="show nodes, devices, queues and the broker link")
    _config_arg(s)
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_status)
    from gateway import opcli  # operator-key, sign-command (docs/security.md)
    opcli.add_parsers(sub)
    return p


def main(argv=None, load_daemon=_daemon):
    """`load_daemon() -> module` is a seam for tests (a fake daemon)."""
    p = parser()
    args = p.parse_args(argv)
    if hasattr(args, "config_file"):      # the commands that read site.toml
        if args.config_file and args.config_opt and args.config_file != args.config_opt:
            p.error("two config files given (%s and -c %s): give one" % (args.config_file,
                                                                         args.config_opt))
        args.config = args.config_opt or args.config_file or DEFAULT_CONFIG
    return args.func(args, load_daemon=load_daemon)


if __name__ == "__main__":
    sys.exit(main())
