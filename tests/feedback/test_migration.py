"""Migration 0008 (feedback) runs down and up again on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect

from patron.core import migrate
from patron.core.db import make_engine
from tests.support.pgdb import throwaway_database

FEEDBACK_TABLES = {"callback_tasks", "callback_calls", "complaints", "complaint_events",
                   "complaint_compensations", "survey_invitations", "survey_responses"}


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/feedback-migration.db"
        return
    server = os.environ.get("PATRON_TEST_DATABASE_URL")
    if not server:
        pytest.skip("PostgreSQL runs when PATRON_TEST_DATABASE_URL is set")
    with throwaway_database(server, "patron_mig") as url:
        yield url


def test_feedback_migration_downgrades_and_upgrades_again(blank_url: str) -> None:
    engine = make_engine(blank_url)
    try:
        migrate.upgrade(engine, "0008")
        assert set(inspect(engine).get_table_names()) >= FEEDBACK_TABLES
        cfg = migrate.alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0007")
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
