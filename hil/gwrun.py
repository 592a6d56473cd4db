"""Run the real gateway daemon on the rig's simulated clock.

    STATIONGW_SIMCLOCK=<clock file> python -m hil.gwrun -c site.toml

This is `stationgw run -c site.toml` with one difference: the daemon's clock comes
from gateway/simclock.py (the rig's shared clock file) instead of time.time. Once
gateway/daemon.py's main() passes `clock=simclock.from_env()` itself, the rig can
start `python -m gateway.cli run` directly and this file can go."""
import asyncio
import sys

from gateway import config as gconfig
from gateway import daemon, simclock


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "-c":
        print("usage: python -m hil.gwrun -c site.toml", file=sys.stderr)
        return 2
    try:
        cfg = gconfig.load(argv[1])
    except gconfig.ConfigError as e:
        for issue in e.issues:
            print("config error: %s" % issue, file=sys.stderr)
        return daemon.EXIT_CONFIG
    daemon.setup_logging()
    for w in cfg.warnings:
        daemon.log.warning("event=config_warning %s", w)
    try:
        return asyncio.run(daemon.Daemon(cfg, clock=simclock.from_env()).run())
    except KeyboardInterrupt:
        return daemon.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
