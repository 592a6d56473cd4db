"""The node's frame log against a power cut at every flash write and erase of a
representative sequence (appends, seqs for frames never logged, acks that delete
segments, thinning when full, meta.json rewrites, a reboot), on real littlefs: the
MicroPython unix port's VfsLfs2 over a RAM NOR-flash block device whose cut operation
is torn (tests/mpy/lfs_sweep.py). After each cut the log must open with every
unacked record (or a counted drop), rain intact, and no seq handed out twice.

The sabotage twin replaces files by remove-then-rename instead of an atomic rename:
the sweep must find the points where that loses data or reuses a seq."""
import json
import os
import subprocess

import harness
import pytest

pytestmark = [pytest.mark.mpy, pytest.mark.slow]

STEPS = int(os.environ.get("LFS_SWEEP_STEPS", "32"))     # make soak: more
HEAP = "4M"      # the sweep's bookkeeping and 96 KB flash images; the log itself is device code


def sweep_procs(*arg_sets):
    """Run tests/mpy/lfs_sweep.py (compiled once, as run_micropython_module does) with
    each argument set, all at once; returns [(figures, FAIL lines)]."""
    harness.run_micropython_module("lfs_sweep", heap=HEAP, args=("compile-only",), timeout=300)
    env = dict(os.environ, MICROPYPATH=".frozen:%s" % harness.mpy_build())
    procs = [subprocess.Popen([str(harness.MICROPYTHON), "-X", "heapsize=" + HEAP, "-m",
                               "lfs_sweep", *args], cwd=harness.mpy_build(), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for args in arg_sets]
    out = []
    for p in procs:
        try:
            so, se = p.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        lines = so.strip().splitlines()
        assert p.returncode == 0 and lines and lines[-1].startswith("{"), so[-2000:] + se[-2000:]
        out.append((json.loads(lines[-1]), [ln for ln in lines if ln.startswith("FAIL")]))
    return out


def test_a_cut_at_every_flash_operation_loses_nothing_and_reuses_no_seq():
    steps = "steps=%d" % STEPS
    parts = sweep_procs(("part=0/2", steps), ("part=1/2", steps))   # two processes share it
    points = sum(p[0]["points"] for p in parts)
    fails = [f for p in parts for f in p[1]]
    ops = parts[0][0]["ops"]
    print("littlefs sweep: %d flash operations, %d cut points, %d failed" % (ops, points, len(fails)))
    assert not fails, "\n".join(fails[:10])
    assert points == ops > 150      # 188 flash operations at 32 steps
    assert parts[0][0]["thinned_in_full_run"] > 0      # the bound's rewrite was swept too
    assert parts[0][0]["acked_in_full_run"] > 0


def test_the_sweep_notices_a_replace_that_is_not_atomic():
    [(fig, fails)] = sweep_procs(("rename", "first"))
    assert fig["failed_points"] > 0 and fails, fig
