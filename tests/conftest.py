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

# Every run, CI included, draws new examples, so the properties keep exploring across
# runs; a failure prints the falsifying example and a @reproduce_failure blob, and the
# seed of the run is printed in the pytest header (rerun with --hypothesis-seed=N).
# No example database in CI: a fresh clone has none, and a red run must not depend on one.
# too_slow is a wall-clock check (example generation time): a loaded machine trips it
# whether or not CI is set, so neither profile lets it fail a run.
settings.register_profile("ci", deadline=None, print_blob=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_report_header(config):
    seed = config.getoption("hypothesis_seed", None)
    return "hypothesis profile %s, seed %s (rerun a red run with --hypothesis-seed=N)" % (
        settings._current_profile, seed if seed is not None else "random per test "
        "(each failure prints its @reproduce_failure blob)")


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
