"""The hub as a subprocess (`python -m hub run -c hub.toml`) for crash tests, and a
paho publisher standing in for gateways."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parents[2]


def write_config(d, port, db_url, workers=2, extra=""):
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    (d / "hub.token").write_text("test-token-0123456789abcdef\n")
    cfg = d / "hub.toml"
    cfg.write_text('[hub]\ndatabase = "%s"\nstations = "%s"\n\n[mqtt]\nport = %d\nworkers = %d\n'
                   'client_id = "hubtest"\n\n[web]\nport = 0\ntoken_file = "hub.token"\n'
                   'geojson = "%s"\n\n[cap]\nspool = "cap-out"\n%s' % (
                       db_url, ROOT / "hub/examples/stations.csv", port, workers,
                       ROOT / "hub/examples/county.geojson", extra))
    return cfg


class HubProcess:
    def __init__(self, cfg, workers=2):
        self.cfg = Path(cfg)
        self.workers = workers + 1          # and the alarm lane
        self.proc = None
        self.runs = 0

    def start(self, timeout=60):
        self.runs += 1
        self.log = self.cfg.parent / ("hub-%d.log" % self.runs)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "hub", "run", "-c", str(self.cfg)],
                                         cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            if text.count("event=subscribed") >= self.workers and "event=running" in text:
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("hub did not start:\n" + self.log.read_text(errors="replace")[-3000:])

    def web_port(self):
        for line in self.log.read_text().splitlines():
            if "web_port=" in line:
                return int(line.rsplit("web_port=", 1)[1].split()[0])
        return None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Publisher:
    def __init__(self, port, client_id="test-gw"):
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def send(self, topic, payload):
        info = self.c.publish(topic, payload, qos=1)
        info.wait_for_publish(60)
        assert info.is_published()

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def wait_until(pred, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()
