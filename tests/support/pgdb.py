"""Throwaway PostgreSQL databases for tests: created on the test server, always dropped."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

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
