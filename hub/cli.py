"""stationhub: the monitoring centre's consumer of the stations' uplink.

  stationhub run -c hub.toml            ingest, CAP warnings out, the map page
  stationhub check-config -c hub.toml   every problem in the config and stations file
  stationhub gaps -c hub.toml           nodes with holes in their reading seqs
"""
import argparse
import logging
import sys

from hub.config import ConfigError, load
from hub.stations import StationsError


def main(argv=None):
    ap = argparse.ArgumentParser(prog="stationhub", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, hlp in (("run", "run the hub"), ("check-config", "check hub.toml and stations"),
                      ("gaps", "list holes in each node's reading seqs")):
        p = sub.add_parser(name, help=hlp)
        p.add_argument("-c", "--config", required=True, help="hub.toml")
    a = ap.parse_args(argv)
    try:
        cfg = load(a.config)
        if cfg.stations:
            from hub.stations import load as load_stations
            stations = load_stations(cfg.stations)
        else:
            stations = {}
    except (ConfigError, StationsError) as e:
        print("stationhub: the configuration has problems:\n%s" % e, file=sys.stderr)
        return 2
    if a.cmd == "check-config":
        print("%s: ok (%d stations, database %s, %d workers)" % (
            a.config, len(stations), cfg.database.split("://")[0], cfg.workers))
        return 0
    if a.cmd == "gaps":
        from hub.store import open_store
        s = open_store(cfg.database)
        s.init_schema()
        for site, node in s.rows("SELECT DISTINCT site, node FROM readings ORDER BY 1, 2"):
            holes = s.seq_gaps(site, node, 1000)
            if holes:
                print("%s node %d: %d hole(s): %s" % (site, node, len(holes), ", ".join(
                    "%d" % lo if lo == hi else "%d-%d" % (lo, hi) for lo, hi in holes[::-1])))
        return 0
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(message)s")
    from hub.app import Hub
    hub = Hub(cfg)
    if hub.web:
        print("stationhub: map on http://%s:%d/ (open /?token=<token> once; the token is in %s)"
              % (cfg.web_listen, hub.web.port, hub.token_path), flush=True)
    hub.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
