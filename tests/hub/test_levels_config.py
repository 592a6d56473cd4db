"""Station levels whatever order alarms arrive in, and hub.toml's errors."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub import levels
from hub.config import ConfigError, load

alarms = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4)), min_size=1, max_size=30)


@given(alarms, st.randoms())
def test_late_alarms_never_change_the_outcome(seq_levels, rnd):
    """Alarms (chan, level) with increasing seqs: applied in any order (a backlog
    draining after live alarms), each channel ends at its newest alarm's level."""
    items = [(chan, lv, seq) for seq, (chan, lv) in enumerate(seq_levels, 1)]
    shuffled = items[:]
    rnd.shuffle(shuffled)
    state = {}
    for chan, lv, seq in shuffled:
        state, _ = levels.apply(state, chan, lv, seq, 0)
    newest = {}
    for chan, lv, _seq in items:
        newest[chan] = lv
    assert {c: v[0] for c, v in state.items()} == newest
    assert levels.station_level(state) == max(newest.values())


def test_config_reports_every_problem(tmp_path):
    p = tmp_path / "hub.toml"
    p.write_text('[hub]\ndatabase = "mysql://x"\nsender = "a b"\nstations = "none.csv"\n'
                 '[mqtt]\nsubscription = "exclusive"\nworkers = 3\ngroup = "a/b"\n'
                 '[broadcast]\nmodbus_host = "10.0.0.5"\n[web]\ntoken = "x"\n')
    with pytest.raises(ConfigError) as e:
        load(str(p))
    msg = str(e.value)
    for key in ("hub.database", "hub.sender", "hub.stations", "mqtt.workers", "mqtt.group",
                "broadcast.zones", "web.token"):
        assert "hub.toml: %s:" % key in msg, (key, msg)
    p.write_text('[hub]\ndatabase = "sqlite:///x.db"\n')
    c = load(str(p))
    assert c.database == "sqlite:///%s" % (tmp_path / "x.db") and c.workers == 2
    assert c.subscription == "shared" and c.spool == str(tmp_path / "cap-out")
