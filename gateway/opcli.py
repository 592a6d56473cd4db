"""Operators' side of command authorisation (docs/security.md):

    stationgw operator-key NAME -f operators.toml --verbs set-intervals,emergency [--dangerous]
        make a random key for operator NAME and add it to the operator keys file (0600);
        give the same file entry (`--export FILE`) to the operator, never by e-mail.
    stationgw sign-command -k alice.toml --site lushi --gw gw1 VERB JSON [--dangerous]
                           [--send HOST:PORT [--prefix stations] [--tls-ca CA] [--wait S]]
        sign a command (JSON text) and print the envelope as hex, or publish it on
        <prefix>/<site>/<gw>/cmd/<verb> and print the gateway's results.
"""
import json
import os
import sys
import time

import cbor2

from gateway import cmdauth
from gateway import downlink as dl

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def entry_text(name, key, verbs, dangerous=False, rate_per_min=None):
    lines = ["[operators.%s]" % name, 'key = "%s"' % key.hex(),
             "verbs = [%s]" % ", ".join('"%s"' % v for v in verbs),
             "dangerous = %s" % ("true" if dangerous else "false")]
    if rate_per_min:
        lines.append("rate_per_min = %d" % rate_per_min)
    return "\n".join(lines) + "\n"


def add_operator(path, name, verbs, dangerous=False, rate_per_min=None, key=None):
    """Append an operator to the keys file (created 0600, mode enforced). Returns the key."""
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError("operator name %r: use letters, digits, - and _" % name)
    bad = [v for v in verbs if v not in dl.VERBS]
    if bad or not verbs:
        raise ValueError("verbs %s: allowed %s" % (",".join(bad) or "(none)", ", ".join(dl.VERBS)))
    key = key or os.urandom(32)
    if os.path.exists(path):
        if name in cmdauth.load_operators(path, dl.VERBS):
            raise ValueError("%s already has operator %r: remove its table first" % (path, name))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, ("\n" + entry_text(name, key, verbs, dangerous, rate_per_min)).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def operator_key(path, name=None):
    """(name, key) from an operator keys file; `name` may be left out if it has one entry."""
    ops = cmdauth.load_operators(path, dl.VERBS)
    if name is None:
        if len(ops) != 1:
            raise ValueError("%s has %d operators: say which with --operator" % (path, len(ops)))
        name = next(iter(ops))
    if name not in ops:
        raise ValueError("%s has no operator %r (it has %s)" % (path, name, ", ".join(sorted(ops))))
    return name, ops[name].key


def sign_json(key, op, site, gw, verb, doc, t=None, dangerous=False):
    """Envelope bytes for a command given as a dict (sent as its JSON text)."""
    body = json.dumps(doc, separators=(",", ":")).encode()
    return cmdauth.sign(key, op, site, gw, verb, body, time.time() if t is None else t,
                        dangerous=dangerous)


def cmd_operator_key(args):
    try:
        add_operator(args.file, args.name, [v for v in args.verbs.split(",") if v],
                     args.dangerous, args.rate_per_min)
    except (ValueError, cmdauth.OperatorsError) as e:
        print("stationgw operator-key: %s" % e, file=sys.stderr)
        return EXIT_USAGE
    if args.export:
        name, key = operator_key(args.file, args.name)
        ops = cmdauth.load_operators(args.file, dl.VERBS)
        o = ops[name]
        fd = os.open(args.export, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(entry_text(name, key, sorted(o.verbs), o.dangerous, o.rate_per_min))
    print("operator %s added to %s%s" % (args.name, args.file,
                                          " and written to %s" % args.export if args.export
                                          else ""))
    return EXIT_OK


def cmd_sign_command(args):
    try:
        name, key = operator_key(args.key_file, args.operator)
        doc = json.loads(args.json)
        if not isinstance(doc, dict):
            raise ValueError("the command must be a JSON object")
    except (ValueError, cmdauth.OperatorsError) as e:
        print("stationgw sign-command: %s" % e, file=sys.stderr)
        return EXIT_USAGE
    env = sign_json(key, name, args.site, args.gw, args.verb, doc, dangerous=args.dangerous)
    if not args.send:
        print(env.hex())
        return EXIT_OK
    return _send(args, env, doc.get("id"))


def _send(args, env, cid):
    import threading

    import paho.mqtt.client as mqtt
    host, _, port = args.send.rpartition(":")
    base = "%s/%s/%s" % (args.prefix, args.site, args.gw)
    got = []
    done = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
    if args.tls_ca:
        c.tls_set(ca_certs=args.tls_ca)
    if args.username:
        pw = open(args.password_file).read().strip() if args.password_file else None
        c.username_pw_set(args.username, pw)
    subscribed = threading.Event()

    def on_message(_c, _u, m):
        try:
            r = cbor2.loads(m.payload)
        except Exception:
            return
        if r.get(3) == args.verb and (cid is None or r.get(4) == cid):
            got.append(r)
            print("%s %s%s" % (r.get(5), "node %s " % r[6] if 6 in r else "", r.get(7) or ""))
            if r.get(5) in ("applied", "rejected", "expired", "invalid", "refused"):
                done.set()
    c.on_message = on_message
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(base + "/cmd-result", qos=1) \
        if args.wait else subscribed.set()
    try:
        c.connect(host or "127.0.0.1", int(port), keepalive=10)
    except (OSError, ValueError) as e:
        print("stationgw sign-command: cannot reach the broker %s: %s" % (args.send, e),
              file=sys.stderr)
        return EXIT_FAIL
    c.loop_start()
    try:
        if not subscribed.wait(10):
            print("stationgw sign-command: no answer from the broker", file=sys.stderr)
            return EXIT_FAIL
        info = c.publish(base + "/cmd/" + args.verb, env, qos=1)
        info.wait_for_publish(10)
        print("sent %s to %s" % (args.verb, base))
        if args.wait:
            done.wait(args.wait)
        return EXIT_OK if not any(r.get(5) in ("invalid", "refused") for r in got) else EXIT_FAIL
    finally:
        c.disconnect()
        c.loop_stop()


def add_parsers(sub):
    """Hook for gateway/cli.py."""
    k = sub.add_parser("operator-key", help="make an operator's command key and add it to the "
                                            "operator keys file")
    k.add_argument("name")
    k.add_argument("-f", "--file", required=True, help="operator keys file (made 0600)")
    k.add_argument("--verbs", required=True, help="comma-separated: %s" % ",".join(dl.VERBS))
    k.add_argument("--dangerous", action="store_true",
                   help="may send dangerous commands (each must still be signed --dangerous)")
    k.add_argument("--rate-per-min", type=int, default=None)
    k.add_argument("--export", help="also write this operator's entry alone to a new file "
                                    "(0600) to hand to the operator")
    k.set_defaults(func=lambda a, load_daemon=None: cmd_operator_key(a))
    s = sub.add_parser("sign-command", help="sign an operator command (and send it)")
    s.add_argument("verb", choices=dl.VERBS)
    s.add_argument("json", help='the command, e.g. \'{"node": 101, "sample_s": 60}\'')
    s.add_argument("-k", "--key-file", required=True, help="the operator's key file")
    s.add_argument("--operator", help="operator name (if the file has several)")
    s.add_argument("--site", required=True)
    s.add_argument("--gw", required=True)
    s.add_argument("--dangerous", action="store_true",
                   help="confirm a dangerous command (logged as such by the gateway)")
    s.add_argument("--send", metavar="HOST:PORT", help="publish it on this broker")
    s.add_argument("--prefix", default="stations")
    s.add_argument("--tls-ca")
    s.add_argument("--username")
    s.add_argument("--password-file")
    s.add_argument("--wait", type=float, default=0.0,
                   help="seconds to wait for the gateway's results")
    s.set_defaults(func=lambda a, load_daemon=None: cmd_sign_command(a))
