"""The [http] section (gateway/config_http.py): off by default, a token file like a key."""
import logging
import os

import pytest

from gateway.logevent import event_line, log_event
from tests.gateway.test_config import BASE, load, problems, write_keys


@pytest.fixture
def site(tmp_path):
    write_keys(tmp_path)
    return tmp_path


def token(site, text="t" * 32, mode=0o600):
    p = site / "http.token"
    p.write_text(text)
    os.chmod(p, mode)
    return p


def test_absent_section_means_off(site):
    cfg = load(site, BASE)
    assert cfg.http.enabled is False


def test_enabled_needs_a_private_token_file_of_enough_characters(site):
    issues = problems(site, BASE + '\n[http]\nenabled = true\n')
    assert any(i.key == "http.token_file" and "required" in i.message for i in issues)
    token(site, mode=0o644)
    issues = problems(site, BASE + '\n[http]\nenabled = true\ntoken_file = "http.token"\n')
    assert [i.key for i in issues] == ["http.token_file"] and "chmod 600" in issues[0].message
    token(site, text="short")
    issues = problems(site, BASE + '\n[http]\nenabled = true\ntoken_file = "http.token"\n')
    assert "5 characters" in issues[0].message and "24 or more" in issues[0].message
    token(site)
    cfg = load(site, BASE + '\n[http]\nenabled = true\ntoken_file = "http.token"\nport = 8081\n')
    assert (cfg.http.enabled, cfg.http.bind, cfg.http.port) == (True, "127.0.0.1", 8081)
    assert cfg.http.read_token() == "t" * 32
    assert "t" * 32 not in repr(cfg)


def test_bad_values_are_named_with_what_is_allowed(site):
    token(site)
    issues = problems(site, BASE + '\n[http]\nenabled = true\ntoken_file = "http.token"\n'
                                   'bind = "localhost"\nport = 0\npasword = "x"\n')
    keys = {i.key: i.message for i in issues}
    assert set(keys) == {"http.bind", "http.port", "http.pasword"}
    assert "IP address" in keys["http.bind"] and "1 to 65535" in keys["http.port"]


def test_all_interfaces_is_a_warning(site):
    token(site)
    cfg = load(site, BASE + '\n[http]\nenabled = true\ntoken_file = "http.token"\n'
                            'bind = "0.0.0.0"\n')
    assert any(w.key == "http.bind" and "TLS" in w.message for w in cfg.warnings)


def test_log_event_writes_key_values_and_never_a_secret(caplog):
    line = event_line("uplink_state", broker="10.0.0.5:8883", connected=False,
                      reason="connect failed", password="hunter2", node_key=b"\x01" * 32,
                      http_token="abc", latency=0.25, gaps=None)
    assert line == ('event=uplink_state broker=10.0.0.5:8883 connected=false '
                    'reason="connect failed" password=<redacted> node_key=<redacted> '
                    'http_token=<redacted> latency=0.25 gaps=-')
    assert event_line("x", payload=b"\x01\x02") == "event=x payload=<2 bytes>"
    with caplog.at_level(logging.INFO):
        log_event(logging.getLogger("t"), "hello", secret="s3cr3t", who='a "b"')
    assert caplog.records[0].getMessage() == 'event=hello secret=<redacted> who="a \\"b\\""'


def test_an_offline_modbus_device_is_logged_with_its_endpoint_and_next_step(site):
    # "reason=connect failed" once came with no host:port and no next step
    from gateway.modbus import _where
    cfg = load(site, BASE)
    dev = cfg.modbus.devices[0]
    bus = next(b for b in cfg.modbus.buses if b.name == dev.bus)
    w = _where(bus, dev, "connect failed" if bus.type == "tcp" else "crc error")
    line = event_line("modbus_offline", device=dev.name, reason="connect failed", **w)
    if bus.type == "tcp":
        assert "endpoint=%s:%d" % (bus.host, bus.port) in line and "host/port" in line
    else:
        assert 'endpoint="%s 9600 N1"' % bus.port in line and "baudrate/parity" in line
    assert _where(bus, dev, "timeout")["next"].startswith("check the device's id (device_id")


def test_a_taken_status_port_stops_run_with_host_port_and_next_step(site, capsys):
    import socket

    from gateway import cli
    token(site)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        (site / "site.toml").write_text(BASE + '\n[http]\nenabled = true\ntoken_file = '
                                               '"http.token"\nport = %d\n' % port)

        class NoDaemon:
            def main(self, cfg, attach=None):
                raise AssertionError("the daemon must not start")

            def read_status(self, cfg):
                return {}
        assert cli.main(["run", str(site / "site.toml")], load_daemon=NoDaemon) == 1
    err = capsys.readouterr().err
    assert "127.0.0.1:%d" % port in err and "[http] port" in err and "ss -ltnp" in err
