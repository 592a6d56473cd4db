"""The hub beside the demo site (`make run`, hil/demo.py): `python -m hub run` on the
demo's broker with the example stations and county layer, SQLite in the demo dir.
Returns the process and the map's URL (with its token: /?token= sets a cookie)."""
import os
import secrets
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _port(want=8090):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", want))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(d, mqtt_port, timeout=20):
    os.makedirs(d, exist_ok=True)
    tok = secrets.token_urlsafe(18)
    fd = os.open(os.path.join(d, "hub.token"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(tok + "\n")
    port = _port()
    cfg = os.path.join(d, "hub.toml")
    with open(cfg, "w") as f:
        f.write('[hub]\ndatabase = "sqlite:///hub.db"\nstations = "%s"\nsender = '
                '"demo-centre@county.example"\nsender_id = "demo"\n\n[mqtt]\nport = %d\n'
                'workers = 2\nclient_id = "demo-hub"\n\n[web]\nport = %d\ntoken_file = '
                '"hub.token"\ngeojson = "%s"\n\n[cap]\nspool = "cap-out"\n' % (
                    os.path.join(HERE, "examples", "stations.csv"), mqtt_port, port,
                    os.path.join(HERE, "examples", "county.geojson")))
    log = open(os.path.join(d, "hub.log"), "wb")
    p = subprocess.Popen([sys.executable, "-m", "hub", "run", "-c", cfg], cwd=ROOT, stdout=log,
                         stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and p.poll() is None:
        with open(os.path.join(d, "hub.log"), errors="replace") as f:
            if f.read().count("event=subscribed") >= 3:
                break
        time.sleep(0.05)
    return p, "http://127.0.0.1:%d/?token=%s" % (port, tok)
