"""Migration 0004 (offers) runs down and up again on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect

from patron.core import migrate
from patron.core.db import make_engine
from tests.support.pgdb import blank_database, downgrade

OFFERS_TABLES = {"coupon_templates", "coupon_template_targets", "coupons",
                 "coupon_redemptions", "coupon_restorations", "referral_codes",
                 "referral_attributions", "referral_rule", "referral_rewards"}


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with blank_database(request.param, tmp_path) as url:
        yield url


def test_offers_migration_downgrades_and_upgrades_again(blank_url: str) -> None:
    engine = make_engine(blank_url)
    try:
        migrate.upgrade(engine, "0004")
        assert set(inspect(engine).get_table_names()) >= OFFERS_TABLES
        downgrade(engine, "0003")
        assert migrate.current(engine) == "0003"
        assert not OFFERS_TABLES & set(inspect(engine).get_table_names())
        migrate.upgrade(engine, "0004")
        assert set(inspect(engine).get_table_names()) >= OFFERS_TABLES
        unique = {tuple(u["column_names"])
                  for u in inspect(engine).get_unique_constraints("coupon_redemptions")}
        assert ("coupon_id",) in unique
    finally:
        engine.dispose()
