"""Paid membership: plans sold at the till, periods, renewals, expiry and the fee revenue.

Buying the plan's product at checkout starts a period (or, for a member who already has
one, a renewal that starts where the current one ends), for ``duration_days`` per unit
bought. A plan may grant a tier: the member holds it (``source='paid'``, never downgraded)
until the paid period ends, then the usual qualification applies. Refunding the line
cancels the periods it bought.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.auth import audit
from patron.auth.enums import Role
from patron.auth.principal import Principal, require_role
from patron.catalog import queries as catalog
from patron.core.clock import Clock
from patron.core.errors import Conflict, ValidationFailed
from patron.core.events import emit
from patron.loyalty.models import Membership, MembershipPlan, MemberTier, Tier, TierChange
from patron.loyalty.service import lock_member

EXPIRING_NOTICE = timedelta(days=7)


def create_plan(session: Session, *, clock: Clock, actor: Principal, code: str, name: str,
                product_id: uuid.UUID, duration_days: int, tier_id: uuid.UUID | None = None,
                benefits: str = "") -> MembershipPlan:
    """An owner's plan, sold through an existing catalogue product (its price is the fee)."""
    require_role(actor, Role.OWNER, users_only=True)
    if not catalog.find_products(session, ids=[product_id]):
        raise ValidationFailed("Unknown product", "product_id", code="unknown_product")
    if session.scalar(select(MembershipPlan.id).where(
            MembershipPlan.product_id == product_id)) is not None:
        raise Conflict("Another plan is sold through this product", "product_id")
    if session.scalar(select(MembershipPlan.id).where(MembershipPlan.code == code)):
        raise Conflict(f"Plan code {code!r} exists", "code")
    if not 1 <= duration_days <= 3660:
        raise ValidationFailed("duration_days is between 1 and 3660", "duration_days")
    if tier_id is not None and session.get(Tier, tier_id) is None:
        raise ValidationFailed("Unknown tier", "tier_id")
    plan = MembershipPlan(code=code, name=name, product_id=product_id,
                          duration_days=duration_days, tier_id=tier_id, benefits=benefits)
    session.add(plan)
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="membership.plan_created",
                 entity_type="membership_plan", entity_id=plan.id,
                 details={"code": code, "duration_days": duration_days})
    return plan


def list_plans(session: Session) -> list[MembershipPlan]:
    return list(session.scalars(select(MembershipPlan).where(MembershipPlan.active.is_(True))
                                .order_by(MembershipPlan.code)))


def plans_by_product(session: Session, product_ids: Sequence[uuid.UUID]
                     ) -> dict[uuid.UUID, MembershipPlan]:
    if not product_ids:
        return {}
    return {p.product_id: p for p in session.scalars(select(MembershipPlan).where(
        MembershipPlan.product_id.in_(list(product_ids)), MembershipPlan.active.is_(True)))}


def current(session: Session, *, member_id: uuid.UUID, now: datetime) -> Membership | None:
    """The member's paid period running now, if any."""
    return session.scalar(select(Membership).where(
        Membership.member_id == member_id, Membership.status == "active",
        Membership.starts_at <= now, Membership.ends_at > now).order_by(Membership.ends_at))


def periods(session: Session, *, member_id: uuid.UUID) -> list[Membership]:
    """Every paid period of a member, newest first."""
    return list(session.scalars(select(Membership).where(Membership.member_id == member_id)
                                .order_by(Membership.ends_at.desc())))


def paid_until(session: Session, *, member_id: uuid.UUID, plan_id: uuid.UUID) -> datetime | None:
    return session.scalar(select(func.max(Membership.ends_at)).where(
        Membership.member_id == member_id, Membership.plan_id == plan_id,
        Membership.status == "active"))


@dataclass(frozen=True)
class Purchase:
    plan: MembershipPlan
    quantity: int


def start_from_sale(session: Session, *, clock: Clock, member_id: uuid.UUID,
                    sale_id: uuid.UUID, purchases: Sequence[Purchase]) -> list[Membership]:
    """Start or renew the member's periods for the plans bought in a sale."""
    now = clock.now()
    periods = []
    for purchase in purchases:
        plan = purchase.plan
        start = max(now, paid_until(session, member_id=member_id, plan_id=plan.id) or now)
        end = start + timedelta(days=plan.duration_days * purchase.quantity)
        period = Membership(member_id=member_id, plan_id=plan.id, sale_id=sale_id,
                            starts_at=start, ends_at=end, status="active")
        session.add(period)
        periods.append(period)
        if plan.tier_id is not None:
            _grant_tier(session, clock=clock, member_id=member_id, tier_id=plan.tier_id,
                        until=end)
        emit(session, clock=clock, type="membership.purchased", subject_id=member_id,
             payload={"member_id": str(member_id), "plan": plan.code,
                      "starts_at": start.isoformat(), "ends_at": end.isoformat(),
                      "renewal": start > now})
    session.flush()
    return periods


def _grant_tier(session: Session, *, clock: Clock, member_id: uuid.UUID, tier_id: uuid.UUID,
                until: datetime) -> None:
    lock_member(session, clock=clock, member_id=member_id)
    row = session.get(MemberTier, member_id)
    granted = session.get(Tier, tier_id)
    assert granted is not None
    current_tier = session.get(Tier, row.tier_id) if row else None
    if current_tier is not None and current_tier.rank > granted.rank:
        return  # already better by qualification
    if row is None:
        session.add(MemberTier(member_id=member_id, tier_id=tier_id, since=clock.now(),
                               held_until=until.date(), source="paid"))
    else:
        if row.tier_id != tier_id:
            row.since = clock.now()
        row.tier_id, row.held_until, row.source = tier_id, until.date(), "paid"
    if current_tier is None or current_tier.id != tier_id:
        session.add(TierChange(member_id=member_id,
                               from_tier_id=current_tier.id if current_tier else None,
                               to_tier_id=tier_id, reason="paid membership",
                               qualifying_value=0, at=clock.now()))
        emit(session, clock=clock, type="tier.changed", subject_id=member_id,
             payload={"member_id": str(member_id),
                      "from": current_tier.code if current_tier else None,
                      "to": granted.code, "reason": "paid membership"})


def cancel_for_refund(session: Session, *, clock: Clock, sale_id: uuid.UUID) -> int:
    """Cancel the periods a refunded sale bought (the paid tier then ends at once)."""
    count = 0
    for period in session.scalars(select(Membership).where(
            Membership.sale_id == sale_id, Membership.status == "active")):
        period.status = "cancelled"
        count += 1
        _end_paid_tier(session, clock=clock, member_id=period.member_id)
    session.flush()
    return count


def _end_paid_tier(session: Session, *, clock: Clock, member_id: uuid.UUID) -> None:
    if current(session, member_id=member_id, now=clock.now()) is not None:
        return
    row = session.get(MemberTier, member_id)
    if row is not None and row.source == "paid":
        row.source, row.held_until = "earned", clock.now().date()


def run_daily(session: Session, *, clock: Clock) -> dict[str, int]:
    """Warn a week before a paid period ends; expire ended periods and release paid tiers."""
    now = clock.now()
    counts = {"expiring_notices": 0, "expired": 0}
    for period in session.scalars(select(Membership).where(
            Membership.status == "active", Membership.ends_at > now,
            Membership.ends_at <= now + EXPIRING_NOTICE,
            Membership.expiring_notified_at.is_(None))):
        later = session.scalar(select(Membership.id).where(
            Membership.member_id == period.member_id, Membership.plan_id == period.plan_id,
            Membership.status == "active", Membership.starts_at >= period.ends_at))
        period.expiring_notified_at = now
        if later is None:  # a renewal already paid: nothing to warn about
            emit(session, clock=clock, type="membership.expiring", subject_id=period.member_id,
                 payload={"member_id": str(period.member_id),
                          "ends_at": period.ends_at.isoformat()})
            counts["expiring_notices"] += 1
    for period in session.scalars(select(Membership).where(
            Membership.status == "active", Membership.ends_at <= now)):
        period.status = "expired"
        counts["expired"] += 1
        emit(session, clock=clock, type="membership.expired", subject_id=period.member_id,
             payload={"member_id": str(period.member_id), "ended_at": period.ends_at.isoformat()})
        _end_paid_tier(session, clock=clock, member_id=period.member_id)
    session.flush()
    return counts


def fee_revenue(session: Session, *, since: datetime, until: datetime) -> dict[str, int]:
    """Membership fees by plan code in a period, net of refunds (minor units)."""
    from patron.sales import queries as sales  # the fees are sale lines

    revenue: dict[str, int] = {}
    for plan in session.scalars(select(MembershipPlan)):
        revenue[plan.code] = sales.net_line_revenue(session, product_id=plan.product_id,
                                                    since=since, until=until)
    return revenue


def current_period(session: Session, *, member_id: uuid.UUID
                   ) -> tuple[Membership, MembershipPlan, int] | None:
    """The member's active paid period that ends last, its plan and the plan's price now
    (what a renewal costs), for renewal reminders and the member page."""
    period = session.scalar(select(Membership).where(
        Membership.member_id == member_id, Membership.status == "active")
        .order_by(Membership.ends_at.desc()).limit(1))
    if period is None:
        return None
    plan = session.get(MembershipPlan, period.plan_id)
    assert plan is not None
    products = catalog.find_products(session, ids={plan.product_id})
    return period, plan, products[0].price_minor if products else 0
