"""Database engine and sessions for SQLite (default, embedded) and PostgreSQL.

SQLite runs in WAL mode with ``synchronous=FULL`` and foreign keys on. pysqlite's own
transaction handling is switched off so that patron emits ``BEGIN`` itself: reads use a
deferred ``BEGIN``; writes use ``BEGIN IMMEDIATE`` so that two writers queue on the
database lock (``busy_timeout``) instead of failing half-way when a read transaction tries
to upgrade to a write. On PostgreSQL value-moving code takes row locks
(``SELECT ... FOR UPDATE``) instead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalise_url(url: str) -> str:
    """Use psycopg 3 for ``postgresql://`` URLs so users can paste a plain libpq URL."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> Engine:
    """Build an engine with the pragmas and transaction behaviour patron relies on."""
    url = normalise_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        # hide_parameters: statement logs and error texts never quote members' data
        engine = create_engine(url, echo=echo, hide_parameters=True,
                               connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        _configure_sqlite(engine)
        return engine
    return create_engine(url, echo=echo, pool_size=pool_size, max_overflow=20, pool_pre_ping=True,
                         hide_parameters=True)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # patron emits BEGIN itself, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    # Writers of this process queue on a Python lock before they ask SQLite for its write
    # lock: a waiting thread sleeps until it is its turn instead of polling through the
    # busy handler, which under load starves some writers for seconds. Other processes
    # still meet at SQLite's own lock (busy_timeout).
    writers = threading.Lock()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        if mode == "IMMEDIATE":
            if not writers.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
                raise TimeoutError("timed out waiting for the database write lock")
            connection.info["holds_writer_lock"] = True
        try:
            connection.exec_driver_sql(f"BEGIN {mode}")
        except BaseException:
            _release(connection)
            raise

    def _release(connection: Any) -> None:
        if connection.info.pop("holds_writer_lock", False):
            writers.release()

    event.listen(engine, "commit", _release)
    event.listen(engine, "rollback", _release)

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        if record.info.pop("holds_writer_lock", False):  # returned without commit/rollback
            writers.release()


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


class Database:
    """The engine plus two session factories: one for reads, one for writes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        writer = engine.execution_options(sqlite_begin="IMMEDIATE") if is_sqlite(engine) else engine
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(writer, expire_on_commit=False)
        # True while writes take the lock at BEGIN; a test may take the lock away
        self.serialised_writes = is_sqlite(engine)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Database:
        return cls(make_engine(url, **kwargs))

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads; rolled back at the end."""
        with self._read() as session:
            try:
                yield session
            finally:
                session.rollback()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A unit of work: commits if the block finishes, rolls back if it raises."""
        with self._write() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def session(self, *, write: bool) -> Session:
        """A bare session for a boundary (a request) that decides itself when to commit."""
        return self._write() if write else self._read()

    def dispose(self) -> None:
        self.engine.dispose()
