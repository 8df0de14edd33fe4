"""Paid membership: sold at the till, renewed, expiring, granting a tier; fees reportable."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.core.clock import FixedClock
from patron.core.errors import ValidationFailed
from patron.core.events import OutboxEvent
from patron.loyalty import membership
from patron.loyalty import service as loyalty
from patron.sales import service as sales
from patron.sales.schemas import LineIn, PaymentsIn, RefundCreate, SaleCreate
from tests.factories import World, make_member, make_product
from tests.sales.test_checkout import TILL, _pos


def _plan(session: Session, clock: FixedClock, world: World) -> membership.MembershipPlan:
    owner = auth.principal_for_user(world.owner)
    plus = loyalty.create_tier(session, clock=clock, actor=owner, code="plus", name="Plus",
                               rank=1, threshold=10**9, discount_pct=5)
    loyalty.create_tier(session, clock=clock, actor=owner, code="member", name="Member",
                        rank=0, threshold=0)
    fee = make_product(session, sku="PLUS-YEAR", price_minor=26_000, category_code="FEES")
    return membership.create_plan(session, clock=clock, actor=owner, code="plus",
                                  name="Plus (1 year)", product_id=fee.id, duration_days=365,
                                  tier_id=plus.id)


def _buy(session: Session, clock: FixedClock, world: World, member_id: object,
         qty: int = 1, pay: int | None = None) -> sales.Sale:
    return sales.checkout(session, clock=clock, actor=_pos(world), till=TILL, data=SaleCreate(
        member_id=member_id, lines=[LineIn(sku="PLUS-YEAR", quantity=qty)],
        payments=PaymentsIn(card_minor=pay or 26_000 * qty)))


def test_buying_the_plan_starts_a_period_and_grants_its_tier(
    session: Session, clock: FixedClock, world: World
) -> None:
    _plan(session, clock, world)
    m = make_member(session, clock, world.store_a)
    _buy(session, clock, world, m.id)
    period = membership.current(session, member_id=m.id, now=clock.now())
    assert period is not None
    assert period.ends_at - period.starts_at == timedelta(days=365)
    assert loyalty.member_tier(session, member_id=m.id).code == "plus"  # type: ignore[union-attr]
    # the paid tier is not lost to qualification while the membership runs
    clock.advance(timedelta(days=200))
    assert loyalty.evaluate_tier(session, clock=clock, member_id=m.id,
                                 allow_downgrade=True).code == "plus"  # type: ignore[union-attr]


def test_renewal_starts_where_the_current_period_ends(
    session: Session, clock: FixedClock, world: World
) -> None:
    _plan(session, clock, world)
    m = make_member(session, clock, world.store_a)
    first = _buy(session, clock, world, m.id)
    clock.advance(timedelta(days=300))
    _buy(session, clock, world, m.id, pay=24_700)  # a Plus member renews with the 5 % off
    plan = membership.list_plans(session)[0]
    until = membership.paid_until(session, member_id=m.id, plan_id=plan.id)
    assert until == first.occurred_at + timedelta(days=730)


def test_expiry_warns_once_then_ends_the_paid_tier(
    session: Session, clock: FixedClock, world: World
) -> None:
    _plan(session, clock, world)
    m = make_member(session, clock, world.store_a)
    _buy(session, clock, world, m.id)
    clock.advance(timedelta(days=360))
    assert membership.run_daily(session, clock=clock)["expiring_notices"] == 1
    assert membership.run_daily(session, clock=clock)["expiring_notices"] == 0
    clock.advance(timedelta(days=6))
    assert membership.run_daily(session, clock=clock)["expired"] == 1
    types = session.scalars(select(OutboxEvent.type)).all()
    assert "membership.expiring" in types and "membership.expired" in types
    tier = loyalty.evaluate_tier(session, clock=clock, member_id=m.id, allow_downgrade=True)
    assert tier is not None and tier.code == "member"


def test_refund_cancels_the_period_and_fees_are_reported_net(
    session: Session, clock: FixedClock, world: World
) -> None:
    _plan(session, clock, world)
    a = make_member(session, clock, world.store_a)
    b = make_member(session, clock, world.store_a)
    _buy(session, clock, world, a.id)
    sale_b = _buy(session, clock, world, b.id, qty=2)
    sales.refund(session, clock=clock, actor=_pos(world), till=TILL, sale_id=sale_b.id,
                 data=RefundCreate())
    assert membership.current(session, member_id=b.id, now=clock.now()) is None
    fees = membership.fee_revenue(session, since=clock.now() - timedelta(days=1),
                                  until=clock.now() + timedelta(days=1))
    assert fees == {"plus": 26_000}


def test_a_membership_needs_a_member(session: Session, clock: FixedClock, world: World) -> None:
    _plan(session, clock, world)
    with pytest.raises(ValidationFailed) as err:
        _buy(session, clock, world, None)
    assert err.value.field == "lines.0"
