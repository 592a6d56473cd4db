"""`python -m bench capacity` on a small case: it runs, prints its table and JSON, and
the storm link beats today's link on simulated outcomes (counts, not wall time)."""
from bench import capacity


def test_small_storm_runs_and_storm_link_loses_no_alarm(capsys):
    import json
    assert capacity.main(["--nodes", "30", "--seeds", "1", "--storm-h", "1.6", "--drain-h", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[1].startswith("N | link")
    fig = json.loads(out[-1])
    rows = {(r["n"], r["profile"]): r for r in fig["rows"]}
    today, storm = rows[(30, "today")], rows[(30, "storm-link")]
    assert storm["alarms"] == today["alarms"] > 0
    assert storm["alarm_lost"] == 0
    assert storm["delivery_final"] >= 0.99
    assert storm["max_node_air"] <= 0.01           # the 1 % budget
    assert storm["max_tx_s"] <= 1.0                # China 470-510 MHz: <= 1 s per transmission
    assert storm["hinted_acks"] > 0 and today["hinted_acks"] == 0
    assert storm["alarm_p99_s"] <= today["alarm_p99_s"]
