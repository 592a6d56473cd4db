"""`stationctl`: the technicians' tool (docs/technician.md has the walk-through).

    stationctl keygen NODE_ID --registry keys.toml [--rotate]
    stationctl flash --port PORT --board esp32|esp32s3|rp2040 [--image FILE] [--dry-run]
    stationctl provision --port PORT NODE_ID --profile landslide|rain|river|FILE --registry keys.toml
    stationctl selftest --port PORT [--json]
    stationctl decode HEX | --capture FILE | --batch FILE|- [--registry keys.toml] [--json]
    stationctl monitor --broker mqtt://HOST:PORT --site SITE [--count N] [--duration S]
    stationctl standin --fs DIR [--radio]      a board without hardware (tools/standin.py)

Every failure prints one message that says what is wrong and what to do, and exits
with a code of its own (tools/errors.py): scripts can tell a busy port (4) from a key
mismatch (9) without reading text.
"""
import argparse
import importlib
import sys

from tools.errors import ToolError


def _node_id(text):
    try:
        n = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError("node id %r is not a number: give e.g. 101" % text) from None
    if not 1 <= n <= 65534:
        raise argparse.ArgumentTypeError("node id %d out of range: allowed 1..65534" % n)
    return n


def build_parser():
    p = argparse.ArgumentParser(prog="stationctl", description="Flash, provision, test and "
                                "watch field nodes of the station network.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    k = sub.add_parser("keygen", help="make a node's key and add it to the gateway's keys file")
    k.add_argument("node", type=_node_id, metavar="NODE_ID")
    k.add_argument("--registry", required=True, metavar="KEYS_TOML",
                   help="the gateway's keys file (created with mode 0600 if missing)")
    k.add_argument("--rotate", action="store_true", help="replace an existing key")

    f = sub.add_parser("flash", help="write MicroPython and the node application to a board")
    f.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0")
    f.add_argument("--board", required=True, choices=("esp32", "esp32s3", "rp2040", "unix"),
                   help="chip family (unix: the stand-in board, application only)")
    f.add_argument("--image", help="MicroPython firmware: .bin for ESP32 boards, .uf2 for rp2040")
    f.add_argument("--bootsel", metavar="DIR",
                   help="rp2040: the mounted RPI-RP2 drive (default: look for it)")
    f.add_argument("--app-only", action="store_true",
                   help="skip the MicroPython image: the board already runs MicroPython")
    f.add_argument("--baud", type=int, default=460800, help="esptool write baud rate")
    f.add_argument("--erase", action="store_true",
                   help="ESP32: erase the whole flash first (config and frame log are lost)")
    f.add_argument("--dry-run", action="store_true", help="print the exact plan, touch nothing")

    pr = sub.add_parser("provision", help="write a node's id, key and sensor config")
    pr.add_argument("node", type=_node_id, metavar="NODE_ID")
    pr.add_argument("--port", required=True)
    pr.add_argument("--profile", required=True,
                    help="landslide, rain, river, or a JSON file with channels/rules/intervals")
    pr.add_argument("--registry", required=True, metavar="KEYS_TOML")
    pr.add_argument("--board", help="pin map in firmware/variants/ (default: from the chip)")
    pr.add_argument("--version", type=int, help="config version (default: the node's + 1)")
    pr.add_argument("--timeout", type=float, default=30.0,
                    help="seconds to wait for the node's hello after the reboot")
    pr.add_argument("--site-config", metavar="SITE_TOML",
                    help="the gateway's site.toml, checked to list the node (default: "
                         "site.toml beside KEYS_TOML, if there)")
    pr.add_argument("--dry-run", action="store_true", help="print the config (key hidden)")

    s = sub.add_parser("selftest", help="run the node's self-test and print its table")
    s.add_argument("--port", required=True)
    s.add_argument("--json", action="store_true")
    s.add_argument("--timeout", type=float, default=20.0)

    d = sub.add_parser("decode", help="decode a radio frame, a serial capture or an uplink batch")
    d.add_argument("frame", nargs="?", metavar="HEX", help="one frame as hex")
    d.add_argument("--capture", metavar="FILE", help="raw bytes recorded from the serial line")
    d.add_argument("--batch", metavar="FILE", help="an uplink message (CBOR); - for stdin")
    d.add_argument("--topic", metavar="TOPIC", help="the topic the --batch message came on "
                   "(a schema-2 batch takes its site and gateway from it)")
    d.add_argument("--registry", metavar="KEYS_TOML", help="check MICs with these keys")
    d.add_argument("--rx-time", type=int, metavar="UNIX_S",
                   help="when the frame was received (for absolute reading times)")
    d.add_argument("--json", action="store_true")
    d.add_argument("--beidou", action="store_true",
                   help="HEX is a BeiDou alarm message (or a whole $BDTXR sentence)")
    d.add_argument("--beidou-key", metavar="FILE", help="check its MIC with the gateway's BeiDou key")

    st = sub.add_parser("standin", help="a stand-in board on a pty (MicroPython unix port), "
                        "optionally with a simulated radio: no hardware needed")
    from tools import standin
    standin.add_args(st)

    m = sub.add_parser("monitor", help="live view of a site's data, alarms and status")
    m.add_argument("--broker", required=True, help="mqtt://host:port (mqtts:// for TLS)")
    m.add_argument("--site", required=True)
    m.add_argument("--prefix", default="stations")
    m.add_argument("--gateway", default="+", help="one gateway id (default: all)")
    m.add_argument("--count", type=int, help="stop after this many events")
    m.add_argument("--duration", type=float, help="stop after this many seconds")
    m.add_argument("--json", action="store_true", help="one JSON object per line")
    m.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    m.add_argument("--username")
    m.add_argument("--password-file")
    m.add_argument("--cafile", help="CA certificate for mqtts://")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        mod = importlib.import_module("tools." + args.command)
        return mod.run(args) or 0
    except ToolError as e:
        print("stationctl %s: error: %s" % (args.command, e.message), file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("stationctl %s: interrupted" % args.command, file=sys.stderr)
        return 130
    except OSError as e:
        # a serial line that dies mid-session (cable pulled, board reset by hand)
        import serial
        if not isinstance(e, serial.SerialException):
            raise
        print("stationctl %s: error: the serial connection failed: %s. Check the cable and "
              "that nothing else uses the port, then run the same command again"
              % (args.command, e), file=sys.stderr)
        from tools.errors import NO_ANSWER
        return NO_ANSWER


if __name__ == "__main__":
    sys.exit(main())
