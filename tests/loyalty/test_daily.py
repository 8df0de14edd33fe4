"""The daily jobs: tier review at the end of the holding period, and the CLI that runs them."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session
from typer.testing import CliRunner

from patron.auth import service as auth
from patron.cli import app
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.loyalty import service as loyalty
from patron.sales import service as sales
from patron.sales.schemas import RefundCreate
from tests.factories import World, make_member, make_product
from tests.sales.test_checkout import TILL, _pos, _sale


def test_review_downgrades_only_after_the_holding_period(
    session: Session, clock: FixedClock, world: World
) -> None:
    owner = auth.principal_for_user(world.owner)
    loyalty.create_tier(session, clock=clock, actor=owner, code="member", name="Member",
                        rank=0, threshold=0)
    loyalty.create_tier(session, clock=clock, actor=owner, code="gold", name="Gold", rank=1,
                        threshold=50_000)
    make_product(session, sku="RING", price_minor=80_000)
    m = make_member(session, clock, world.store_a)
    sale = _sale(session, clock, world, m, [("RING", 1)])
    sales.refund(session, clock=clock, actor=_pos(world), till=TILL, sale_id=sale.id,
                 data=RefundCreate())
    assert loyalty.review_tiers(session, clock=clock) == 0  # held for a year and a grace
    assert loyalty.member_tier(session, member_id=m.id).code == "gold"  # type: ignore[union-attr]
    clock.advance(timedelta(days=400))
    assert loyalty.review_tiers(session, clock=clock) == 1
    assert loyalty.member_tier(session, member_id=m.id).code == "member"  # type: ignore[union-attr]


def test_daily_command_runs_every_job(db: Database, database_url: str) -> None:
    result = CliRunner().invoke(app, ["daily", "--database-url", database_url])
    assert result.exit_code == 0, result.output
    assert "points" in result.output
    assert "tiers" in result.output
