"""One log line per event: `event=NAME key=value ...` (journald adds the time; the daemon's
formatter adds ts, level and logger). Values with spaces, quotes or '=' are quoted, so a
line splits back into fields with shlex.

Secrets never reach a log: a field whose name says it holds one (key, token, password,
secret, psk, credential) is written as `<redacted>`, whatever the caller passed.

    log_event(log, "modbus_offline", logging.WARNING, device="river-radar", reason="timeout")
    -> event=modbus_offline device=river-radar reason=timeout
"""
import logging
import re

SECRET_NAME = re.compile(r"(^|_)(key|keys|token|password|passwd|secret|psk|credentials?)($|_)")
_PLAIN = re.compile(r"^[A-Za-z0-9_.:/@+%,-]+$")
REDACTED = "<redacted>"


def value_text(v):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "%g" % v
    if isinstance(v, (bytes, bytearray)):
        return "<%d bytes>" % len(v)         # raw bytes may be key material: never their content
    s = str(v)
    if _PLAIN.match(s):
        return s
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def event_line(event, **fields):
    parts = ["event=%s" % event]
    for k, v in fields.items():
        parts.append("%s=%s" % (k, REDACTED if SECRET_NAME.search(k) else value_text(v)))
    return " ".join(parts)


def log_event(logger, event, _level=logging.INFO, **fields):
    """`_level` (the logging level) is positional-or-underscored so that `level=` stays
    free for a field (an alarm's warning level)."""
    if logger.isEnabledFor(_level):
        logger.log(_level, "%s", event_line(event, **fields))
