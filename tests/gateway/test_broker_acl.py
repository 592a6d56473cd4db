"""The broker ACL a site should set (gateway/examples/mosquitto.acl, docs/security.md),
loaded into a real Mosquitto: anonymous clients cannot connect; only the operators'
account can publish commands; other accounts cannot publish on cmd/ or read the data.

Negative checks are ordered, not timed: a denied publish is PUBACKed (the broker has
handled it) before a permitted marker is published, so if the denied one were delivered
it would arrive before the marker."""
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from harness import free_port

ACL = Path(__file__).resolve().parents[2] / "gateway" / "examples" / "mosquitto.acl"
BASE = "stations/lushi/gw1"
USERS = {"gw-lushi-gw1": "pw-gw", "ops-lushi": "pw-ops", "hub": "pw-hub", "guest": "pw-guest"}
pytestmark = pytest.mark.broker


@pytest.fixture
def acl_broker(tmp_path):
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    pw = shutil.which("mosquitto_passwd")
    if not os.path.exists(exe) or pw is None:
        pytest.skip("mosquitto / mosquitto_passwd not installed (make setup installs them)")
    pwfile = tmp_path / "passwd"
    for i, (u, p) in enumerate(USERS.items()):
        subprocess.run([pw, "-b"] + (["-c"] if i == 0 else []) + [str(pwfile), u, p],
                       check=True, capture_output=True, timeout=30)
    port = free_port()
    conf = ["listener %d 127.0.0.1" % port, "allow_anonymous false",
            "password_file %s" % pwfile, "acl_file %s" % ACL,
            "log_dest file %s" % (tmp_path / "broker.log")]
    if os.geteuid() == 0:
        conf.insert(0, "user root")
    (tmp_path / "m.conf").write_text("\n".join(conf) + "\n")
    proc = subprocess.Popen([exe, "-c", str(tmp_path / "m.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            assert proc.poll() is None, (tmp_path / "broker.log").read_text()
            time.sleep(0.01)
    yield port
    proc.terminate()
    proc.wait(10)


class Client:
    def __init__(self, port, user=None, subs=()):
        self.msgs = []
        self.cond = threading.Condition()
        self.connack = None
        self.granted = []
        done = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                        client_id="acl-%s-%d" % (user or "anon", id(self)))
        if user:
            c.username_pw_set(user, USERS[user])

        def on_connect(cl, u, f, rc, p):
            self.connack = rc
            if rc.is_failure or not subs:
                done.set()
            else:
                cl.subscribe([(s, 1) for s in subs])

        def on_subscribe(cl, u, mid, rcs, p):
            self.granted = rcs
            done.set()

        def on_message(cl, u, m):
            with self.cond:
                self.msgs.append((m.topic, m.payload))
                self.cond.notify_all()
        c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
        c.connect("127.0.0.1", port, keepalive=10)
        c.loop_start()
        self.c = c
        assert done.wait(60), "no CONNACK/SUBACK"

    def publish(self, topic, payload):
        info = self.c.publish(topic, payload, qos=1)
        info.wait_for_publish(60)

    def wait_for(self, payload, timeout=60):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not any(p == payload for _t, p in self.msgs):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def test_example_acl_keeps_commands_and_data_to_their_accounts(acl_broker):
    port = acl_broker
    anon = Client(port)
    assert anon.connack.is_failure                       # not authorised
    anon.close()
    gw = Client(port, "gw-lushi-gw1", [BASE + "/cmd/#"])
    hub = Client(port, "hub", [BASE + "/data", BASE + "/alarm", BASE + "/cmd/#"])
    guest = Client(port, "guest", ["stations/#"])
    ops = Client(port, "ops-lushi", [BASE + "/cmd-result"])
    clients = [gw, hub, guest, ops]
    try:
        # commands: the hub and a guest account are refused, the operators' account not
        hub.publish(BASE + "/cmd/emergency", b"from-hub")
        guest.publish(BASE + "/cmd/emergency", b"from-guest")
        ops.publish(BASE + "/cmd/emergency", b"from-ops")
        assert gw.wait_for(b"from-ops")
        assert [p for _t, p in gw.msgs] == [b"from-ops"]
        # data: the gateway publishes, the hub reads, the guest and the hub's cmd/#
        # subscription see nothing
        guest.publish(BASE + "/data", b"forged-data")
        gw.publish(BASE + "/data", b"batch-1")
        gw.publish(BASE + "/alarm", b"alarm-1")
        assert hub.wait_for(b"alarm-1")
        assert [p for _t, p in hub.msgs] == [b"batch-1", b"alarm-1"]
        gw.publish(BASE + "/cmd-result", b"result-1")
        assert ops.wait_for(b"result-1")
        assert guest.msgs == []
    finally:
        for c in clients:
            c.close()
