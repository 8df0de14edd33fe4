"""Promotion definitions: validation naming the field, who may change what, the audit log,
versions, the compiled book and its cache, the counters behind the limits, member merges
and the till's hint texts."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from patron.auth import audit
from patron.auth import service as auth
from patron.auth.principal import Principal
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.errors import NotFound, PermissionDenied, ValidationFailed
from patron.members import service as members
from patron.offers import promotion_service as promotions
from patron.offers.promotion_models import PromotionMemberUsage, PromotionRecord, PromotionUsage
from patron.offers.promotion_schemas import PromotionCreate, PromotionUpdate
from patron.offers.promotions import NearMiss
from patron.sales import service as sales
from patron.sales.schemas import LineIn, PaymentsIn, SaleCreate
from patron.wallet.enums import SpendOrder
from tests.factories import World, make_member, make_product

SPEND = {"kind": "spend_discount", "steps": [{"spend_minor": 1000, "amount_off_minor": 100}]}
TILL = sales.TillConfig(currency="CNY", region="CN", timezone="Asia/Shanghai",
                        spend_order=SpendOrder.PRINCIPAL_FIRST)


def as_user(world: World, name: str) -> Principal:
    return auth.principal_for_user(getattr(world, name))


def create(session: Session, clock: FixedClock, actor: Principal, **data: Any) -> PromotionRecord:
    values: dict[str, Any] = {"name": "10 off 100", "config": SPEND} | data
    return promotions.create_promotion(session, clock=clock, actor=actor,
                                       data=PromotionCreate(**values))


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(("config", "field"), [
    ({"kind": "spend_discount", "steps": [{"spend_minor": 1000, "amount_off_minor": 100},
                                          {"spend_minor": 0, "amount_off_minor": 200}]},
     "config.steps.1.spend_minor"),
    ({"kind": "spend_discount", "steps": [{"spend_minor": 2000, "amount_off_minor": 100},
                                          {"spend_minor": 1000, "amount_off_minor": 200}]},
     "config.steps"),
    ({"kind": "nth_item", "items": {}, "nth": 2, "percent_off": 50}, "config.items"),
    ({"kind": "buy_x_get_y", "buy": {"products": [str(uuid.UUID(int=1))]},
      "buy_quantity": 2, "percent_off": 0}, "config.percent_off"),
    ({"kind": "teleport"}, "config"),
])
def test_a_bad_config_is_refused_naming_the_field_and_nothing_is_stored(
    session: Session, clock: FixedClock, world: World, config: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationFailed) as err:
        create(session, clock, as_user(world, "owner"), config=config)
    assert err.value.field == field, err.value.problems
    assert session.scalar(select(func.count()).select_from(PromotionRecord)) == 0


def test_unknown_stores_and_gift_products_are_refused_naming_the_field(
    session: Session, clock: FixedClock, world: World
) -> None:
    owner = as_user(world, "owner")
    with pytest.raises(ValidationFailed) as err:
        create(session, clock, owner, audience={"stores": [str(uuid.uuid4())]})
    assert err.value.field == "audience.stores"
    with pytest.raises(ValidationFailed) as err:
        create(session, clock, owner, config={"kind": "spend_gift", "spend_minor": 100,
                                              "gift_product_id": str(uuid.uuid4())})
    assert err.value.field == "config.gift_product_id"


# ---------------------------------------------------------------- who may do what


def test_managers_run_promotions_only_in_their_own_stores(
    session: Session, clock: FixedClock, world: World
) -> None:
    manager_a, manager_b = as_user(world, "manager_a"), as_user(world, "manager_b")
    for actor, stores in ((manager_a, []), (manager_a, [world.store_b.id]),
                          (manager_a, [world.store_a.id, world.store_b.id])):
        with pytest.raises(PermissionDenied):
            create(session, clock, actor, audience={"stores": [str(s) for s in stores]})
    with pytest.raises(PermissionDenied):
        create(session, clock, as_user(world, "cashier_a"),
               audience={"stores": [str(world.store_a.id)]})
    mine = create(session, clock, manager_a, audience={"stores": [str(world.store_a.id)]})
    chain = create(session, clock, as_user(world, "owner"), name="Everywhere")
    # manager B neither sees nor changes A's promotion; sees the chain-wide one
    with pytest.raises(NotFound):
        promotions.get_promotion(session, actor=manager_b, promotion_id=mine.id)
    assert [p.id for p in promotions.list_promotions(session, actor=manager_b)] == [chain.id]
    with pytest.raises(PermissionDenied):
        promotions.set_active(session, clock=clock, actor=manager_b, promotion_id=mine.id,
                              active=False)
    with pytest.raises(PermissionDenied):  # only the owner changes a chain-wide promotion
        promotions.update_promotion(session, clock=clock, actor=manager_a,
                                    promotion_id=chain.id, data=PromotionUpdate(priority=1))
    with pytest.raises(PermissionDenied):  # nor may a manager widen theirs to every store
        promotions.update_promotion(session, clock=clock, actor=manager_a,
                                    promotion_id=mine.id,
                                    data=PromotionUpdate.model_validate({"audience": {}}))


def test_every_change_is_audited_and_bumps_the_version(
    session: Session, clock: FixedClock, world: World
) -> None:
    owner = as_user(world, "owner")
    p = create(session, clock, owner)
    assert p.version == 1
    promotions.update_promotion(session, clock=clock, actor=owner, promotion_id=p.id,
                                data=PromotionUpdate(priority=5, name="Ten off a hundred"))
    promotions.update_promotion(session, clock=clock, actor=owner, promotion_id=p.id,
                                data=PromotionUpdate(priority=5))  # no change: no version
    promotions.set_active(session, clock=clock, actor=owner, promotion_id=p.id, active=False)
    promotions.set_active(session, clock=clock, actor=owner, promotion_id=p.id, active=True)
    assert (p.version, p.priority, p.name) == (4, 5, "Ten off a hundred")
    session.flush()
    entries = audit.list_entries(session, entity_type="promotion", entity_id=str(p.id))
    assert [e.action for e in reversed(entries)] == [
        "promotion.created", "promotion.updated", "promotion.deactivated",
        "promotion.activated"]
    assert entries[2].details == {"name": "Ten off a hundred", "priority": 5, "version": 2}


def test_a_change_of_config_is_validated_whole(
    session: Session, clock: FixedClock, world: World
) -> None:
    owner = as_user(world, "owner")
    p = create(session, clock, owner)
    with pytest.raises(ValidationFailed) as err:
        promotions.update_promotion(session, clock=clock, actor=owner, promotion_id=p.id,
                                    data=PromotionUpdate(config={"kind": "spend_discount",
                                                                 "steps": []}))
    assert err.value.field == "config.steps"
    with pytest.raises(ValidationFailed) as err:
        promotions.update_promotion(session, clock=clock, actor=owner, promotion_id=p.id,
                                    data=PromotionUpdate.model_validate({"name": None}))
    assert err.value.field == "name"
    assert p.version == 1


# ---------------------------------------------------------------- the book


def test_the_book_is_compiled_once_and_rebuilt_after_every_change(
    db: Database, clock: FixedClock, world: World
) -> None:
    owner = as_user(world, "owner")
    with db.write() as s:
        p = create(s, clock, owner)
        q = create(s, clock, owner, name="Another")
    with db.read() as s:
        first = promotions.book(s)
        assert promotions.book(s) is first  # once per transaction
        assert set(first.book.promotions) == {p.id, q.id}
    with db.read() as s:
        assert promotions.book(s) is first  # and kept by the process while nothing changes
    with db.write() as s:
        promotions.update_promotion(s, clock=clock, actor=owner, promotion_id=p.id,
                                    data=PromotionUpdate(priority=1))
        assert promotions.book(s).book.promotions[p.id].priority == 1  # sees its own change
    with db.read() as s:
        second = promotions.book(s)
        assert second is not first and second.versions[p.id] == 2
    with db.write() as s:
        promotions.set_active(s, clock=clock, actor=owner, promotion_id=q.id, active=False)
    with db.read() as s:
        assert set(promotions.book(s).book.promotions) == {p.id}


def test_a_stored_row_that_no_longer_parses_never_applies(
    db: Database, clock: FixedClock, world: World
) -> None:
    with db.write() as s:
        good = create(s, clock, as_user(world, "owner"))
        bad = create(s, clock, as_user(world, "owner"), name="Broken")
        s.execute(update(PromotionRecord).where(PromotionRecord.id == bad.id)
                  .values(config={"kind": "spend_discount", "steps": "lots"}, version=2))
    with db.read() as s:
        assert set(promotions.book(s).book.promotions) == {good.id}


# ---------------------------------------------------------------- counters


def test_limits_cannot_drop_below_what_was_already_used(
    session: Session, clock: FixedClock, world: World
) -> None:
    owner = as_user(world, "owner")
    p = create(session, clock, owner, limits={"total": 10, "budget_minor": 5000,
                                              "per_member": 3})
    usage = session.get(PromotionUsage, p.id)
    assert usage is not None and (usage.total_limit, usage.budget_minor) == (10, 5000)
    m = make_member(session, clock, world.store_a)
    session.add(PromotionMemberUsage(promotion_id=p.id, member_id=m.id, uses=2,
                                     per_member_limit=3))
    usage.uses, usage.budget_spent_minor = 4, 400
    session.flush()
    for limits, field in (({"total": 3, "budget_minor": 5000, "per_member": 3}, "limits.total"),
                          ({"total": 10, "budget_minor": 300, "per_member": 3},
                           "limits.budget_minor"),
                          ({"total": 10, "budget_minor": 5000, "per_member": 1},
                           "limits.per_member")):
        with pytest.raises(ValidationFailed) as err:
            promotions.update_promotion(session, clock=clock, actor=owner, promotion_id=p.id,
                                        data=PromotionUpdate.model_validate({"limits": limits}))
        assert err.value.field == field
    promotions.update_promotion(session, clock=clock, actor=owner, promotion_id=p.id,
                                data=PromotionUpdate.model_validate(
                                    {"limits": {"total": 4, "per_member": 2}}))
    row = session.get(PromotionMemberUsage, (p.id, m.id))
    assert row is not None and row.per_member_limit == 2
    assert (usage.total_limit, usage.budget_minor) == (4, None)


def test_a_limit_added_later_counts_the_sales_already_made(
    session: Session, clock: FixedClock, world: World
) -> None:
    owner = as_user(world, "owner")
    make_product(session, sku="A", price_minor=2000)
    p = create(session, clock, owner)
    m = make_member(session, clock, world.store_a)
    for member_id in (m.id, m.id, None):
        sales.checkout(session, clock=clock, actor=as_user(world, "cashier_a"), till=TILL,
                       data=SaleCreate(member_id=member_id, lines=[LineIn(sku="A", quantity=1)],
                                       payments=PaymentsIn(cash_minor=1900)))
    usage = session.get(PromotionUsage, p.id)
    assert usage is not None and usage.uses == 0  # unlimited: no counting, no locks
    promotions.update_promotion(session, clock=clock, actor=owner, promotion_id=p.id,
                                data=PromotionUpdate.model_validate(
                                    {"limits": {"total": 5, "per_member": 3}}))
    assert (usage.uses, usage.budget_spent_minor) == (3, 300)
    row = session.get(PromotionMemberUsage, (p.id, m.id))
    assert row is not None and (row.uses, row.per_member_limit) == (2, 3)


def test_a_merge_adds_the_duplicates_uses_capped_at_the_limit(
    session: Session, clock: FixedClock, world: World
) -> None:
    owner = as_user(world, "owner")
    capped = create(session, clock, owner, limits={"per_member": 3})
    other = create(session, clock, owner, name="Other", limits={"per_member": 5})
    keep, dup = (make_member(session, clock, world.store_a) for _ in range(2))
    session.add_all([
        PromotionMemberUsage(promotion_id=capped.id, member_id=keep.id, uses=2,
                             per_member_limit=3),
        PromotionMemberUsage(promotion_id=capped.id, member_id=dup.id, uses=2,
                             per_member_limit=3),
        PromotionMemberUsage(promotion_id=other.id, member_id=dup.id, uses=1,
                             per_member_limit=5)])
    session.flush()
    members.merge_members(session, clock=clock, actor=owner, survivor_id=keep.id,
                          duplicate_id=dup.id)
    rows = {(r.promotion_id, r.member_id): r.uses
            for r in session.scalars(select(PromotionMemberUsage))}
    assert rows == {(capped.id, keep.id): 3, (other.id, keep.id): 1}


# ---------------------------------------------------------------- hints


@pytest.mark.parametrize(("key", "params", "en", "zh"), [
    ("buy_x_get_y", {"missing_quantity": 1, "get_quantity": 1, "percent_off": 100},
     "Add 1 more to get 1 free", "再买1件，1件免费"),
    ("buy_x_get_y", {"missing_quantity": 2, "get_quantity": 1, "percent_off": 50},
     "Add 2 more to get 1 50% off", "再买2件，1件享50%优惠"),
    ("nth_item", {"missing_quantity": 1, "nth": 2, "percent_off": 50},
     "Add 1 more: the 2nd item is 50% off", "再买1件，第2件享50%优惠"),
    ("volume", {"missing_quantity": 2, "percent_off": 10},
     "Add 2 more for 10% off", "再买2件，全部享10%优惠"),
    ("bundle", {"missing_quantity": 1, "price_minor": 1000},
     "Add 1 more for the bundle at ¥10.00", "再买1件，即享套装价¥10.00"),
    ("spend_discount", {"missing_minor": 2300, "amount_off_minor": 2000},
     "Spend ¥23.00 more to get ¥20.00 off", "再消费¥23.00，即可立减¥20.00"),
    ("spend_percent", {"missing_minor": 5000, "percent_off": 10},
     "Spend ¥50.00 more for 10% off", "再消费¥50.00，即可享10%优惠"),
    ("spend_gift", {"missing_minor": 2000}, "Spend ¥20.00 more for a free gift",
     "再消费¥20.00，即可获赠礼品"),
    ("add_reward", {"missing_quantity": 1, "percent_off": 100},
     "Add 1 of the offer item: free", "再加1件活动商品即可免费"),
    ("buy_more", {"missing_quantity": 1, "get_quantity": 1, "percent_off": 100},
     "Buy 1 more to get 1 free", "再买1件指定商品，即可1件免费"),
])
def test_every_hint_reads_in_english_and_chinese(
    key: str, params: dict[str, int], en: str, zh: str
) -> None:
    miss = NearMiss(uuid.uuid4(), "x", f"promotions.near_miss.{key}",
                    params.get("missing_quantity", 0), params.get("missing_minor", 0), (), (),
                    params)
    assert promotions.near_miss_texts(miss, currency="CNY") == {"en": en, "zh_CN": zh}
    assert set(promotions.NEAR_MISS_TEXTS) >= {miss.message_key}
