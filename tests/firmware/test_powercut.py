"""Power cuts while logging: the node's frame log on the MicroPython unix port is killed
with SIGKILL at random points, 120 times, on the same flash directory. After every
cut the log must open; every record the node had logged is still there or was acked
by the (simulated) gateway (or counted as dropped by the bound); thinning never loses
rain; and no sequence number is ever handed out twice, across all the reboots.

The child logs as the node does (take_seq, append, then acks from a gateway that
commits before acking), with a small capacity and small segments so that segment
roll-over, reclaiming, thinning rewrites and meta renames are all cut mid-way too.
Its flash writes go out in 8-byte pieces with a pause, like a flash program, so
cuts land inside records (torn records) and not only between them."""
import os
import random
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from firmware.framelog import FrameLog
from firmware.logscan import open_log
from protocol import readings

pytestmark = [pytest.mark.mpy, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CUTS = 120
MAX_CUTS = 4 * CUTS     # a machine too loaded to exercise the log in these fails
RAIN, DISP = 0x08, 0x10

CHILD = r'''
import sys
from time import sleep_us
from firmware.framelog import FrameLog
from firmware.hal import Hal
from firmware.logscan import open_log
from protocol import readings
from protocol.frame import READINGS


class ChunkedFile:
    """Writes in 8-byte pieces, each its own write(): a cut can land inside a record,
    as a power cut can inside a flash program on a filesystem without littlefs's
    commit-on-close (so torn records really happen here, and must be survived)."""
    def __init__(self, f):
        self.f = f

    def write(self, b):
        for i in range(0, len(b), 8):
            if i:
                sleep_us(100)           # programming flash takes time: cuts land mid-record
            self.f.write(b[i:i + 8])
        return len(b)

    def readinto(self, buf):
        return self.f.readinto(buf)

    def seek(self, pos):
        return self.f.seek(pos)

    def read(self, *a):
        return self.f.read(*a)

    def close(self):
        self.f.close()


class NoMachine:
    pass


class Fs(Hal):
    """The node's hal (files only: no machine needed), writing in small chunks."""
    def open(self, p, mode="rb"):
        return ChunkedFile(Hal.open(self, p, mode))


root, seed = sys.argv[1], int(sys.argv[2])
log = FrameLog(Fs(machine=NoMachine(), root=root), "log", capacity=4096, segment_bytes=512, seq_block=8)
open_log(log)
print("O", log.boot)
x = seed or 1
i = 0
while True:
    x = (1103515245 * x + 12345) & 0x7FFFFFFF
    seq = log.take_seq()
    payload = readings.encode([readings.Block(0x08, 300, 60, [1, 2, 3, 1, 2, 3]),
                               readings.Block(0x10, 300, 60, [seq * 10 + k for k in range(6)])])
    log.append(seq, READINGS, payload, True, log.boot, 1000 + i, False)
    print("L", seq)
    i += 1
    if (x >> 8) % 3 == 0:
        r = log.next_record()
        if r is not None:
            print("A", r.seq)          # the gateway committed it, then acked
            log.ack([(r.seq, r.seq)])
'''


def _root_conftest():
    import importlib.util
    spec = importlib.util.spec_from_file_location("_root_conftest", ROOT / "tests" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _records(flash):
    from fake_hw import fs_at
    log = FrameLog(fs_at(flash), "log",
                   capacity=4096, segment_bytes=512, seq_block=8)
    open_log(log)
    recs = []
    for g in log.segs:
        for r in log._read_seg(g.no)[0]:
            recs.append(r)
    return log, recs


def test_power_cuts_lose_nothing_and_never_reuse_a_seq(tmp_path):
    conf = _root_conftest()
    build = conf.mpy_build()
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    flash = tmp_path / "flash"
    flash.mkdir()
    exe = str(conf.MICROPYTHON)
    env = dict(os.environ, MICROPYPATH=".frozen:%s" % build)
    rng = random.Random(20240601)
    logged_all = []            # every seq the node reported as logged, in order, all runs
    acked = set()
    cut_mid_run = 0
    torn = 0
    t0 = time.monotonic()
    cut = 0
    log = None

    def exercised():
        return (cut_mid_run >= CUTS // 3 and len(logged_all) > 200 and torn > 0
                and log.thinned > 0)
    # At least CUTS cuts, and more (up to MAX_CUTS) until the cuts have exercised what
    # the checks below need: the kill points are random moments in wall time, so on a
    # loaded machine fewer records are logged per life; its speed changes how many
    # cuts it takes, never the verdict.
    while cut < CUTS or (cut < MAX_CUTS and not exercised()):
        cut += 1
        p = subprocess.Popen([exe, "-X", "heapsize=256K", str(child), str(flash), str(cut)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(ROOT))
        head = b""
        if cut % 4 != 1:
            # most cuts: a random moment after the log opened, whatever the machine's load
            ready, _, _ = select.select([p.stdout], [], [], 60)
            if ready:
                head = os.read(p.stdout.fileno(), 64)
            time.sleep(rng.uniform(0.0, 0.06))
        else:
            # the rest: a random moment from power-on, which may hit the open itself
            time.sleep(rng.uniform(0.0, 0.03))
        os.kill(p.pid, signal.SIGKILL)
        out, err = p.communicate(timeout=60)
        out = head + out
        assert p.returncode == -signal.SIGKILL, err.decode()[-500:]
        text = out.decode()
        lines = text.splitlines()
        if lines and not text.endswith("\n"):
            lines = lines[:-1]      # a line cut mid-print tells nothing
        run_logged = []
        for ln in lines:
            parts = ln.split()
            if len(parts) != 2 or not parts[1].isdigit():
                continue
            if parts[0] == "L":
                run_logged.append(int(parts[1]))
            elif parts[0] == "A":
                acked.add(int(parts[1]))
        if run_logged:
            cut_mid_run += 1
        # no seq handed out twice: strictly increasing across every reboot
        chain = logged_all[-1:] + run_logged
        assert all(chain[i + 1] > chain[i] for i in range(len(chain) - 1)), chain
        logged_all.extend(run_logged)

        log, recs = _records(flash)
        torn += log.torn
        seqs = [r.seq for r in recs]
        assert len(seqs) == len(set(seqs)), "a seq appears twice in the log"
        assert seqs == sorted(seqs)
        on_flash = set(seqs)
        missing = [s for s in logged_all if s not in on_flash and s not in acked]
        # a record only leaves the log by an ack or a counted drop; a record thinned to
        # the limit still holds 2 readings (one per block), so each drop counts >= 2
        assert len(missing) * 2 <= log.dropped, (cut, missing[:5], log.dropped)
        for r in recs:
            rain, disp = readings.decode(r.payload)
            assert sum(rain.values) == 12                 # thinning never loses rain
            assert disp.values[-1] == r.seq * 10 + 5      # the newest sample is kept
    elapsed = time.monotonic() - t0
    print("%d power cuts, %d mid-run, %d seqs logged, %d acked, thinned %d, dropped %d, torn %d, %.1f s"
          % (cut, cut_mid_run, len(logged_all), len(acked), log.thinned, log.dropped, torn, elapsed))
    assert cut_mid_run >= CUTS // 3          # many cuts really hit the logging loop
    assert len(logged_all) > 200
    assert torn > 0                           # cuts inside a record happened and were survived
    assert log.thinned > 0                    # the bound was exercised too
