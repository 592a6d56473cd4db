"""Hub fixtures: `db_url` runs a test on SQLite and on a real PostgreSQL (one
throw-away cluster per test session, a fresh database per test)."""
import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

_n = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster():
    from hil.pgcluster import PgCluster
    c = PgCluster().start()
    yield c
    c.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return "sqlite:///%s" % (tmp_path / "hub.db")
    return request.getfixturevalue("pg_cluster").create_db("t%d" % next(_n))
