"""Migration 0004 (offers) runs down and up again on SQLite and on PostgreSQL."""

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

OFFERS_TABLES = {"coupon_templates", "coupon_template_targets", "coupons",
                 "coupon_redemptions", "coupon_restorations", "referral_codes",
                 "referral_attributions", "referral_rule", "referral_rewards"}


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/offers-migration.db"
        return
    server = os.environ.get("PATRON_TEST_DATABASE_URL")
    if not server:
        pytest.skip("PostgreSQL runs when PATRON_TEST_DATABASE_URL is set")
    with throwaway_database(server, "patron_mig") as url:
        yield url


def test_offers_migration_downgrades_and_upgrades_again(blank_url: str) -> None:
    engine = make_engine(blank_url)
    try:
        migrate.upgrade(engine, "0004")
        assert set(inspect(engine).get_table_names()) >= OFFERS_TABLES
        cfg = migrate.alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0003")
        assert migrate.current(engine) == "0003"
        assert not OFFERS_TABLES & set(inspect(engine).get_table_names())
        migrate.upgrade(engine, "0004")
        assert set(inspect(engine).get_table_names()) >= OFFERS_TABLES
        unique = {tuple(u["column_names"])
                  for u in inspect(engine).get_unique_constraints("coupon_redemptions")}
        assert ("coupon_id",) in unique
    finally:
        engine.dispose()
