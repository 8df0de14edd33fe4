"""Shared fixtures: a migrated database (SQLite file, or PostgreSQL when
PATRON_TEST_DATABASE_URL is set), a fixed clock, the app, and small factories.

On PostgreSQL each test run creates a throwaway database and drops it at the end; every
test starts from empty tables.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import hypothesis
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from patron.api.app import create_app
from patron.auth import service as auth_service
from patron.core import migrate
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.registry import Base
from patron.core.settings import Settings
from tests import factories
from tests.support.pgdb import throwaway_database

TEST_NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

# The browser fixtures (uvicorn in a thread, Debian's Chromium) for every web test module.
pytest_plugins = ["tests.web.pages_support"]

# Property tests judge correctness, never speed (DESIGN: no timing assertions): on a busy
# 2-core CI machine hypothesis's deadline and too-slow health check would fail them at
# random.
hypothesis.settings.register_profile(
    "patron", deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow,
                                                    hypothesis.HealthCheck.data_too_large])
hypothesis.settings.load_profile("patron")

# Real argon2id, with cheap parameters: the suite hashes hundreds of passwords.
auth_service.use_password_hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


#: The longest files, started first: ``-n 2 --dist loadfile`` hands out files in collection
#: order (with xdist's reordering turned off, see ``pytest_configure``), so a long file
#: collected last runs alone at the end while the other worker idles (measured: minutes of
#: a one-worker tail on PostgreSQL). Longest first, by the summed ``--durations`` of both
#: halves (2026-11-24); the rest are short enough to fill in behind them.
LONG_FIRST = (
    "tests/api/test_fuzz_openapi.py",
    "tests/trust/test_crash_safety.py",
    "tests/wallet/test_concurrency.py",
    "tests/api/test_authorisation_matrix.py",
    "tests/offers/test_concurrency.py",
    "tests/trust/test_conservation.py",
    "tests/jobs/test_crash.py",
    "tests/analytics/test_views.py",
    "tests/analytics/test_spark.py",
    "tests/web/test_member360.py",
    "tests/analytics/test_aggregates.py",
    "tests/campaigns/test_segments.py",
    "tests/trust/test_lost_responses.py",
    "tests/api/test_access.py",
    "tests/catalog/test_api.py",
    "tests/offers/test_coupon_state_machine.py",
)


def pytest_configure(config: pytest.Config) -> None:
    """Keep ``LONG_FIRST``'s order under ``--dist loadfile``: pytest-xdist (3.x) otherwise
    reorders the files by their number of tests, most first, which sends the long
    one-test files (the crash and concurrency runs) to the very end (measured on
    PostgreSQL: the crash-safety and worker-crash runs started 27 and 29 minutes into a
    32-minute run, one worker idling at the end). Same as passing
    ``--no-loadscope-reorder``; harmless without xdist."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the ``LONG_FIRST`` files at the front, keeping every other test's order."""
    rank = {path: i for i, path in enumerate(LONG_FIRST)}

    def key(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return rank.get(path, len(LONG_FIRST))

    items.sort(key=key)  # stable: the rest keep their collection order


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = os.environ.get("PATRON_TEST_DATABASE_URL")
    if not server:
        path: Path = tmp_path_factory.mktemp("db") / "patron-test.db"
        yield f"sqlite:///{path}"
        return
    with throwaway_database(server) as url:
        yield url


@pytest.fixture(scope="session")
def db(database_url: str) -> Iterator[Database]:
    database = Database.from_url(database_url)
    migrate.upgrade(database.engine)
    yield database
    database.dispose()


@pytest.fixture(autouse=True)
def _empty_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test that touches the database starts from empty tables."""
    yield
    if "db" not in request.fixturenames:
        return
    database: Database = request.getfixturevalue("db")
    # DELETE, children first, on both databases: on PostgreSQL a TRUNCATE of the ~90
    # tables costs a file operation per table (0.5-2.5 s here, measured), a DELETE of
    # the few rows a test wrote costs about 0.1 s; over ~1,800 tests that is minutes.
    # On PostgreSQL the ~90 statements go in one round trip (measured on empty tables: 1.8
    # ms a test instead of 15 ms, over ~1,800 tests); SQLite's driver runs one statement
    # per call, and a call costs it no round trip.
    deletes = [f'DELETE FROM "{t.name}"' for t in reversed(Base.metadata.sorted_tables)]
    with database.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(";".join(deletes))
        else:
            for statement in deletes:
                conn.execute(text(statement))


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(TEST_NOW)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(environment="test", database_url=database_url, default_region="CN",
                    default_language="en")


@pytest.fixture
def session(db: Database) -> Iterator[Session]:
    """A session for service-level tests; the test commits if it wants to."""
    with db.session(write=True) as s:
        yield s
        s.rollback()


@pytest.fixture
def app(settings: Settings, db: Database, clock: FixedClock) -> FastAPI:
    return create_app(settings, db=db, clock=clock)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def world(db: Database, clock: FixedClock) -> factories.World:
    """Two stores (A, B), an owner, a manager and a cashier of A, a manager of B, POS keys."""
    return factories.make_world(db, clock)
