"""Site config: the example is valid, every kind of mistake gets a message naming the
file, the dotted key and the allowed values, all at once; secrets are guarded."""
import dataclasses
import os
import secrets
import shutil
from pathlib import Path

import pytest

from gateway import cli
from gateway import config as gconfig
from protocol import channels, levels

EXAMPLES = Path(__file__).resolve().parents[2] / "gateway" / "examples"

BASE = """
[site]
id = "lushi"
gateway_id = "gw1"

[storage]
path = "store.db"

[mqtt]
host = "127.0.0.1"
client_id = "stationgw-gw1"

[radio]
port = "/dev/ttyAMA0"
module = "e22"
channel = 18
air_rate = 2400
keys_file = "keys.toml"

[[nodes]]
id = 101
name = "crack"

[[modbus.buses]]
name = "rs485-1"
type = "rtu"
port = "/dev/ttyUSB0"

[[modbus.devices]]
name = "radar"
bus = "rs485-1"
node = 9001
device_id = 1

[[modbus.devices.points]]
chan = "water_level.0"
table = "holding"
address = 4
type = "i16"
scale = 0.001
"""


def write_keys(directory, nodes=(101,), mode=0o600, values=None):
    path = Path(directory) / "keys.toml"
    values = values or {n: secrets.token_hex(32) for n in nodes}
    path.write_text("[keys]\n" + "".join('"%d" = "%s"\n' % kv for kv in values.items()))
    os.chmod(path, mode)
    return path


@pytest.fixture
def site(tmp_path):
    write_keys(tmp_path)
    return tmp_path


def load(site, text):
    path = site / "site.toml"
    path.write_text(text)
    return gconfig.load(str(path))


def problems(site, text):
    with pytest.raises(gconfig.ConfigError) as e:
        load(site, text)
    return e.value.issues


def one(site, text, key):
    """The single issue for `key`; its text must name the file too."""
    issues = problems(site, text)
    mine = [i for i in issues if i.key == key]
    assert len(mine) == 1, "wanted one issue for %s, got %s" % (key, issues)
    assert str(mine[0]).startswith(str(site / "site.toml") + ": " + key + ": ") or \
        str(mine[0]).startswith(mine[0].file + ": " + key + ": ")
    return mine[0].message


# ------------------------------------------------------------------ valid configs

def test_mqtt_client_id_defaults_to_the_gateway_id(site):
    cfg = load(site, BASE.replace('client_id = "stationgw-gw1"\n', ""))
    assert cfg.mqtt.client_id == "stationgw-gw1"


def test_base_config_loads_into_an_immutable_object(site):
    cfg = load(site, BASE)
    assert cfg.site.id == "lushi" and cfg.mqtt.port == 1883 and cfg.mqtt.protocol == "v5"
    assert cfg.storage.path == str(site / "store.db")       # relative to the file
    p = cfg.modbus.devices[0].points[0]
    assert p.chan == channels.chan_id(3, 0) and p.count == 1 and p.byte_order == "big"
    assert cfg.modbus.buses[0].inter_frame_gap_s == pytest.approx(3.5 * 11 / 9600)
    assert len(cfg.radio.keys.get(101)) == 32
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.site.id = "other"
    assert isinstance(cfg.nodes, tuple) and isinstance(cfg.modbus.devices, tuple)


def test_shipped_example_is_valid_with_real_keys(tmp_path):
    shutil.copy(EXAMPLES / "site.toml", tmp_path / "site.toml")
    write_keys(tmp_path, nodes=(101, 102, 103))
    cfg = gconfig.load(str(tmp_path / "site.toml"))
    assert [n.id for n in cfg.nodes] == [101, 102, 103]
    dev = cfg.modbus.device("river-radar")
    assert dev.node == 9001 and cfg.modbus.bus(dev.bus).type == "tcp"
    assert cfg.modbus.bus(dev.bus).host == "127.0.0.1" and cfg.mqtt.host == "127.0.0.1"
    orange = [r for r in dev.rules if r.level == levels.ORANGE and r.kind == "threshold"][0]
    assert orange.param("threshold") == 3500 and orange.param("hysteresis") == 100
    assert orange.to_wire()[:4] == [orange.id, channels.chan_id(3, 0), 1, levels.ORANGE]


def test_shipped_keys_example_is_refused(tmp_path):
    shutil.copy(EXAMPLES / "site.toml", tmp_path / "site.toml")
    shutil.copy(EXAMPLES / "keys.example.toml", tmp_path / "keys.toml")
    os.chmod(tmp_path / "keys.toml", 0o600)
    with pytest.raises(gconfig.ConfigError) as e:
        gconfig.load(str(tmp_path / "site.toml"))
    msgs = [str(i) for i in e.value.issues]
    assert len(msgs) == 3 and all("placeholder" in m and "stationctl keygen" in m for m in msgs)
    assert all(m.startswith(str(tmp_path / "keys.toml")) for m in msgs)


def test_a_modbus_only_site_needs_no_radio(site):
    head = BASE.split("[radio]")[0]
    tail = "[[modbus.buses]]" + BASE.split("[[modbus.buses]]", 1)[1]
    text = head + tail
    cfg = load(site, text)
    assert cfg.radio is None and cfg.nodes == ()


# ------------------------------------------------------------------ each kind of mistake

def test_bad_choice_names_dotted_key_and_allowed_values(site):
    text = BASE.replace('type = "i16"', 'type = "u8"')
    msg = one(site, text, "modbus.devices[0].points[0].type")
    assert "'u8'" in msg and "'u16', 'i16', 'u32', 'i32', 'f32'" in msg


def test_third_device_second_point_gets_its_own_index(site):
    dev = BASE.split("[[modbus.devices]]", 1)[1]
    text = BASE
    for n in (2, 3):
        text += "[[modbus.devices]]" + dev.replace('name = "radar"', 'name = "radar%d"' % n) \
            .replace("node = 9001", "node = %d" % (9000 + n))
    text += '[[modbus.devices.points]]\nchan = "rain.0"\ntable = "input"\naddress = 1\n' \
            'type = "i16"\nbyte_order = "middle"\n'
    msg = one(site, text, "modbus.devices[2].points[1].byte_order")
    assert "'big', 'little'" in msg


def test_unknown_key_is_an_error_listing_the_allowed_keys(site):
    msg = one(site, BASE.replace("device_id = 1", "device_id = 1\npoll_sec = 5"),
              "modbus.devices[0].poll_sec")
    assert "unknown key" in msg and "poll_s" in msg and "timeout_s" in msg


def test_wrong_type_says_what_it_got_and_what_is_allowed(site):
    msg = one(site, BASE.replace('client_id = "stationgw-gw1"',
                                 'client_id = "stationgw-gw1"\nport = "1883"'), "mqtt.port")
    assert "string" in msg and "integer from 1 to 65535" in msg


def test_out_of_range_number(site):
    msg = one(site, BASE.replace("channel = 18", "channel = 99"), "radio.channel")
    assert "99" in msg and "from 0 to 83" in msg


def test_missing_required_key_and_section(site):
    text = BASE.replace('gateway_id = "gw1"\n', "").replace("[storage]\npath = \"store.db\"\n",
                                                            "")
    issues = problems(site, text)
    keys = {i.key: i.message for i in issues}
    assert "required key is missing" in keys["site.gateway_id"]
    assert "[a-z0-9-]" in keys["site.gateway_id"] or "lower-case" in keys["site.gateway_id"]
    assert "missing section [storage]" in keys["storage"]


def test_bad_ids_and_channel_names(site):
    text = BASE.replace('id = "lushi"', 'id = "Lushi Site"').replace(
        'chan = "water_level.0"', 'chan = "waterlevel.9"')
    issues = {i.key: i.message for i in problems(site, text)}
    assert "lower-case letters" in issues["site.id"]
    msg = issues["modbus.devices[0].points[0].chan"]
    assert "waterlevel" in msg and "water_level" in msg and "rain" in msg


def test_cross_references_are_checked(site):
    text = BASE.replace('bus = "rs485-1"', 'bus = "rs485-2"').replace("node = 9001",
                                                                      "node = 101")
    text += '[modbus.alarm_output]\ndevice = "siren"\naddress = 0\nmin_level = "purple"\n'
    issues = {i.key: i.message for i in problems(site, text)}
    assert "'rs485-1'" in issues["modbus.devices[0].bus"]
    assert "radio node" in issues["modbus.devices[0].node"]
    assert "'radar'" in issues["modbus.alarm_output.device"]
    assert "blue, yellow, orange, red" in issues["modbus.alarm_output.min_level"]


def test_duplicates_are_errors(site):
    text = BASE.replace('[[modbus.buses]]',
                        '[[nodes]]\nid = 101\nname = "crack2"\n\n[[modbus.buses]]')
    assert "appears twice" in one(site, text, "nodes[1].id")


def test_rules_are_checked_by_name_kind_and_channel(site):
    text = BASE + """
[[modbus.devices.rules]]
id = 1
chan = "rain.0"
kind = "threshold"
level = "green"
op = "over"
threshold = "high"
window_s = 60
"""
    issues = {i.key: i.message for i in problems(site, text)}
    assert "rain.0 is not read by this device; allowed: water_level.0" in \
        issues["modbus.devices[0].rules[0].chan"]
    assert "blue, yellow, orange, red" in issues["modbus.devices[0].rules[0].level"]
    assert "'above', 'below'" in issues["modbus.devices[0].rules[0].op"]
    assert "a number" in issues["modbus.devices[0].rules[0].threshold"]
    assert "unknown key" in issues["modbus.devices[0].rules[0].window_s"]
    bad_kind = BASE + '[[modbus.devices.rules]]\nid = 1\nchan = "water_level.0"\n' \
                      'kind = "trend"\nlevel = "red"\n'
    assert "'threshold', 'rate', 'sum', 'invvel'" in \
        one(site, bad_kind, "modbus.devices[0].rules[0].kind")


def test_rule_values_become_channel_scaled_integers(site):
    cfg = load(site, BASE + """
[[modbus.devices.rules]]
id = 7
chan = "water_level.0"
kind = "rate"
level = "II"
window_s = 900
threshold = 0.5
hysteresis = 0.05
""")
    r = cfg.modbus.devices[0].rules[0]
    assert r.level == levels.ORANGE and r.kind == "rate"
    assert dict(r.params) == {"window_s": 900, "threshold": 500, "hysteresis": 50, "hold_s": 0}


def test_coil_points_are_bits(site):
    text = BASE + '[[modbus.devices.points]]\nchan = "supply.0"\ntable = "coil"\n' \
                  'address = 0\ntype = "u16"\n'
    assert "'bool'" in one(site, text, "modbus.devices[0].points[1].type")


def test_toml_syntax_error_names_the_file(site):
    issues = problems(site, BASE + "\n[mqtt\n")
    assert len(issues) == 1 and "TOML syntax error" in str(issues[0])
    assert str(issues[0]).startswith(str(site / "site.toml"))


def test_every_error_is_reported_at_once(site):
    text = (BASE.replace('type = "i16"', 'type = "u8"')
            .replace("channel = 18", "channel = -1")
            .replace('protocol = "v5"', "")
            .replace('host = "127.0.0.1"', 'host = "127.0.0.1"\nprotocol = "v4"')
            .replace("device_id = 1", "device_id = 300")
            .replace('name = "crack"', 'name = "crack"\nfoo = 1'))
    keys = {i.key for i in problems(site, text)}
    assert {"modbus.devices[0].points[0].type", "radio.channel", "mqtt.protocol",
            "modbus.devices[0].device_id", "nodes[0].foo"} <= keys


# ------------------------------------------------------------------ secrets

def test_group_or_world_readable_keys_file_is_refused(site):
    os.chmod(site / "keys.toml", 0o644)
    msg = one(site, BASE, "radio.keys_file")
    assert "readable by group or others" in msg and "chmod 600" in msg
    os.chmod(site / "keys.toml", 0o640)
    assert "readable by group or others" in one(site, BASE, "radio.keys_file")


def test_missing_keys_file_says_how_to_make_one(tmp_path):
    msg = one(tmp_path, BASE, "radio.keys_file")
    assert "does not exist" in msg and "stationctl keygen" in msg


@pytest.mark.parametrize("value, words", [
    ("00" * 32, "trivial key"),
    ("ff" * 32, "trivial key"),
    ("abcd", "64 hex digits"),
    ("zz" * 32, "64 hex digits"),
    (gconfig.KEY_PLACEHOLDER, "placeholder"),
])
def test_bad_keys_are_refused(tmp_path, value, words):
    write_keys(tmp_path, values={101: value})
    issues = problems(tmp_path, BASE)
    mine = [i for i in issues if i.key == 'keys."101"']
    assert len(mine) == 1 and words in mine[0].message
    assert mine[0].file == str(tmp_path / "keys.toml")
    assert value not in mine[0].message or value == gconfig.KEY_PLACEHOLDER


def test_every_radio_node_needs_a_key(tmp_path):
    write_keys(tmp_path, nodes=(102,))
    msg = one(tmp_path, BASE, "radio.keys_file")
    assert "no key for node 101" in msg
    # reported along with unrelated problems, not only when everything else is right
    keys = {i.key for i in problems(tmp_path, BASE.replace("channel = 18", "channel = 99"))}
    assert keys == {"radio.keys_file", "radio.channel"}


def test_keys_never_show_in_repr_or_errors(site):
    cfg = load(site, BASE)
    key_hex = cfg.radio.keys.get(101).hex()
    assert key_hex not in repr(cfg) and key_hex not in str(cfg.radio.keys)


def test_password_file_must_be_private_and_needs_a_user(site):
    pw = site / "mqtt.pass"
    pw.write_text("s3cret\n")
    os.chmod(pw, 0o644)
    text = BASE.replace('client_id = "stationgw-gw1"',
                        'client_id = "stationgw-gw1"\npassword_file = "mqtt.pass"')
    msgs = [i.message for i in problems(site, text) if i.key == "mqtt.password_file"]
    assert any("readable by group or others" in m for m in msgs)
    os.chmod(pw, 0o600)
    assert "needs a user name" in one(site, text, "mqtt.password_file")
    cfg = load(site, text.replace('password_file', 'username = "gw1"\npassword_file'))
    assert cfg.mqtt.read_password() == "s3cret" and "s3cret" not in repr(cfg)


def test_tls_client_cert_needs_key_and_ca(site):
    (site / "client.crt").write_text("x")
    text = BASE.replace('client_id = "stationgw-gw1"',
                        'client_id = "stationgw-gw1"\ntls_cert = "client.crt"')
    issues = {i.key: i.message for i in problems(site, text)}
    assert "tls_cert and tls_key" in issues["mqtt.tls_cert"]
    assert "set tls_ca" in issues["mqtt.tls_ca"]


# ------------------------------------------------------------------ the CLI

def test_check_config_exit_0_with_a_summary(site, capsys):
    (site / "site.toml").write_text(BASE)
    assert cli.main(["check-config", str(site / "site.toml")]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "site lushi, gateway gw1" in out and "device radar" in out


def test_check_config_exit_2_listing_every_problem(site, capsys):
    (site / "site.toml").write_text(BASE.replace('type = "i16"', 'type = "u8"')
                                    .replace("channel = 18", "channel = 99"))
    assert cli.main(["check-config", str(site / "site.toml")]) == 2
    err = capsys.readouterr().err
    assert "2 problems" in err
    assert "modbus.devices[0].points[0].type" in err and "radio.channel" in err


def test_check_config_on_a_missing_file(tmp_path, capsys):
    assert cli.main(["check-config", str(tmp_path / "nope.toml")]) == 2
    assert "cannot read config file" in capsys.readouterr().err


def test_run_and_status_take_the_config_as_argument_or_option(site, capsys):
    # `stationgw run site.toml` once failed with "unrecognized arguments"
    (site / "site.toml").write_text(BASE)
    d = FakeDaemon()
    assert cli.main(["run", str(site / "site.toml")], load_daemon=lambda: d) == 0
    assert cli.main(["status", str(site / "site.toml")], load_daemon=lambda: d) == 0
    assert cli.main(["check-config", "-c", str(site / "site.toml")]) == 0
    assert [c[0] for c in d.calls] == ["main", "status"]
    assert d.calls[0][1].path == str(site / "site.toml")
    with pytest.raises(SystemExit) as e:
        cli.main(["run", str(site / "site.toml"), "-c", str(site / "other.toml")],
                 load_daemon=lambda: d)
    assert e.value.code == 2 and "two config files" in capsys.readouterr().err


class FakeDaemon:
    def __init__(self):
        self.calls = []

    def main(self, cfg):
        self.calls.append(("main", cfg))
        return 0

    def status(self, cfg, as_json):
        self.calls.append(("status", cfg, as_json))
        return 0


def test_run_hands_the_checked_config_to_the_daemon(site, capsys):
    (site / "site.toml").write_text(BASE)
    d = FakeDaemon()
    assert cli.main(["run", "-c", str(site / "site.toml")], load_daemon=lambda: d) == 0
    assert cli.main(["status", "-c", str(site / "site.toml"), "--json"],
                    load_daemon=lambda: d) == 0
    assert [c[0] for c in d.calls] == ["main", "status"]
    assert d.calls[0][1].site.id == "lushi" and d.calls[1][2] is True
    (site / "site.toml").write_text(BASE.replace("channel = 18", "channel = 99"))
    d.calls.clear()
    assert cli.main(["run", "-c", str(site / "site.toml")], load_daemon=lambda: d) == 2
    assert d.calls == [] and "radio.channel" in capsys.readouterr().err


def test_missing_serial_devices_are_warnings(site):
    present = site / "ttyUSB-present"
    present.write_text("")
    text = BASE.replace('"/dev/ttyAMA0"', '"%s"' % (site / "ttyAMA-gone")) \
        .replace('"/dev/ttyUSB0"', '"%s"' % present)
    cfg = load(site, text)
    assert {w.key: w.message for w in cfg.warnings} == {
        "radio.port": "%s does not exist on this machine" % (site / "ttyAMA-gone")}


def test_rules_are_built_by_the_trip_engine(site):
    trip = pytest.importorskip("protocol.trip")
    cfg = load(site, BASE + """
[[modbus.devices.rules]]
id = 2
chan = "water_level.0"
kind = "threshold"
level = "red"
op = "below"
threshold = 0.2
near = 0.05
""")
    rule = cfg.modbus.devices[0].rules[0].rule()
    assert rule.kind == trip.THRESHOLD and rule.op == 2 and rule.threshold == 200
    assert rule.near == 50 and rule.level == levels.RED
    # the engine's own limits come back under the rule's key
    msg = one(site, BASE + """
[[modbus.devices.rules]]
id = 3
chan = "water_level.0"
kind = "invvel"
level = "red"
window_s = 60
lead_s = 3600
""", "modbus.devices[0].rules[0].window_s")
    assert "960" in msg and "172800" in msg     # ranges: protocol/ruleparse.py's table
    # a check only the engine makes comes back under the rule's key
    msg = one(site, BASE + """
[[modbus.devices.rules]]
id = 3
chan = "water_level.0"
kind = "rate"
level = "red"
window_s = 600
threshold = 0.5
hysteresis = 0.5
""", "modbus.devices[0].rules[0]")
    assert "trip engine refuses" in msg and "hysteresis" in msg


def test_systemd_unit_is_hardened_and_runs_commands_the_cli_has():
    unit = (EXAMPLES.parent / "systemd" / "stationgw.service").read_text()
    lines = [x.strip() for x in unit.splitlines() if x.strip() and not x.startswith("#")]
    for want in ("User=stationgw", "StateDirectory=stationgw", "ProtectSystem=strict",
                 "Restart=always", "NoNewPrivileges=yes", "PrivateTmp=yes"):
        assert want in lines, want
    # WatchdogSec would need sd_notify pings the daemon does not send
    assert not any(x.startswith("WatchdogSec") for x in lines)
    # issue 12 defect 6: exactly the devices it needs, GPIO by character device
    assert "DevicePolicy=closed" in lines and "DeviceAllow=/dev/gpiochip0 rw" in lines
    assert "DeviceAllow=/dev/ttyAMA0 rw" in lines
    groups = [x for x in lines if x.startswith("SupplementaryGroups=")]
    assert groups and set(groups[0].split("=", 1)[1].split()) == {"gpio", "dialout"}
    assert "ProtectKernelTunables=yes" in lines and "PrivateDevices=yes" not in lines
    for x in lines:
        if x.startswith(("ExecStart=", "ExecStartPre=")):
            argv = x.split("=", 1)[1].split()
            assert argv[0].endswith("/stationgw")
            cli.parser().parse_args(argv[1:])      # exits (SystemExit) if a command is wrong


def test_module_mode_pins_are_configurable(site):
    cfg = load(site, BASE)
    assert (cfg.radio.m0_gpio, cfg.radio.m1_gpio) == (22, 27)
    cfg = load(site, BASE.replace("air_rate = 2400\n", "air_rate = 2400\nm0_gpio = 5\nm1_gpio = 6\n"))
    assert (cfg.radio.m0_gpio, cfg.radio.m1_gpio) == (5, 6)
    # character-device lines: a name, or an offset above the old sysfs cap of 511
    cfg = load(site, BASE.replace("air_rate = 2400\n", "air_rate = 2400\nm0_gpio = \"GPIO5\"\n"
                                  "m1_gpio = 539\ngpio_chip = \"gpiochip4\"\n"))
    assert (cfg.radio.m0_gpio, cfg.radio.m1_gpio, cfg.radio.gpio_chip) == ("GPIO5", 539,
                                                                           "gpiochip4")
    msg = one(site, BASE.replace("air_rate = 2400\n", "air_rate = 2400\nm0_gpio = 2.5\n"), "radio.m0_gpio")
    assert "int" in msg or "integer" in msg
    msg = one(site, BASE.replace("air_rate = 2400\n", "air_rate = 2400\ngpio_chip = \"/sys/class/gpio\"\n"), "radio.gpio_chip")
    assert "gpiochip0" in msg


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    import shutil
    import subprocess
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    unit = (EXAMPLES.parent / "systemd" / "stationgw.service").read_text()
    # verify checks that ExecStart= binaries exist: point them at this checkout's CLI
    stub = tmp_path / "stationgw"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = unit.replace("/opt/stationgw/venv/bin/stationgw", str(stub))
    path = tmp_path / "stationgw.service"
    path.write_text(unit)
    r = subprocess.run([exe, "verify", str(path)], capture_output=True, text=True, timeout=60)
    problems = [x for x in (r.stdout + r.stderr).splitlines()
                if "stationgw.service" in x and "Documentation" not in x]
    assert r.returncode == 0 or not problems, r.stdout + r.stderr
    assert not problems, problems


def test_modbus_polls_are_whole_seconds(site):
    # the uplink stamps readings in whole seconds (SPEC §9.2): 0.5 s or 1.5 s polls would
    # give readings the same or uneven stamps, so the config refuses them
    for bad, why in (("0.5", "1"), ("1.5", "whole number of seconds")):
        msg = one(site, BASE.replace("device_id = 1", "device_id = 1\npoll_s = " + bad),
                  "modbus.devices[0].poll_s")
        assert why in msg, msg
    cfg = load(site, BASE.replace("device_id = 1", "device_id = 1\npoll_s = 1"))
    assert cfg.modbus.devices[0].poll_s == 1


def test_batch_schema_defaults_to_2_and_1_is_the_only_other(site):
    """[batch] schema (SPEC §9.2, §10): 2 unless a site's consumers still need 1."""
    from gateway.uplink import UplinkSettings
    cfg = load(site, BASE)
    assert cfg.batch.schema == 2
    assert UplinkSettings.from_config(cfg).batch_schema == 2
    cfg = load(site, BASE + "\n[batch]\nschema = 1\n")
    assert UplinkSettings.from_config(cfg).batch_schema == 1
    msg = one(site, BASE + "\n[batch]\nschema = 3\n", "batch.schema")
    assert "3" in msg and "1, 2" in msg
