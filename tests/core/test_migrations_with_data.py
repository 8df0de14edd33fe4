"""Every migration runs down and up again with data in the tables: a demo chain (members,
sales, points, stored value, coupons, memberships) is built at the head, then each revision
is downgraded, upgraded and downgraded again, and no table that exists on both sides of a
step loses or gains a row. Then the empty schema goes back up to the head.

On SQLite a downgrade that drops a column rebuilds the table (batch mode), so this is also
the test that those copies keep every row."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, inspect, select, table

from patron.core import migrate
from patron.core.db import Database
from patron.demo import DemoConfig, build_demo
from tests.support.pgdb import blank_database, downgrade

DEMO = DemoConfig(end_on=date(2026, 11, 1), seed=11, members=150, years=0.5)


def _counts(engine: Engine) -> dict[str, int]:
    names = [n for n in inspect(engine).get_table_names() if n != "alembic_version"]
    with engine.connect() as conn:
        return {n: int(conn.scalar(select(func.count()).select_from(table(n))) or 0)
                for n in names}


def _steps() -> list[tuple[str, str]]:
    """(revision, the one below it), from the head down to the first."""
    script = ScriptDirectory.from_config(migrate.alembic_config())
    return [(r.revision, str(r.down_revision) if r.down_revision else "base")
            for r in script.walk_revisions()]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_each_migration_goes_down_and_up_with_rows_kept(kind: str, tmp_path: Path) -> None:
    with blank_database(kind, tmp_path) as url:
        database = Database.from_url(url)
        engine = database.engine
        try:
            migrate.upgrade(engine)
            with database.write() as session:
                build_demo(session, config=DEMO)
            start = _counts(engine)
            for name in ("members", "sales", "sale_lines", "points_entries", "points_lots",
                         "wallet_entries", "coupons", "consent_events", "outbox_events"):
                assert start[name] > 0, name

            for revision, below in _steps():
                before = _counts(engine)
                downgrade(engine, below)
                down = _counts(engine)
                assert {t: before[t] for t in down} == down, f"down from {revision}"
                migrate.upgrade(engine, revision)
                up = _counts(engine)
                assert {t: up[t] for t in down} == down, f"up to {revision}"
                downgrade(engine, below)
            assert migrate.current(engine) is None and _counts(engine) == {}

            migrate.upgrade(engine)
            assert set(_counts(engine)) == set(start)
        finally:
            database.dispose()
