"""Fixtures over tests/harness.py (import helpers from `harness`, not from here: there
is more than one conftest.py in tests/)."""
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

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

# CI runs the same examples every time (a red CI must be reproducible, and a landing
# must not hang on a lucky draw); developers' runs keep exploring new examples.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


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
