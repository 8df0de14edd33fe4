"""The daily jobs: tier review at the end of the holding period, and the CLI that runs them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from patron.auth import service as auth
from patron.auth.enums import Role
from patron.cli import app
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.loyalty import service as loyalty
from patron.loyalty.models import PointsAccount, PointsLot
from patron.sales import service as sales
from patron.sales.schemas import RefundCreate
from tests.factories import World, make_member, make_product, make_store, make_user
from tests.sales.test_checkout import TILL, _pos, _sale

TZ = "Asia/Shanghai"


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


def test_the_daily_expiry_writes_from_the_locked_balance_not_one_read_earlier(
        db: Database, clock: FixedClock) -> None:
    """Found by the conservation run (tests/trust): the daily job reads accounts before it
    locks them (the expiring-soon notices load them unlocked), and a lock taken on an
    account already in the session's identity map did not refresh it. A redemption
    committed in between was then overwritten by the expiry's balance computed from the
    old one: the account showed 11 points its ledger did not have. PostgreSQL only: on
    SQLite every write transaction holds the database lock, so nothing commits between."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("needs two writers at once: set PATRON_TEST_DATABASE_URL")
    with db.write() as s:
        store = make_store(s, clock)
        owner = auth.principal_for_user(make_user(s, clock, Role.OWNER))
        loyalty.update_program(s, clock=clock, actor=owner, changes={"pending_days": 0})
        member_id = make_member(s, clock, store).id
        loyalty.earn(s, clock=clock, actor=None, member_id=member_id, points=100, tz=TZ)
        clock.advance(timedelta(seconds=1))
        loyalty.earn(s, clock=clock, actor=None, member_id=member_id, points=50, tz=TZ)
        newest = s.scalars(select(PointsLot).order_by(PointsLot.earned_at.desc())).first()
        assert newest is not None and newest.points == 50
        newest.expires_at = clock.now()  # due tonight
    with db.write() as daily:
        # the job's transaction holds the account it read before taking the lock (as the
        # notice loop's variable does) ...
        seen = daily.scalar(select(PointsAccount).where(PointsAccount.member_id == member_id))
        assert seen is not None and seen.available == 150
        with db.write() as till:  # ... and a till redeems in between, and commits
            loyalty.redeem(till, clock=clock, actor=None, member_id=member_id, points=11)
        assert loyalty.run_daily(daily, clock=clock)["expired_points"] == 50
    with db.read() as s:
        assert loyalty.verify(s) == []
        assert loyalty.balance(s, clock=clock, member_id=member_id).available == 150 - 11 - 50
