"""The `[http]` section of site.toml: the read-only status page and /metrics
(gateway/statuspage.py). Off unless `enabled = true`.

    [http]
    enabled = true
    bind = "127.0.0.1"          # an address of this machine; "0.0.0.0" for the site LAN
    port = 8080
    token_file = "http.token"   # mode 0600: one line, 24+ characters (`openssl rand -hex 16`)

The token is a secret like the node keys: it lives in its own file, never in site.toml,
is never logged, and every request must carry it (`Authorization: Bearer <token>`, or
`?token=` once in the page's address, which sets a cookie).
"""
import ipaddress
from dataclasses import dataclass

TOKEN_MIN_CHARS = 24
KEYS = ("enabled", "bind", "port", "token_file")


@dataclass(frozen=True)
class Http:
    enabled: bool
    bind: str
    port: int
    token_file: str

    def read_token(self):
        """The token, read when needed so it never sits in the config object."""
        with open(self.token_file, encoding="utf-8") as f:
            return f.read().strip()


OFF = Http(False, "127.0.0.1", 8080, "")


def check(c, doc):
    """The section from the parsed document `doc`, issues recorded on the checker `c`
    (gateway/config.py's _Checker). Returns OFF when the section is absent."""
    t = c.table(doc, "http", "http", required=False)
    if t is None:
        return OFF
    c.unknown(t, KEYS, "http")
    enabled = c.value(t, "enabled", "http", bool, default=False)
    bind = c.value(t, "bind", "http", str, default="127.0.0.1")
    if bind is not None:
        try:
            ipaddress.ip_address(bind)
        except ValueError:
            c.err("http.bind", "%r is not an IP address; allowed: an address of this machine "
                               "such as \"127.0.0.1\" or \"0.0.0.0\" (all)" % bind)
    port = c.value(t, "port", "http", int, default=8080, lo=1, hi=65535)
    token_file = ""
    if enabled:
        hint = ": make one with `openssl rand -hex 16 > FILE && chmod 600 FILE`"
        token_file = c.file_path(t, "token_file", "http", required=True, secret=True,
                                 hint=hint)
        if token_file and not any(i.key == "http.token_file" for i in c.issues):
            try:
                with open(token_file, encoding="utf-8") as f:
                    n = len(f.read().strip())
            except (OSError, UnicodeDecodeError) as e:
                c.err("http.token_file", "cannot read %s: %s" % (token_file, e))
            else:
                if n < TOKEN_MIN_CHARS:
                    c.err("http.token_file", "%s holds a token of %d characters; allowed: %d "
                                             "or more%s" % (token_file, n, TOKEN_MIN_CHARS, hint))
    else:
        token_file = c.file_path(t, "token_file", "http", must_exist=False) or ""
    if enabled and bind not in (None, "127.0.0.1", "::1"):
        c.warn("http.bind", "the status page listens on %s without TLS: put it behind a VPN or "
                            "a TLS proxy if that network is not the site's own" % bind)
    return Http(bool(enabled), bind or "127.0.0.1", port or 8080, token_file)
