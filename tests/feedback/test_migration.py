"""Migration 0008 (feedback) runs down and up again on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect

from patron.core import migrate
from patron.core.db import make_engine
from tests.support.pgdb import blank_database, downgrade

FEEDBACK_TABLES = {"callback_tasks", "callback_calls", "complaints", "complaint_events",
                   "complaint_compensations", "survey_invitations", "survey_responses"}


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with blank_database(request.param, tmp_path) as url:
        yield url


def test_feedback_migration_downgrades_and_upgrades_again(blank_url: str) -> None:
    engine = make_engine(blank_url)
    try:
        migrate.upgrade(engine, "0008")
        assert set(inspect(engine).get_table_names()) >= FEEDBACK_TABLES
        downgrade(engine, "0007")
        assert migrate.current(engine) == "0007"
        assert not FEEDBACK_TABLES & set(inspect(engine).get_table_names())
        migrate.upgrade(engine, "0008")
        assert set(inspect(engine).get_table_names()) >= FEEDBACK_TABLES
        indexes = {i["name"]: i for i in inspect(engine).get_indexes("callback_tasks")}
        assert indexes["uq_callback_tasks_open_win_back"]["unique"]
        unique = {tuple(u["column_names"])
                  for u in inspect(engine).get_unique_constraints("survey_responses")}
        assert ("invitation_id",) in unique
    finally:
        engine.dispose()
