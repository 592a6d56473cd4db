"""A set-rules CONFIG the node cannot afford, on the MicroPython unix port with modules as
.mpy (tests/mpy/config_nomem_check.py): the heap is filled and freed a kilobyte more before
each try, so the MemoryError falls at every step of the CONFIG path. The node must never
crash: it runs either the new config (saved, acked) or the old one (flash untouched, no
ack, counted as config_no_memory), keeps sampling, and applies the CONFIG once it fits."""
import pytest

pytestmark = pytest.mark.mpy


def test_node_survives_a_config_it_cannot_afford(micropython_module, tmp_path):
    r = micropython_module("config_nomem_check", heap="256K", args=[str(tmp_path)], timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "CONFIG_NOMEM ok=1 failures=0" in r.stdout, r.stdout[-3000:]
