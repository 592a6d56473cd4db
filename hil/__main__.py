"""`python -m hil list` / `python -m hil run SCENARIO [--seed N] [--runtime R]`.
`python -m hil gauge [--port 5020]`: the demo's river gauge alone (Modbus TCP device id 1,
holding register 4 = level in mm), for gateway/examples/site.toml on a laptop.

run: prints the report, then one last line of JSON with the figures; exit 0 only if
every check passed. The real-board tier: `python -m hil board SCENARIO` (HIL_PORT)."""
import argparse
import signal
import sys
import tempfile

from hil import scenario as scen


def _terminate(signum, frame):
    # SIGTERM: unwind like Ctrl-C, so the rig stops its broker, gateway and nodes
    raise KeyboardInterrupt


def main(argv=None):
    signal.signal(signal.SIGTERM, _terminate)
    ap = argparse.ArgumentParser(prog="python -m hil", description="station HIL rig")
    sp = ap.add_subparsers(dest="cmd", required=True)
    sp.add_parser("list", help="the scenarios in hil/scenarios/")
    r = sp.add_parser("run", help="run one scenario on simulated time")
    r.add_argument("scenario")
    r.add_argument("--seed", type=int, default=None)
    r.add_argument("--runtime", choices=scen.RUNTIMES, default=None)
    r.add_argument("--heap", default=None, help="MicroPython heap, e.g. 192K")
    r.add_argument("--workdir", default=None, help="keep the site here (default: a temp dir)")
    r.add_argument("--quiet", action="store_true", help="no progress lines")
    r.add_argument("--hours", type=float, default=None,
                   help="simulate this many hours instead of the scenario's duration")
    r.add_argument("--sabotage", choices=("wrong-key",), default=None,
                   help="check the checker: give the gateway a wrong key for the first node")
    r.add_argument("--hub", type=int, default=None, metavar="KILLS",
                   help="also run the monitoring centre's hub (hub/) as a subscriber, kill -9 it "
                        "KILLS times, and check its database against the subscriber")
    r.add_argument("--hub-subscription", choices=("exclusive", "shared"), default="exclusive",
                   help="the hub's subscription (default %(default)s; see hub/ingest.py)")
    b = sp.add_parser("board", help="real-board tier (needs HIL_PORT)")
    b.add_argument("scenario", nargs="?")
    b.add_argument("--seed", type=int, default=None)
    b.add_argument("--hours", type=float, default=None)
    g = sp.add_parser("gauge", help="serve the simulated river gauge (Modbus TCP) until Ctrl-C")
    g.add_argument("--port", type=int, default=5020,
                   help="TCP port on 127.0.0.1 (default %(default)s, as in "
                        "gateway/examples/site.toml)")
    g.add_argument("--speed", type=float, default=1.0,
                   help="simulated seconds per real second (default %(default)s)")
    a = ap.parse_args(argv)
    if a.cmd == "gauge":
        return gauge(a.port, a.speed)
    if a.cmd == "list":
        for name in scen.names():
            sc = scen.load(name)
            print("%-20s %6.1f h  %s" % (name, sc.duration_s / 3600.0, sc.description))
        return 0
    if a.cmd == "board":
        from hil import board
        return board.main(a.scenario, seed=a.seed, hours=a.hours)
    try:
        sc = scen.load(a.scenario)
    except scen.ScenarioError as e:
        print("hil: %s" % e, file=sys.stderr)
        return 2
    if a.hours is not None:
        if a.hours <= 0:
            print("hil: --hours %r: allowed a number > 0" % a.hours, file=sys.stderr)
            return 2
        sc.duration_s = a.hours * 3600.0
    from hil.rig import Rig
    out = (lambda s: None) if a.quiet else (lambda s: print(s, flush=True))
    with tempfile.TemporaryDirectory(prefix="hil-%s-" % sc.name) as tmp:
        rig = Rig(sc, a.workdir or tmp, seed=a.seed, runtime=a.runtime, heap=a.heap, out=out,
                  sabotage=a.sabotage, hub_kills=a.hub,
                  hub_subscription=a.hub_subscription)
        res = rig.run()
    print(res.text())
    print(res.json_line(), flush=True)
    return 0 if res.passed else 1


def gauge(port, speed):
    from hil.demo import Gauge
    sim = Gauge(speed=speed, port=port)
    try:
        sim.start()
    except RuntimeError as e:
        print("hil gauge: cannot serve on 127.0.0.1:%d (%s): is another gauge or the demo "
              "running? Stop it, or pick --port and set [[modbus.buses]] port to match"
              % (port, e), file=sys.stderr)
        return 1
    print("hil gauge: river gauge on 127.0.0.1:%d, Modbus device id 1, holding register 4 = "
          "level in mm (rises from 1.8 m past 2.5 m, then falls). Ctrl-C stops." % port,
          flush=True)
    try:
        while True:
            signal.pause()
    finally:
        sim.stop()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("hil: interrupted; the site was stopped", file=sys.stderr)
        sys.exit(130)
