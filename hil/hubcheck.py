"""The monitoring centre's hub (hub/, `python -m hub run`) as a second subscriber in a
HIL run (`python -m hil run SCENARIO --hub N`): it ingests the same uplink into its own
SQLite database and is killed with -9 N times: each kill is armed at a point of the
scenario and fires, from a watcher thread that never holds up the rig, the moment the
rig's subscriber sees the next batch arrive (so the hub is in the middle of that batch,
often a backlog); the hub is restarted at once. At the end its rows must equal what the
independent subscriber received: every reading once, none missing, none different."""
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class HubUnderTest:
    def __init__(self, d, broker_port, prefix="stations", subscription="exclusive"):
        self.d = Path(d)
        self.d.mkdir(parents=True, exist_ok=True)
        self.db = self.d / "hub.db"
        (self.d / "hub.token").write_text(os.urandom(16).hex() + "\n")
        self.cfg = self.d / "hub.toml"
        self.cfg.write_text('[hub]\ndatabase = "sqlite:///%s"\n\n[mqtt]\nport = %d\nprefix = "%s"\n'
                            'workers = %d\nsubscription = "%s"\nclient_id = "hil-hub"\n\n[web]\n'
                            'port = 0\ntoken_file = "hub.token"\n\n[cap]\nspool = "cap-out"\n'
                            % (self.db, broker_port, prefix, 1 if subscription == "exclusive"
                               else 2, subscription))
        self.exclusive = subscription == "exclusive"
        self.proc = None
        self.runs = 0
        self.kills = 0
        self.armed = 0
        self._stop = threading.Event()
        self._watcher = None

    def start(self, timeout=60):
        self.runs += 1
        log = self.d / ("hub-%d.log" % self.runs)
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "hub", "run", "-c", str(self.cfg)],
                                         cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace")
            if "event=running" in text and text.count("event=subscribed") >= (
                    2 if self.exclusive else 3):
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError("hub did not start:\n" + log.read_text(errors="replace")[-3000:])

    def arm(self, sub):
        """Kill -9 (and restart) the hub when the subscriber next sees a batch."""
        self.armed += 1
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, args=(sub,), daemon=True)
            self._watcher.start()

    def _watch(self, sub):
        seen = len(sub.log)
        while not self._stop.is_set():
            n = len(sub.log)
            if self.armed and any(e[1] == "data" for e in sub.log[seen:n]):
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(10)
                self.kills += 1
                self.armed -= 1
                self.start()
                n = len(sub.log)
            seen = n
            time.sleep(0.001)

    def stop_watching(self):
        self._stop.set()
        if self._watcher:
            self._watcher.join(30)

    def stop(self):
        self.stop_watching()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def rows(self):
        if not self.db.exists():
            return {}
        c = sqlite3.connect(self.db, timeout=10)
        try:
            return {(n, s, i): (ch, t, v, f) for n, s, i, ch, t, v, f in c.execute(
                "SELECT node, seq, idx, chan, t, value, fault FROM readings")}
        except sqlite3.OperationalError:
            return {}
        finally:
            c.close()

    def verify(self, sub, timeout=120.0):
        """Figures comparing the hub's rows with the subscriber's readings."""
        deadline = time.monotonic() + timeout
        while True:
            with sub.lock:
                want = {k: r.content() for k, r in sub.readings.items()}
            got = self.rows()
            if len(got) >= len(want) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        missing = [k for k in want if k not in got]
        extra = [k for k in got if k not in want]
        differ = [k for k in want if k in got and got[k] != want[k]]
        c = sqlite3.connect(self.db)
        try:
            batches = c.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
            alarms = c.execute("SELECT COUNT(*) FROM alarms").fetchone()[0]
        finally:
            c.close()
        return {"readings": len(got), "expected": len(want), "missing": len(missing),
                "extra": len(extra), "content_differs": len(differ), "kills": self.kills,
                "kills_armed_not_fired": self.armed, "batches": batches, "alarms": alarms,
                "subscriber_alarms": len(sub.alarms)}
