"""Fixtures for the technicians' tool: the stand-in board (tools/standin.py) as a real
process on a real pty, optionally with the node application flashed onto it."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


class Board:
    def __init__(self, fs, proc, port):
        self.fs = fs
        self.proc = proc
        self.port = port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_standin(fs):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "tools.standin", "--fs", str(fs)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT, env=env)
    line = proc.stdout.readline()
    assert line.startswith("standin: board on "), line
    return Board(fs, proc, line.split()[3])


@pytest.fixture
def standin(tmp_path):
    b = start_standin(tmp_path / "board")
    yield b
    b.stop()


@pytest.fixture
def flashed(standin):
    """A stand-in with the node application on it, as `stationctl flash --app-only` puts it."""
    from tools import cli
    assert cli.main(["flash", "--port", standin.port, "--board", "unix", "--app-only"]) == 0
    return standin


@pytest.fixture
def registry(tmp_path):
    from tools import keygen
    reg = str(tmp_path / "keys.toml")
    keygen.keygen(17, reg)
    return reg
