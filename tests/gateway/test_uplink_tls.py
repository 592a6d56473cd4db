"""TLS and credentials against a real Mosquitto: a CA-verified TLS listener that wants a
user name and password; the password comes from a file and never reaches a log."""
import logging
import shutil
import subprocess
import time

import pytest

pytestmark = pytest.mark.skipif(not (shutil.which("openssl") and shutil.which("mosquitto_passwd")),
                                reason="needs the openssl and mosquitto_passwd commands "
                                       "(apt-get install openssl mosquitto)")

SECRET = "s3cret-Horse-Battery-77"


def make_certs(d):
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d, timeout=30)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server.crt")


@pytest.fixture
def tls_broker(broker, tmp_path):
    d = tmp_path / "tls"
    d.mkdir()
    make_certs(d)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(d / "passwd"), "gw1", SECRET],
                   check=True, capture_output=True, timeout=30)
    broker.stop()
    broker.conf.write_text(broker.conf.read_text().replace("allow_anonymous true", "") +
                           "allow_anonymous false\npassword_file %s\ncafile %s\ncertfile %s\n"
                           "keyfile %s\n" % (d / "passwd", d / "ca.crt", d / "server.crt",
                                             d / "server.key"))
    broker.start()
    return broker, d


def wait(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_tls_with_password_file_delivers(tls_broker, make_store, make_uplink, mk, tmp_path,
                                         caplog):
    broker, d = tls_broker
    pw = tmp_path / "mqtt.pass"
    pw.write_text(SECRET + "\n")
    pw.chmod(0o600)
    caplog.set_level(logging.DEBUG)
    store = make_store()
    up = make_uplink(store, tls_ca=str(d / "ca.crt"), username="gw1", password_file=str(pw))
    store.commit(mk.frame(3, 1, int(time.time()), [10, 11, 12]))
    assert wait(lambda: up.stats()["readings_acked"] == 3, 60), up.stats()
    assert SECRET not in caplog.text


def test_wrong_password_is_refused_and_never_logged(tls_broker, make_store, make_uplink, mk,
                                                    tmp_path, caplog):
    broker, d = tls_broker
    pw = tmp_path / "mqtt.pass"
    pw.write_text("wrong-" + SECRET)
    caplog.set_level(logging.DEBUG)
    store = make_store()
    up = make_uplink(store, tls_ca=str(d / "ca.crt"), username="gw1", password_file=str(pw))
    store.commit(mk.frame(3, 1, int(time.time()), [10]))
    assert wait(lambda: "event=broker_refused" in caplog.text, 60)
    assert not up.connected and up.stats()["readings_acked"] == 0
    assert SECRET not in caplog.text and "wrong-" not in caplog.text
    assert store.stats()["lanes"]["live"]["depth"] + \
        store.stats()["lanes"]["unacked_batches"]["readings"] == 1     # kept, not lost


def test_unknown_ca_never_connects(tls_broker, make_store, make_uplink, mk, tmp_path, caplog):
    broker, d = tls_broker
    caplog.set_level(logging.INFO)
    other = tmp_path / "other"
    other.mkdir()
    make_certs(other)
    pw = tmp_path / "mqtt.pass"
    pw.write_text(SECRET)
    store = make_store()
    up = make_uplink(store, tls_ca=str(other / "ca.crt"), username="gw1", password_file=str(pw))
    # two failed handshakes seen (not a second of sleep): it tried, and tried again
    assert wait(lambda: caplog.text.count("event=broker_unreachable") >= 2, 60), caplog.text
    assert "certificate verify failed" in caplog.text
    assert up.connects == 0 and not up.connected


def test_unreadable_password_file_is_a_clear_error(make_store, tmp_path):
    from gateway.uplink import Uplink, UplinkSettings
    with pytest.raises(ValueError, match="mqtt.password_file .*cannot be read"):
        Uplink(make_store(), UplinkSettings("s", "g", username="u",
                                            password_file=str(tmp_path / "missing")))
