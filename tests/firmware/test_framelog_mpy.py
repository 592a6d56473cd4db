"""The frame log on the MicroPython unix port, loaded as .mpy as on a board
(tests/mpy/framelog_check.py): its boot-only scan (firmware/logscan.py) is dropped after
open_log() and gives its heap back, thinning loads no module,
and the steps a node runs all day allocate a few hundred bytes each. 128 KB of heap: the
64-bit port doubles every object. `pytest -s` prints the figures."""
import json

import pytest

pytestmark = pytest.mark.mpy


def test_framelog_heap_on_micropython(micropython_module, tmp_path):
    r = micropython_module("framelog_check", heap="128K", args=[str(tmp_path)], timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    print("\nframe log on the unix port (bytes):", json.dumps(summary["figures"], sort_keys=True))
    assert summary["ok"], r.stdout
    assert summary["checks"] >= 18
