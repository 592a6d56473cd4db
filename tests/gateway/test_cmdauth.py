"""Issue 12, defect 3: commands must prove who sent them. Unsigned, forged, replayed,
stale, mis-targeted and unauthorised commands are refused and counted (0 accepted in
well over 1,000 tries), dangerous commands need the operator's permission and a signed
flag, and the operator keys file must be private."""
import json
import os
import random

import cbor2
import pytest

from gateway import cmdauth, opcli
from gateway import config as gconfig
from gateway import downlink as dl

SITE, GW = "lushi", "gw1"
T0 = 1_800_000_000
NODES = {101, 102}
CHANS = {101: {3 << 3, 1 << 3}, 102: {3 << 3}}


def ops(tmp_path):
    path = str(tmp_path / "operators.toml")
    opcli.add_operator(path, "alice", ["set-intervals", "emergency", "request-status",
                                       "set-rules"], dangerous=True)
    opcli.add_operator(path, "bob", ["request-status"])
    return path, cmdauth.load_operators(path, dl.VERBS)


def body(doc):
    return json.dumps(doc).encode()


def test_genuine_command_is_accepted_once(tmp_path):
    _p, o = ops(tmp_path)
    auth = cmdauth.CommandAuth(o, SITE, GW)
    env = cmdauth.sign(o["alice"].key, "alice", SITE, GW, "emergency",
                       body({"node": 101, "duration_s": 600}), T0)
    op, cmd, dangerous = auth.check("emergency", env, T0 + 2)
    assert op.name == "alice" and json.loads(cmd) == {"node": 101, "duration_s": 600}
    assert dangerous is False
    with pytest.raises(cmdauth.Refused) as e:
        auth.check("emergency", env, T0 + 3)
    assert e.value.reason == cmdauth.R_REPLAY


def test_over_a_thousand_bad_commands_none_accepted(tmp_path):
    _p, o = ops(tmp_path)
    auth = cmdauth.CommandAuth(o, SITE, GW, rate_per_min=600, burst=600)
    rng = random.Random(12)
    alice = o["alice"].key
    genuine = cmdauth.sign(alice, "alice", SITE, GW, "set-intervals",
                           body({"node": 101, "sample_s": 60}), T0)
    auth.check("set-intervals", genuine, T0)           # the one real command
    other_key = os.urandom(32)
    tries = []
    for i in range(1200):
        kind = i % 10
        cmd = body({"node": rng.choice([101, "all"]), "sample_s": rng.randint(1, 86400)})
        if kind == 0:      # unsigned, the old format
            tries.append(("set-intervals", cmd))
        elif kind == 1:    # signed with a key the gateway does not hold
            tries.append(("set-intervals", cmdauth.sign(other_key, "alice", SITE, GW,
                                                        "set-intervals", cmd, T0)))
        elif kind == 2:    # an unknown operator
            tries.append(("set-intervals", cmdauth.sign(other_key, "mallory", SITE, GW,
                                                        "set-intervals", cmd, T0)))
        elif kind == 3:    # a replay of the genuine command
            tries.append(("set-intervals", genuine))
        elif kind == 4:    # the genuine bytes on another verb's topic
            tries.append(("emergency", genuine))
        elif kind == 5:    # for another gateway
            tries.append(("set-intervals", cmdauth.sign(alice, "alice", SITE, "gw9",
                                                        "set-intervals", cmd, T0)))
        elif kind == 6:    # signed too long ago (or ahead)
            tries.append(("set-intervals", cmdauth.sign(
                alice, "alice", SITE, GW, "set-intervals", cmd,
                T0 + rng.choice([-1, 1]) * rng.randint(301, 10 ** 6))))
        elif kind == 7:    # a verb this operator may not send
            tries.append(("set-intervals", cmdauth.sign(o["bob"].key, "bob", SITE, GW,
                                                        "set-intervals", cmd, T0)))
        elif kind == 8:    # tampered: the command changed after signing
            env = cbor2.loads(cmdauth.sign(alice, "alice", SITE, GW, "set-intervals", cmd, T0))
            env["cmd"] = body({"node": "all", "sample_s": 86400})
            tries.append(("set-intervals", cbor2.dumps(env)))
        else:              # garbage
            tries.append(("set-intervals", os.urandom(rng.randint(0, 300))))
    accepted = 0
    for verb, payload in tries:
        try:
            auth.check(verb, payload, T0 + 1)
            accepted += 1
        except cmdauth.Refused:
            pass
    assert len(tries) >= 1000 and accepted == 0
    assert sum(auth.refused.values()) == len(tries)
    assert auth.accepted == 1
    for reason in (cmdauth.R_MALFORMED, cmdauth.R_MAC, cmdauth.R_UNKNOWN_OPERATOR,
                   cmdauth.R_REPLAY, cmdauth.R_WRONG_TARGET, cmdauth.R_STALE, cmdauth.R_VERB):
        assert auth.refused.get(reason), reason


def test_replay_cache_survives_a_restart(tmp_path):
    _p, o = ops(tmp_path)
    auth = cmdauth.CommandAuth(o, SITE, GW)
    env = cmdauth.sign(o["alice"].key, "alice", SITE, GW, "request-status",
                       body({"node": 101}), T0)
    auth.check("request-status", env, T0)
    saved = cbor2.loads(cbor2.dumps(auth.dump_nonces()))
    again = cmdauth.CommandAuth(o, SITE, GW)
    again.load_nonces(saved, T0 + 10)
    with pytest.raises(cmdauth.Refused, match="nonce"):
        again.check("request-status", env, T0 + 10)


def test_rate_limit_per_operator(tmp_path):
    _p, o = ops(tmp_path)
    auth = cmdauth.CommandAuth(o, SITE, GW, rate_per_min=6, burst=3)
    results = []
    for i in range(6):
        env = cmdauth.sign(o["alice"].key, "alice", SITE, GW, "request-status",
                           body({"node": 101}), T0)
        try:
            auth.check("request-status", env, T0 + i * 0.1)
            results.append(True)
        except cmdauth.Refused as e:
            assert e.reason == cmdauth.R_RATE
            results.append(False)
    assert results == [True, True, True, False, False, False]
    env = cmdauth.sign(o["alice"].key, "alice", SITE, GW, "request-status", body({"node": 1}),
                       T0)
    auth.check("request-status", env, T0 + 11)          # a token back after 10 s


@pytest.mark.parametrize("verb,doc,dangerous", [
    ("set-rules", {"node": 101, "rules": []}, True),
    ("set-rules", {"node": 101, "rules": [
        {"id": 1, "chan": "water_level.0", "kind": "threshold", "level": "orange",
         "op": "above", "threshold": 3500, "hysteresis": 100, "persist_s": 120,
         "hold_s": 600}]}, True),                      # rain.0 left without a rule
    ("set-intervals", {"node": 101, "sample_s": 86400}, True),
    ("set-intervals", {"node": 101, "sample_s": 60}, False),
    ("set-intervals", {"node": "all", "sample_s": 60}, True),
    ("emergency", {"node": 101, "duration_s": 7 * 86400}, True),
    ("emergency", {"node": 101, "duration_s": 3600}, False),
    ("request-status", {"node": "all"}, False),
])
def test_what_counts_as_dangerous(verb, doc, dangerous):
    cmd = dl.parse_command(verb, doc, NODES, CHANS)
    assert bool(cmdauth.danger(cmd, CHANS)) is dangerous


def test_dangerous_needs_permission_and_the_signed_flag(tmp_path):
    _p, o = ops(tmp_path)
    auth = cmdauth.CommandAuth(o, SITE, GW)
    with pytest.raises(cmdauth.Refused, match="--dangerous"):
        auth.allow_dangerous(o["alice"], False, "all nodes")
    with pytest.raises(cmdauth.Refused, match="may not send dangerous"):
        auth.allow_dangerous(o["bob"], True, "all nodes")
    auth.allow_dangerous(o["alice"], True, "all nodes")
    assert auth.refused[cmdauth.R_DANGEROUS] == 2


def test_operator_keys_file_must_be_private_and_well_formed(tmp_path):
    path, _o = ops(tmp_path)
    os.chmod(path, 0o644)
    with pytest.raises(cmdauth.OperatorsError, match="chmod 600"):
        cmdauth.load_operators(path, dl.VERBS)
    bad = tmp_path / "bad.toml"
    bad.write_text('[operators.x]\nkey = "%s"\nverbs = ["reboot"]\n' % ("00" * 32))
    os.chmod(bad, 0o600)
    with pytest.raises(cmdauth.OperatorsError) as e:
        cmdauth.load_operators(str(bad), dl.VERBS)
    assert "operators.x.key" in str(e.value) and "operators.x.verbs" in str(e.value)


def test_site_config_commands_section(tmp_path):
    path, _o = ops(tmp_path)
    keys = tmp_path / "keys.toml"
    keys.write_text('[keys]\n"101" = "%s"\n' % os.urandom(32).hex())
    os.chmod(keys, 0o600)
    site = tmp_path / "site.toml"
    text = """[site]\nid = "lushi"\ngateway_id = "gw1"\n[storage]\npath = "%s"\nquota_mb = 64
[mqtt]\nhost = "127.0.0.1"\n[mqtt.reconnect]\nprobe_s = 0.1\nmax_s = 5\n
[radio]\nport = "/dev/null"\nmodule = "none"\nkeys_file = "keys.toml"
[[nodes]]\nid = 101\nname = "a"\n[commands]\noperators_file = "operators.toml"
max_pending_per_node = 4\n""" % (tmp_path / "s.db")
    site.write_text(text)
    cfg = gconfig.load(str(site))
    assert sorted(cfg.security.commands.operators) == ["alice", "bob"]
    assert cfg.security.commands.max_pending_per_node == 4
    assert cfg.security.reconnect.probe_s == 0.1 and cfg.security.reconnect.max_s == 5.0
    assert "key" not in repr(cfg.security.commands).lower().replace("keys", "")
    site.write_text(text.replace("max_pending_per_node = 4", "max_pending_per_node = 0\n"
                                 "bogus = 1"))
    with pytest.raises(gconfig.ConfigError) as e:
        gconfig.load(str(site))
    keys_named = {i.key for i in e.value.issues}
    assert {"commands.max_pending_per_node", "commands.bogus"} <= keys_named


def test_sign_command_cli_prints_an_envelope_the_gateway_accepts(tmp_path, capsys):
    from gateway import cli
    path = str(tmp_path / "ops.toml")
    assert cli.main(["operator-key", "carol", "-f", path, "--verbs", "request-status",
                     "--export", str(tmp_path / "carol.toml")]) == 0
    assert oct(os.stat(tmp_path / "carol.toml").st_mode & 0o777) == "0o600"
    capsys.readouterr()
    assert cli.main(["sign-command", "-k", str(tmp_path / "carol.toml"), "--site", SITE,
                     "--gw", GW, "request-status", '{"node": 101}']) == 0
    env = bytes.fromhex(capsys.readouterr().out.strip())
    auth = cmdauth.CommandAuth(cmdauth.load_operators(path, dl.VERBS), SITE, GW)
    import time
    op, cmd, _d = auth.check("request-status", env, time.time())
    assert op.name == "carol" and json.loads(cmd) == {"node": 101}


def test_queue_bounds_refuse_not_pile_up():
    q = dl.DownlinkQueue(lambda *a: None, max_per_node=3, max_total=5)
    for _ in range(3):
        q.put(dl.parse_command("request-status", {"node": 101}, NODES), T0)
    with pytest.raises(dl.QueueFull, match="101"):
        q.put(dl.parse_command("request-status", {"node": 101}, NODES), T0)
    q.put(dl.parse_command("request-status", {"node": 102}, NODES), T0)
    with pytest.raises(dl.QueueFull, match="full"):
        q.put(dl.parse_command("request-status", {"node": "all"}, NODES), T0)
    assert q.depth() == 4 and q.refused_full == 2
