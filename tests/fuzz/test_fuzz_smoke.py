"""A short run of every fuzz target (tests/fuzz/run.py, atheris): each for
FUZZ_SMOKE_SECONDS (default 10), all at once. A finding (an exception other than the
decoder's own error type, or a wrong answer) fails the test with its traceback; the
crashing input is kept in build/fuzz/crashes/. `make fuzz` runs them for longer."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from targets import TARGETS  # noqa: E402

SECONDS = int(os.environ.get("FUZZ_SMOKE_SECONDS", "10"))

pytestmark = pytest.mark.slow


def test_every_target_is_seeded():
    import seeds
    for name in TARGETS:
        assert seeds.seeds(name), name


def test_each_decoder_survives_a_fuzz_smoke():
    pytest.importorskip("atheris", reason="atheris not installed (requirements.txt pins it)")
    procs = {name: subprocess.Popen([sys.executable, str(HERE / "run.py"), name, str(SECONDS)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in TARGETS}
    results, errors = {}, {}
    for name, p in procs.items():
        try:
            out, err = p.communicate(timeout=SECONDS + 300)
        except subprocess.TimeoutExpired:
            for q in procs.values():
                q.kill()
            raise
        lines = out.strip().splitlines()
        results[name] = json.loads(lines[-1]) if lines else {}
        if p.returncode != 0:
            errors[name] = err[-3000:]
    print("fuzz smoke:", {n: (r.get("execs"), r.get("execs_per_s")) for n, r in results.items()})
    assert not errors, "\n\n".join("%s: %s" % kv for kv in errors.items())
    for name, r in results.items():
        assert r.get("execs", 0) > 0, (name, r)
