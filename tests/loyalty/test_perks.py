"""A tier's birthday present and the paid-plan perks it includes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.auth.enums import Role
from patron.auth.models import AuditEntry
from patron.care import service as care
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.errors import PermissionDenied, ValidationFailed
from patron.core.settings import Settings
from patron.jobs.worker import WorkerContext
from patron.loyalty import membership, perks
from patron.loyalty import service as loyalty
from patron.loyalty.models import Membership, MemberTier, Tier
from patron.offers import service as offers
from patron.offers.enums import CouponKind, Validity
from patron.offers.models import Coupon
from patron.offers.schemas import CouponTemplateCreate
from tests.factories import World, make_member, make_product, make_user
from tests.support.worker import make_worker

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


@pytest.fixture
def ctx(db: Database, clock: FixedClock, settings: Settings, tmp_path: Path) -> WorkerContext:
    worker = make_worker(db, clock, settings, smtp_port=None, sms_path=tmp_path / "sms")
    worker.ctx.clock = FixedClock(NOW)
    return worker.ctx


def _template(session: Session, world: World, name: str, amount_minor: int) -> object:
    return offers.create_template(session, clock=FixedClock(NOW),
                                  actor=auth.principal_for_user(world.owner),
                                  data=CouponTemplateCreate(
                                      name=name, kind=CouponKind.FIXED,
                                      amount_minor=amount_minor, validity=Validity.DAYS,
                                      valid_days=30))


def _tier(session: Session, world: World, code: str, rank: int, threshold: int) -> Tier:
    return loyalty.create_tier(session, clock=FixedClock(NOW),
                               actor=auth.principal_for_user(world.owner), code=code,
                               name=code.title(), rank=rank, threshold=threshold)


def _place(session: Session, member_id: object, tier: Tier) -> None:
    session.add(MemberTier(member_id=member_id, tier_id=tier.id, since=NOW, source="manual"))
    session.flush()


def test_a_gold_member_gets_the_gold_birthday_coupon_and_others_the_rules_own(
        session: Session, ctx: WorkerContext, world: World) -> None:
    owner = auth.principal_for_user(world.owner)
    default = _template(session, world, "Birthday 20 off", 2000)
    gold_gift = _template(session, world, "Gold birthday 100 off", 10_000)
    _tier(session, world, "member", 0, 0)
    gold = _tier(session, world, "gold", 1, 500_000)
    perks.set_tier_perks(session, clock=ctx.clock, actor=owner, tier_id=gold.id,
                         birthday_coupon_template_id=gold_gift.id,  # type: ignore[attr-defined]
                         plan_ids=[])
    care.set_rule(session, clock=ctx.clock, actor=owner, code="birthday", enabled=True,
                  config={"coupon_template_id": str(default.id),  # type: ignore[attr-defined]
                          "days_before": 0})
    vip = make_member(session, ctx.clock, world.store_a, sms_consent=True,
                      birthday_calendar="solar", birth_month=3, birth_day=1)
    plain = make_member(session, ctx.clock, world.store_a, sms_consent=True,
                        birthday_calendar="solar", birth_month=3, birth_day=1)
    _place(session, vip.id, gold)

    care.birthdays(session, ctx, world.store_a, date(2026, 3, 1))

    got = {c.member_id: c.template_id for c in session.scalars(
        select(Coupon).where(Coupon.member_id.in_([vip.id, plain.id])))}
    assert got == {vip.id: gold_gift.id, plain.id: default.id}  # type: ignore[attr-defined]


def test_without_a_rule_coupon_only_the_tier_members_get_a_present(
        session: Session, ctx: WorkerContext, world: World) -> None:
    owner = auth.principal_for_user(world.owner)
    gift = _template(session, world, "Gold birthday", 5000)
    gold = _tier(session, world, "gold", 1, 500_000)
    perks.set_tier_perks(session, clock=ctx.clock, actor=owner, tier_id=gold.id,
                         birthday_coupon_template_id=gift.id,  # type: ignore[attr-defined]
                         plan_ids=[])
    care.set_rule(session, clock=ctx.clock, actor=owner, code="birthday", enabled=True,
                  config={"days_before": 0})
    vip = make_member(session, ctx.clock, world.store_a, sms_consent=True,
                      birthday_calendar="solar", birth_month=3, birth_day=1)
    plain = make_member(session, ctx.clock, world.store_a, sms_consent=True,
                        birthday_calendar="solar", birth_month=3, birth_day=1)
    _place(session, vip.id, gold)
    assert care.birthdays(session, ctx, world.store_a, date(2026, 3, 1)) == 2  # both greeted
    owners = [c.member_id for c in session.scalars(select(Coupon))]
    assert owners == [vip.id] and plain.id not in owners


def test_plan_perks_come_from_a_running_paid_period_or_from_the_tier(
        session: Session, clock: FixedClock, world: World) -> None:
    owner = auth.principal_for_user(world.owner)
    fee = make_product(session, price_minor=26_000, sku="PLUS-FEE")
    plus = membership.create_plan(session, clock=clock, actor=owner, code="plus",
                                  name="Plus", product_id=fee.id, duration_days=365)
    gold = _tier(session, world, "gold", 1, 500_000)
    payer = make_member(session, clock, world.store_a)
    gold_member = make_member(session, clock, world.store_a)
    lapsed = make_member(session, clock, world.store_a)
    now = clock.now()
    session.add_all([
        Membership(member_id=payer.id, plan_id=plus.id, starts_at=now - timedelta(days=10),
                   ends_at=now + timedelta(days=355), status="active"),
        Membership(member_id=lapsed.id, plan_id=plus.id, starts_at=now - timedelta(days=400),
                   ends_at=now - timedelta(days=35), status="active"),
    ])
    _place(session, gold_member.id, gold)

    assert perks.perk_plan_codes(session, member_id=gold_member.id, now=now) == frozenset()
    perks.set_tier_perks(session, clock=clock, actor=owner, tier_id=gold.id,
                         birthday_coupon_template_id=None, plan_ids=[plus.id])
    assert perks.perk_plan_codes(session, member_id=payer.id, now=now) == {"plus"}
    assert perks.perk_plan_codes(session, member_id=gold_member.id, now=now) == {"plus"}
    assert perks.perk_plan_codes(session, member_id=lapsed.id, now=now) == frozenset()
    assert perks.tier_plan_ids(session, tier_id=gold.id) == [plus.id]


def test_tier_perks_are_an_owners_audited_change_and_bad_ids_name_the_field(
        session: Session, clock: FixedClock, world: World) -> None:
    import uuid

    owner = auth.principal_for_user(world.owner)
    gold = _tier(session, world, "gold", 1, 500_000)
    manager = auth.principal_for_user(make_user(session, clock, Role.MANAGER,
                                                [world.store_a]))
    with pytest.raises(PermissionDenied):
        perks.set_tier_perks(session, clock=clock, actor=manager, tier_id=gold.id,
                             birthday_coupon_template_id=None, plan_ids=[])
    with pytest.raises(ValidationFailed) as refused:
        perks.set_tier_perks(session, clock=clock, actor=owner, tier_id=gold.id,
                             birthday_coupon_template_id=uuid.uuid4(), plan_ids=[])
    assert refused.value.field == "birthday_coupon_template_id"
    with pytest.raises(ValidationFailed) as refused:
        perks.set_tier_perks(session, clock=clock, actor=owner, tier_id=gold.id,
                             birthday_coupon_template_id=None, plan_ids=[uuid.uuid4()])
    assert refused.value.field == "plan_ids.0"
    assert session.get(Tier, gold.id).birthday_coupon_template_id is None  # type: ignore[union-attr]

    gift = _template(session, world, "Gold birthday", 5000)
    for _ in range(2):  # the second call changes nothing and is not audited again
        perks.set_tier_perks(session, clock=clock, actor=owner, tier_id=gold.id,
                             birthday_coupon_template_id=gift.id,  # type: ignore[attr-defined]
                             plan_ids=[])
    entries = list(session.scalars(select(AuditEntry).where(
        AuditEntry.action == "tier.perks_changed")))
    assert len(entries) == 1 and entries[0].entity_id == str(gold.id)
