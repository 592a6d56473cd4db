"""README.md's "Flashing a node" section as a new technician uses it: the "Try it without
a board first" commands, the decode example and the monitor command, run as written
(paths moved to a temp dir)."""
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "README.md").read_text()
BIN = ROOT / ".venv" / "bin"


def sh_block_after(heading):
    start = DOC.index(heading)
    m = re.search(r"```sh\n(.*?)```", DOC[start:], re.S)
    return [ln.split("#")[0].strip() for ln in m.group(1).splitlines() if ln.split("#")[0].strip()]


def env():
    return dict(os.environ, PATH="%s:%s" % (BIN, os.environ["PATH"]))


def test_try_without_a_board(tmp_path):
    lines = sh_block_after("### Try it without a board first")
    board = None
    results = []
    try:
        for line in lines:
            line = line.replace("/tmp/", "%s/" % tmp_path)
            if line.endswith("&"):
                board = subprocess.Popen(shlex.split(line[:-1]), cwd=tmp_path, env=env(),
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                assert "standin: board on" in board.stdout.readline()
            elif line == "kill %1":
                board.terminate()
                board.wait(10)
            else:
                r = subprocess.run(shlex.split(line), cwd=tmp_path, env=env(), capture_output=True,
                                   text=True, timeout=120)
                results.append((line, r))
    finally:
        if board is not None and board.poll() is None:
            board.kill()
            board.wait(5)
    by_cmd = {line.split()[1]: r for line, r in results}
    assert set(by_cmd) == {"keygen", "flash", "provision", "selftest"}
    for cmd in ("keygen", "flash", "provision"):
        assert by_cmd[cmd].returncode == 0, by_cmd[cmd].stdout + by_cmd[cmd].stderr
    assert "node 17 is up: node 17 boot" in by_cmd["provision"].stdout
    st = by_cmd["selftest"]
    assert st.returncode == 18      # the stand-in has no radio module: the doc says so
    assert re.search(r"config\s+OK\s+1\s+node 17", st.stdout), st.stdout
    assert (tmp_path / "keys.toml").stat().st_mode & 0o077 == 0


def test_decode_example():
    line = sh_block_after("### 6. Decode what is on the wire")[0]
    r = subprocess.run(shlex.split(line), env=env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "READINGS node 101 seq 1" in r.stdout and "water_level.0" in r.stdout


@pytest.mark.broker
def test_monitor_command(broker):
    line = sh_block_after("### 7. Watch the site live")[0].replace(":1883", ":%d" % broker.port)
    r = subprocess.run(shlex.split(line) + ["--duration", "1"], env=env(), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "monitoring stations/lushi/+/data" in r.stderr
