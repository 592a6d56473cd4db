"""Fixtures for firmware tests on CPython: a fresh fake `machine` module per test,
a fake clock, and a Hal built on both. Nothing global is patched: the fake is loaded
under its own name and handed to the Hal."""
import os
import sys
import tty
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_hw import load_fake_machine  # noqa: E402


@pytest.fixture
def fake_machine():
    return load_fake_machine()


@pytest.fixture
def clock(fake_machine):
    c = fake_machine.FakeClock(start_ms=1000)
    fake_machine.use_clock(c)
    return c


@pytest.fixture
def hal(fake_machine, clock, tmp_path):
    from firmware.hal import Hal
    return Hal(machine=fake_machine, clock=clock, root=str(tmp_path))


@pytest.fixture
def pty_pair():
    """(master_fd, slave_path) of a raw pty; both ends closed afterwards."""
    m, s = os.openpty()
    tty.setraw(m)
    tty.setraw(s)
    yield m, os.ttyname(s)
    for fd in (m, s):
        try:
            os.close(fd)
        except OSError:
            pass
