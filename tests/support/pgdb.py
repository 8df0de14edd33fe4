"""Throwaway PostgreSQL databases for tests: created on the test server, always dropped."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from patron.core import migrate
from patron.core.db import normalise_url


@contextmanager
def throwaway_database(server: str, prefix: str = "patron_test") -> Iterator[str]:
    """A new, empty database on the server of ``server`` (a PostgreSQL URL); yields its
    URL and drops it afterwards, even if connections are still open (``WITH (FORCE)``)."""
    url = make_url(normalise_url(server))
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def blank_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """An empty database of ``kind`` ("sqlite" or "postgresql") for migration tests; the
    PostgreSQL one is skipped when the run has no PATRON_TEST_DATABASE_URL."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path}/blank.db"
        return
    server = os.environ.get("PATRON_TEST_DATABASE_URL")
    if not server:
        pytest.skip("PostgreSQL runs when PATRON_TEST_DATABASE_URL is set")
    with throwaway_database(server, "patron_mig") as url:
        yield url


def downgrade(engine: Engine, revision: str) -> None:
    """Run the migrations down to ``revision`` on ``engine``."""
    migrate.downgrade(engine, revision)
