"""Migrations build exactly the schema the models describe, and run down and up again."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from patron.core import migrate
from patron.core.db import Database, make_engine
from patron.core.registry import Base


def test_models_and_migrations_agree(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_downgrade_to_base_and_upgrade_again(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/roundtrip.db")
    migrate.upgrade(engine)
    cfg = migrate.alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert migrate.current(engine) is None
    migrate.upgrade(engine)
    assert migrate.current(engine) == ScriptDirectory.from_config(cfg).get_current_head()
    engine.dispose()
