"""`stationctl decode --beidou HEX|SENTENCE [--beidou-key FILE]`: a BeiDou alarm message
(protocol/bdmsg.py, SPEC.md 12) in plain words: the hex content of a $BDTXR, the whole
$BDTXR sentence as the command terminal printed it, or a file of such lines (-b FILE)."""
import json

from gateway.beidou import SentenceError, parse
from protocol import bdmsg
from tools.decode import chan_label, iso, level_name
from tools.errors import BAD_INPUT, KEY_MISMATCH, ToolError

EVENTS = {1: "trip", 2: "level change", 3: "clear"}


def message_bytes(text):
    """The message bytes from hex or from a $BDTXR sentence (mode 1, code)."""
    t = text.strip()
    if t.startswith("$"):
        try:
            name, f = parse(t.encode("ascii", "replace"))
        except SentenceError as e:
            raise ToolError(BAD_INPUT, "not a valid RDSS sentence: %s" % e) from None
        if name[2:] != "TXR" or len(f) < 5:
            raise ToolError(BAD_INPUT, "%s is not a $BDTXR message sentence" % name)
        if f[2] != "1":
            raise ToolError(BAD_INPUT, "$BDTXR transmission mode %r: an alarm message is sent "
                                       "as code (mode 1)" % f[2])
        t = f[4]
    try:
        return bytes.fromhex("".join(t.split()))
    except ValueError:
        raise ToolError(BAD_INPUT, "%r is neither hex nor a $BDTXR sentence" % t[:40]) from None


def _key(path):
    if path is None:
        return None
    try:
        with open(path) as f:
            return bytes.fromhex(f.read().strip())
    except (OSError, ValueError) as e:
        raise ToolError(BAD_INPUT, "--beidou-key %s: %s (32+ bytes as hex, as in the "
                                   "gateway's beidou.key_file)" % (path, e)) from None


def describe(data, key=None):
    try:
        d = bdmsg.decode(data, key)
    except bdmsg.BdMsgError as e:
        code = KEY_MISMATCH if "MIC" in str(e) else BAD_INPUT
        raise ToolError(code, "BeiDou message: %s" % e) from None
    d["alarms"] = [a.as_dict() for a in d["alarms"]]
    return d


def text(d):
    out = ["BeiDou alarm message: gateway %d, seq %d, built %s, %d alarm(s)%s, MIC %s"
           % (d["gateway"], d["seq"], iso(d["time"]), len(d["alarms"]),
              ", more queued" if d["more"] else "",
              "verified" if d["mic_checked"] else "NOT checked (give --beidou-key)")]
    for a in d["alarms"]:
        out.append("  node %d seq %d #%d  %s %s (was %s)  %s rule %d value %d threshold %d  at %s"
                   % (a["node"], a["seq"], a["index"], EVENTS.get(a["event"], "?"),
                      level_name(a["level"]).upper(), level_name(a["prev_level"]),
                      chan_label(a["chan"]), a["rule_id"], a["value"], a["threshold"], iso(a["t"])))
    return out


def run(args):
    key = _key(getattr(args, "beidou_key", None))
    d = describe(message_bytes(args.frame or ""), key)
    print(json.dumps(d, indent=1) if args.json else "\n".join(text(d)))
    return 0
