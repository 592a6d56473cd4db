"""Fixtures over tests/harness.py (import helpers from `harness`, not from here: there
is more than one conftest.py in tests/)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (  # noqa: E402,F401  (re-exported for older imports)
    MICROPYTHON,
    MPY_CROSS,
    ROOT,
    Broker,
    free_port,
    mpy_build,
    run_micropython,
    run_micropython_module,
)


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "mq").start()
    yield b
    b.stop()


@pytest.fixture
def micropython():
    return run_micropython


@pytest.fixture
def micropython_module():
    return run_micropython_module
