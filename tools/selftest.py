"""`stationctl selftest --port PORT`: run firmware/selftest.py on the node and print its
table: each sensor's reading or fault, supply voltage, the radio module answering and its
settings, free heap, config version, clock.

The node application is stopped first (Ctrl-C, soft reset: boot.py only), the test runs
in the node's own interpreter, and the node is reset afterwards so it goes back to
work. Exit 0 when nothing is faulty, 18 when the table lists faults.
"""
import json

from firmware import faults
from tools.boardlink import BoardLink
from tools.decode import chan_label, value_text
from tools.errors import BOARD_ERROR, NO_ANSWER, SELFTEST_FAULTS, ToolError

COLOR = {"ok": "\x1b[32m", "warn": "\x1b[33m", "fault": "\x1b[1;31m", "info": ""}


def parse(text):
    """Rows [{item, status, value, detail}] and the node's fault count from the console
    text; ToolError if the table is missing or cut short."""
    rows = []
    inside = False
    end = None
    for line in text.splitlines():
        line = line.rstrip("\r")
        if line.startswith("SELFTEST BEGIN"):
            inside = True
            continue
        if line.startswith("SELFTEST END"):
            end = int(line.split()[2])
            break
        if inside and "\t" in line:
            item, status, value, detail = (line.split("\t") + ["", "", ""])[:4]
            rows.append({"item": item, "status": status, "value": value, "detail": detail})
    if not inside or end is None:
        raise ToolError(NO_ANSWER, "the node's self-test did not finish its table: got %r"
                        % text[-300:])
    return rows, end


def readable(row):
    """Channel rows get their label and unit: chan:0x18 3050 -> water_level.0 3.050 m."""
    r = dict(row)
    if r["item"].startswith("chan:0x"):
        chan = int(r["item"][5:], 16)
        r["item"] = chan_label(chan)
        if r["status"] == "ok":
            try:
                r["value"] = value_text(chan, int(r["value"]))
            except ValueError:
                pass
    elif r["item"] == "supply_mv":
        r["item"] = "supply"
        if r["value"].isdigit():
            r["value"] = "%.2f V" % (int(r["value"]) / 1000)
    return r


def table(rows, color=False):
    rows = [readable(r) for r in rows]
    w0 = max(len(r["item"]) for r in rows)
    w2 = max(len(r["value"]) for r in rows)
    out = []
    for r in rows:
        status = r["status"].upper()
        if color and COLOR.get(r["status"]):
            status = COLOR[r["status"]] + status + "\x1b[0m"
        out.append("%-*s  %-5s  %-*s  %s" % (w0, r["item"], status, w2, r["value"], r["detail"]))
    return "\n".join(out)


def run_on(link):
    if not (link.exists("firmware/selftest.mpy") or link.exists("firmware/selftest.py")):
        raise ToolError(BOARD_ERROR, "the board has no firmware/selftest: flash the current "
                        "application (stationctl flash --app-only)")
    text = link.exec("from firmware import selftest\nselftest.run()").decode(errors="replace")
    return parse(text)


def run(args):
    import sys
    with BoardLink.open(args.port) as link:
        try:
            rows, n_faults = run_on(link)
        finally:
            link.reset()      # back to work, whatever happened
    if args.json:
        print(json.dumps({"faults": n_faults, "rows": rows}, indent=1))
    else:
        print(table(rows, sys.stdout.isatty()))
    if n_faults:
        print("%d fault(s): see the rows marked FAULT (fault names: %s)"
              % (n_faults, ", ".join(faults.NAMES[1:])), file=sys.stderr)
        return SELFTEST_FAULTS
    return 0
