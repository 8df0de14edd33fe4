"""Run Alembic migrations from code (``patron db upgrade``, ``make demo``, the tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

import patron


def migrations_dir() -> Path:
    """The repository's ``migrations/`` in a checkout, or the copy packaged in the wheel."""
    here = Path(patron.__file__).resolve().parent
    for candidate in (here.parents[1] / "migrations", here / "_migrations"):
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("patron's migrations directory is missing")


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database behind ``engine`` up to ``revision``."""
    _run(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the database behind ``engine`` down to ``revision`` (``"base"``: empty)."""
    _run(engine, command.downgrade, revision)


def _run(engine: Engine, step: Callable[[Config, str], None], revision: str) -> None:
    """One migration run in one transaction.

    On SQLite, altering a table means rebuilding it (Alembic's batch mode: copy, drop,
    rename), and dropping a table that other rows refer to fails while foreign keys are
    enforced. So they are switched off for the run, as the SQLite and Alembic manuals
    advise (outside the transaction: SQLite ignores the pragma inside one), and the whole
    database is checked with ``PRAGMA foreign_key_check`` before the run commits.
    """
    cfg = alembic_config()
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        assert raw is not None
        if sqlite:
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                cfg.attributes["connection"] = connection
                step(cfg, revision)
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"the migration left rows pointing nowhere: "
                                           f"{broken[:5]}")
        finally:
            if sqlite:
                raw.execute("PRAGMA foreign_keys=ON")


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
