"""Promotions at the till: every kind through checkout, coupons, gifts, cashback, refunds,
limits under concurrency, the store's clock, quotes and reports.

Amounts are minor units (1000 is 10.00). Product A costs 10.00 and B 6.00 (category FOOD);
G is a 5.00 gift (category GIFTS).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.auth.principal import Principal
from patron.catalog.models import Product
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.errors import PatronError, ValidationFailed
from patron.loyalty import service as loyalty
from patron.members.models import Member, Store
from patron.offers import promotion_service as promotions
from patron.offers.promotion_models import PromotionMemberUsage, PromotionRecord, PromotionUsage
from patron.offers.promotion_schemas import PromotionCreate
from patron.sales import service as sales
from patron.sales.models import Sale, SalePromotion
from patron.sales.schemas import LineIn, PaymentsIn, RefundCreate, RefundLineIn, SaleCreate
from patron.wallet import service as wallet
from patron.wallet.enums import SpendOrder
from tests.factories import World, make_member, make_product, make_store

TILL = sales.TillConfig(currency="CNY", region="CN", timezone="Asia/Shanghai",
                        spend_order=SpendOrder.PRINCIPAL_FIRST)


@dataclass
class Shop:
    a: Product
    b: Product
    g: Product


@pytest.fixture
def shop(session: Session) -> Shop:
    return Shop(make_product(session, sku="A", price_minor=1000, category_code="FOOD"),
                make_product(session, sku="B", price_minor=600, category_code="FOOD"),
                make_product(session, sku="G", price_minor=500, category_code="GIFTS"))


def owner(world: World) -> Principal:
    return auth.principal_for_user(world.owner)


def till(world: World) -> Principal:
    return auth.principal_for_user(world.cashier_a)


def promo(session: Session, clock: FixedClock, world: World, config: dict[str, Any],
          **spec: Any) -> PromotionRecord:
    data = {"name": spec.pop("name", config["kind"]), "config": config} | spec
    return promotions.create_promotion(session, clock=clock, actor=owner(world),
                                       data=PromotionCreate(**data))


def basket(member: Member | None, lines: list[tuple[str, int]], **extra: Any) -> SaleCreate:
    return SaleCreate(member_id=member.id if member else None,
                      lines=[LineIn(sku=sku, quantity=q) for sku, q in lines], **extra)


def sell(session: Session, clock: FixedClock, actor: Principal, member: Member | None,
         lines: list[tuple[str, int]], *, wallet_minor: int = 0, **extra: Any) -> Sale:
    """Quote the basket, then pay exactly the quoted total (cash, plus any wallet part)."""
    data = basket(member, lines, **extra)
    total = sales.quote(session, clock=clock, actor=actor, till=TILL, data=data).total_minor
    data.payments = PaymentsIn(cash_minor=total - wallet_minor, wallet_minor=wallet_minor)
    return sales.checkout(session, clock=clock, actor=actor, till=TILL, data=data)


def refund(session: Session, clock: FixedClock, world: World, sale: Sale,
           returned: list[tuple[int, int]] | None = None) -> sales.RefundOutcome:
    """Refund (line_no, quantity) pairs, or everything left."""
    by_no = {ln.line_no: ln for ln in sale.lines}
    data = RefundCreate() if returned is None else RefundCreate(lines=[
        RefundLineIn(line_id=by_no[no].id, quantity=q) for no, q in returned])
    return sales.refund(session, clock=clock, actor=till(world), till=TILL, sale_id=sale.id,
                        data=data)


def books_balance(session: Session) -> None:
    assert sales.verify(session) == []
    assert wallet.verify(session) == []
    assert loyalty.verify(session) == []


# ---------------------------------------------------------------- every kind


def _configs(shop: Shop) -> dict[str, tuple[dict[str, Any], list[tuple[str, int]], int]]:
    """kind -> (config, basket, total to pay)."""
    a, b, g = str(shop.a.id), str(shop.b.id), str(shop.g.id)
    return {
        "member_price": ({"kind": "member_price", "rules": [
            {"items": {"products": [a]}, "prices_minor": {"*": 800}}]}, [("A", 2)], 1600),
        "nth_item": ({"kind": "nth_item", "items": {"products": [a]}, "nth": 2,
                      "percent_off": 50}, [("A", 2)], 1500),
        "volume": ({"kind": "volume", "items": {"products": [a]},
                    "tiers": [{"min_quantity": 5, "percent_off": 10}]}, [("A", 5)], 4500),
        "buy_x_get_y": ({"kind": "buy_x_get_y", "buy": {"products": [a]}, "buy_quantity": 2,
                         "get_quantity": 1}, [("A", 3)], 2000),
        "bundle": ({"kind": "bundle", "components": [{"items": {"products": [a]}},
                                                     {"items": {"products": [b]}}],
                    "price_minor": 1200}, [("A", 1), ("B", 1)], 1200),
        "category_discount": ({"kind": "category_discount",
                               "items": {"categories": [str(shop.a.category_id)]},
                               "percent_off": 15}, [("A", 2)], 1700),
        "spend_discount": ({"kind": "spend_discount",
                            "steps": [{"spend_minor": 1500, "amount_off_minor": 200}]},
                           [("A", 2)], 1800),
        "spend_gift": ({"kind": "spend_gift", "spend_minor": 1500, "gift_product_id": g,
                        "gift_value_minor": 500}, [("A", 2)], 2000),
        "cashback": ({"kind": "cashback", "purchase_number": 1, "window_days": 30,
                      "percent": 5}, [("A", 2)], 2000),
    }


@pytest.mark.parametrize("kind", ["member_price", "nth_item", "volume", "buy_x_get_y", "bundle",
                                  "category_discount", "spend_discount", "spend_gift",
                                  "cashback"])
def test_each_kind_prices_the_sale_and_is_listed_on_the_receipt(
    session: Session, clock: FixedClock, world: World, shop: Shop, kind: str
) -> None:
    config, lines, total = _configs(shop)[kind]
    p = promo(session, clock, world, config, name=f"The {kind} offer")
    m = make_member(session, clock, world.store_a)
    sale = sell(session, clock, till(world), m, lines)
    assert sale.total_minor == total
    r = sales.receipt(session, clock=clock, sale=sale, currency="CNY")
    (listed,) = r.promotions
    assert (listed.id, listed.name, listed.kind) == (p.id, f"The {kind} offer", kind)
    assert listed.saving_minor == sale.subtotal_minor - total
    if listed.saving_minor:
        assert ("promotion", f"The {kind} offer", listed.saving_minor) in [
            (d.kind, d.label, d.amount_minor) for d in r.discounts]
    if kind == "cashback":
        assert listed.cashback_minor == r.cashback_minor == 100  # 5 % of 20.00
        assert wallet.balance(session, member_id=m.id) == wallet.Balance(0, 100)
    if kind == "spend_gift":
        gift = r.lines[-1]
        assert (gift.sku, gift.unit_price_minor, gift.total_minor, gift.gift_promotion_id) \
            == ("G", 0, 0, p.id)
        assert listed.gift_value_minor == 500
    books_balance(session)


def test_a_walk_in_gets_no_member_price_and_no_cashback(
    session: Session, clock: FixedClock, world: World, shop: Shop
) -> None:
    configs = _configs(shop)
    promo(session, clock, world, configs["member_price"][0])
    promo(session, clock, world, configs["cashback"][0])
    sale = sell(session, clock, till(world), None, [("A", 2)])
    assert sale.total_minor == 2000
    assert sales.receipt(session, clock=clock, sale=sale, currency="CNY").promotions == []


# ---------------------------------------------------------------- coupons


def _coupon(session: Session, clock: FixedClock, world: World, member: Member,
            amount_minor: int = 100) -> str:
    from patron.offers import service as offers
    from patron.offers.schemas import CouponTemplateCreate

    template = offers.create_template(
        session, clock=clock, actor=auth.principal_for_user(world.manager_a),
        data=CouponTemplateCreate(name="1 off", kind="fixed", amount_minor=amount_minor,
                                  validity="days", valid_days=30))
    (coupon,) = offers.issue_coupons(session, clock=clock, actor=None,
                                     template_id=template.id, member_id=member.id)
    return coupon.code


def test_a_promotion_that_does_not_stack_refuses_coupons_and_nothing_is_written(
    session: Session, clock: FixedClock, world: World, shop: Shop
) -> None:
    config, _, _ = _configs(shop)["buy_x_get_y"]
    promo(session, clock, world, config, name="3 for 2", stackable_with_coupons=False)
    m = make_member(session, clock, world.store_a)
    code = _coupon(session, clock, world, m)
    data = basket(m, [("A", 3)], coupon_codes=[code], payments=PaymentsIn(cash_minor=1900))
    for attempt in (sales.quote, sales.checkout):
        with pytest.raises(ValidationFailed) as err:
            attempt(session, clock=clock, actor=till(world), till=TILL, data=data)
        assert (err.value.field, err.value.code) == ("coupon_codes",
                                                     "coupon_blocked_by_promotion")
        assert "3 for 2" in err.value.message
    assert session.scalar(select(func.count()).select_from(Sale)) == 0
    # without the qualifying units the promotion does not apply, and the coupon does
    sale = sell(session, clock, till(world), m, [("A", 2)], coupon_codes=[code])
    assert sale.total_minor == 1900


def test_coupons_and_the_tier_discount_apply_to_what_the_promotions_left(
    session: Session, clock: FixedClock, world: World, shop: Shop
) -> None:
    loyalty.create_tier(session, clock=clock, actor=owner(world), code="base", name="Base",
                        rank=0, threshold=0, discount_pct=10)
    config, _, _ = _configs(shop)["buy_x_get_y"]
    promo(session, clock, world, config)
    m = make_member(session, clock, world.store_a)
    loyalty.evaluate_tier(session, clock=clock, member_id=m.id)
    code = _coupon(session, clock, world, m, amount_minor=500)
    sale = sell(session, clock, till(world), m, [("A", 3)], coupon_codes=[code])
    # 30.00 - 10.00 free - 5.00 coupon = 15.00, less 10 % = 13.50
    assert sale.total_minor == 1350
    assert [(d.kind, d.amount_minor) for d in sale.discounts] == [
        ("promotion", 1000), ("coupon", 500), ("tier", 150)]
    books_balance(session)


# ---------------------------------------------------------------- gifts and cashback


def test_a_gift_is_a_zero_price_line_that_earns_nothing(
    session: Session, clock: FixedClock, world: World, shop: Shop
) -> None:
    loyalty.update_program(session, clock=clock, actor=owner(world),
                           changes={"points_per_major": 1})
    config, _, _ = _configs(shop)["spend_gift"]
    promo(session, clock, world, config)
    m = make_member(session, clock, world.store_a)
    sale = sell(session, clock, till(world), m, [("A", 2)])
    gift = sale.lines[-1]
    assert (gift.product_id, gift.quantity, gift.unit_price_minor, gift.total_minor) \
        == (shop.g.id, 1, 0, 0)
    assert sale.points_earned == 20  # on the 20.00 paid, nothing for the gift
    # below the threshold: no gift line
    small = sell(session, clock, till(world), m, [("A", 1)])
    assert [ln.product_id for ln in small.lines] == [shop.a.id]


def test_cashback_is_bonus_in_the_wallet_and_a_refund_takes_it_back(
    session: Session, clock: FixedClock, world: World, shop: Shop
) -> None:
    config = {"kind": "cashback", "purchase_number": 2, "window_days": 30, "percent": 10,
              "mode": "from_nth"}
    promo(session, clock, world, config)
    m = make_member(session, clock, world.store_a)
    first = sell(session, clock, till(world), m, [("A", 1)])
    assert first.applied_promotions == []  # the 1st purchase in the window: nothing
    clock.advance(timedelta(days=1))
    second = sell(session, clock, till(world), m, [("A", 4)])
    assert sales.receipt(session, clock=clock, sale=second, currency="CNY").cashback_minor == 400
    assert wallet.balance(session, member_id=m.id) == wallet.Balance(0, 400)
    entries = wallet.entries(session, member_id=m.id)
    assert [(e.kind, e.bonus_delta_minor, e.sale_id) for e in entries] == [
        ("cashback", 400, second.id)]
    out = refund(session, clock, world, second, [(1, 1)])  # a quarter back
    assert (out.refund.amount_minor, out.refund.cashback_reclaimed_minor) == (1000, 100)
    assert wallet.balance(session, member_id=m.id) == wallet.Balance(0, 300)
    out = refund(session, clock, world, second)
    assert out.refund.cashback_reclaimed_minor == 300
    assert wallet.balance(session, member_id=m.id) == wallet.Balance(0, 0)
    (row,) = second.applied_promotions
    assert (row.cashback_reclaimed_minor, row.cashback_unrecovered_minor) == (400, 0)
    books_balance(session)


def test_cashback_already_spent_is_recorded_as_unrecovered_not_taken_from_the_refund(
    session: Session, clock: FixedClock, world: World, shop: Shop
) -> None:
    promo(session, clock, world, {"kind": "cashback", "purchase_number": 1,
                                  "window_days": 30, "percent": 10}, limits={"per_member": 1})
    m = make_member(session, clock, world.store_a)
    sale = sell(session, clock, till(world), m, [("A", 5)])  # 500 cashback
    clock.advance(timedelta(days=40))  # out of the window: no cashback on the next sale
    sell(session, clock, till(world), m, [("B", 1)], wallet_minor=300)  # spends 300 of it
    assert wallet.balance(session, member_id=m.id).total_minor == 200
    out = refund(session, clock, world, sale)
    assert out.refund.amount_minor == 5000  # the money back is whole
    assert (out.refund.cashback_reclaimed_minor, out.refund.cashback_unrecovered_minor) \
        == (200, 300)
    assert wallet.balance(session, member_id=m.id).total_minor == 0
    (row,) = sale.applied_promotions
    assert (row.cashback_reclaimed_minor, row.cashback_unrecovered_minor) == (200, 300)
    books_balance(session)


# ---------------------------------------------------------------- refunds


def test_returning_the_items_that_earned_a_free_one_takes_the_free_one_back(
    session: Session, clock: FixedClock, world: World, shop: Shop
) -> None:
    promo(session, clock, world, {"kind": "buy_x_get_y",
                                  "buy": {"categories": [str(shop.a.category_id)]},
                                  "buy_quantity": 2, "get_quantity": 1})
    m = make_member(session, clock, world.store_a)
    sale = sell(session, clock, till(world), m, [("A", 2), ("B", 1)])
    assert sale.total_minor == 2000  # B, the cheapest, is free
    # the free B alone comes back: nothing to pay back
    assert refund(session, clock, world, sale, [(2, 1)]).refund.amount_minor == 0
    sale2 = sell(session, clock, till(world), m, [("A", 2), ("B", 1)])
    # one A comes back: the kept A and B now cost 16.00, of which 10.00 was paid
    out = refund(session, clock, world, sale2, [(1, 1)])
    assert out.refund.amount_minor == 400
    assert out.sale.status == "partially_refunded"
    rest = refund(session, clock, world, sale2)
    assert out.refund.amount_minor + rest.refund.amount_minor == sale2.total_minor
    (row,) = sale2.applied_promotions
    assert row.discount_returned_minor == row.saving_minor == 600
    books_balance(session)


def test_partial_refunds_of_buy_two_get_one_end_exactly_at_the_sale(
    session: Session, clock: FixedClock, world: World, shop: Shop
) -> None:
    config, _, _ = _configs(shop)["buy_x_get_y"]
    promo(session, clock, world, config)
    m = make_member(session, clock, world.store_a)
    sale = sell(session, clock, till(world), m, [("A", 3)])
    assert sale.total_minor == 2000
    amounts = [refund(session, clock, world, sale, [(1, 1)]).refund.amount_minor
               for _ in range(3)]
    assert amounts == [0, 1000, 1000]  # keeping two units means paying for two
    assert sum(amounts) == sale.refunded_minor == sale.total_minor
    assert sale.status == "refunded"
    books_balance(session)


def test_a_kept_gift_is_charged_when_the_spend_that_earned_it_goes_back(
    session: Session, clock: FixedClock, world: World, shop: Shop
) -> None:
    config, _, _ = _configs(shop)["spend_gift"]
    p = promo(session, clock, world, config, limits={"budget_minor": 10_000})
    m = make_member(session, clock, world.store_a)
    sale = sell(session, clock, till(world), m, [("A", 2)])
    out = refund(session, clock, world, sale, [(1, 1)])  # 10.00 left: below 15.00
    assert out.refund.amount_minor == 500  # 10.00 back less the 5.00 gift kept
    assert session.get(PromotionUsage, p.id).budget_spent_minor == 0  # type: ignore[union-attr]
    out = refund(session, clock, world, sale, [(2, 1)])  # the gift comes back too
    assert out.refund.amount_minor == 500
    out = refund(session, clock, world, sale)
    assert out.refund.amount_minor == 1000
    assert sale.refunded_minor == sale.total_minor == 2000
    books_balance(session)


# ---------------------------------------------------------------- limits and budgets


def test_limits_and_budget_cut_the_offer_then_stop_it(
    session: Session, clock: FixedClock, world: World, shop: Shop
) -> None:
    a = str(shop.a.id)
    per_member = promo(session, clock, world, {
        "kind": "category_discount", "items": {"products": [a]}, "amount_off_minor": 100},
        name="1 off A, once each", limits={"per_member": 1})
    budgeted = promo(session, clock, world, {
        "kind": "spend_discount", "steps": [{"spend_minor": 100, "amount_off_minor": 400}]},
        name="4 off, 10.00 budget", limits={"budget_minor": 1000, "total": 5})
    m1, m2 = (make_member(session, clock, world.store_a) for _ in range(2))
    totals = [sell(session, clock, till(world), m, [("A", 1)]).total_minor
              for m in (m1, m1, m2, m2)]
    # m1: 1 + 4 off; m1 again: 4 off; m2: 1 + 2 off (budget left); m2 again: nothing
    assert totals == [500, 600, 700, 1000]
    usage = session.get(PromotionUsage, budgeted.id)
    assert usage is not None and (usage.uses, usage.budget_spent_minor) == (3, 1000)
    assert session.get(PromotionUsage, per_member.id).uses == 2  # type: ignore[union-attr]
    rows = session.scalars(select(PromotionMemberUsage.uses).where(
        PromotionMemberUsage.promotion_id == per_member.id)).all()
    assert sorted(rows) == [1, 1]
    # a refund gives budget back, never uses
    first = next(s for s in session.scalars(select(Sale)) if s.total_minor == 500)
    refund(session, clock, world, first)
    session.refresh(usage)
    assert (usage.uses, usage.budget_spent_minor) == (3, 600)


def test_counting_past_a_limit_is_refused_by_the_database(
    session: Session, clock: FixedClock, world: World, shop: Shop
) -> None:
    p = promo(session, clock, world, _configs(shop)["nth_item"][0], limits={"total": 1})
    session.flush()
    usage = session.get(PromotionUsage, p.id)
    assert usage is not None
    usage.uses = 2
    with pytest.raises(DBAPIError):
        session.flush()


def _race(db: Database, clock: FixedClock, world: World, members: list[uuid.UUID],
          racers: int) -> list[int]:
    """``racers`` tills check out one A each at the same moment; returns each total (or -1
    for a sale that failed)."""
    barrier = threading.Barrier(racers)
    totals: list[int] = []
    lock = threading.Lock()

    def racer(n: int) -> None:
        member_id = members[n % len(members)]
        data = SaleCreate(member_id=member_id, lines=[LineIn(sku="A", quantity=1)])
        barrier.wait()
        total = -1
        for _ in range(3):  # a deadlock victim retries, like a till would
            try:
                with db.write() as s:
                    q = sales.quote(s, clock=clock, actor=till(world), till=TILL, data=data)
                    data.payments = PaymentsIn(card_minor=q.total_minor)
                    try:
                        total = sales.checkout(s, clock=clock, actor=till(world), till=TILL,
                                               data=data).total_minor
                    except ValidationFailed:  # priced without the offer: the quote was stale
                        q = sales.quote(s, clock=clock, actor=till(world), till=TILL,
                                        data=data)
                        data.payments = PaymentsIn(card_minor=q.total_minor)
                        total = sales.checkout(s, clock=clock, actor=till(world), till=TILL,
                                               data=data).total_minor
                break
            except (DBAPIError, PatronError):
                total = -1
        with lock:
            totals.append(total)

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return totals


def _race_setup(db: Database, clock: FixedClock, world: World, limits: dict[str, int],
                members: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    with db.write() as s:
        make_product(s, sku="A", price_minor=1000, category_code="FOOD")
        p = promo(s, clock, world, {"kind": "spend_discount",
                                    "steps": [{"spend_minor": 100, "amount_off_minor": 300}]},
                  limits=limits)
        ids = [make_member(s, clock, world.store_a).id for _ in range(members)]
        return p.id, ids


def _given(db: Database, promotion_id: uuid.UUID) -> tuple[int, int]:
    with db.read() as s:
        rows = s.execute(select(func.count(), func.coalesce(func.sum(SalePromotion.value_minor),
                                                           0))
                         .where(SalePromotion.promotion_id == promotion_id)).one()
        return int(rows[0]), int(rows[1])


def test_concurrent_tills_never_exceed_a_total_limit_or_a_budget(
    db: Database, clock: FixedClock, world: World
) -> None:
    promotion_id, members = _race_setup(db, clock, world, {"total": 5, "budget_minor": 1400},
                                        members=4)
    totals = _race(db, clock, world, members, racers=12)
    assert -1 not in totals
    uses, given = _given(db, promotion_id)
    # 1400 of budget: four sales get 3.00 off, a fifth the last 2.00, the rest nothing
    assert (uses, given) == (5, 1400)
    assert sorted(totals) == [700] * 4 + [800] + [1000] * 7
    with db.read() as s:
        usage = s.get(PromotionUsage, promotion_id)
        assert usage is not None and (usage.uses, usage.budget_spent_minor) == (5, 1400)
        assert sales.verify(s) == []


def test_concurrent_tills_never_exceed_a_per_member_limit(
    db: Database, clock: FixedClock, world: World
) -> None:
    promotion_id, members = _race_setup(db, clock, world, {"per_member": 2}, members=2)
    totals = _race(db, clock, world, members, racers=10)
    assert -1 not in totals
    assert _given(db, promotion_id) == (4, 1200)  # two members, twice each
    assert sorted(totals) == [700] * 4 + [1000] * 6


def test_without_the_row_lock_the_race_gives_too_much(
    db: Database, clock: FixedClock, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers at BEGIN IMMEDIATE; the row lock is PostgreSQL's")
    monkeypatch.setattr(promotions, "for_update", lambda stmt: stmt)
    promotion_id, members = _race_setup(db, clock, world, {"total": 3}, members=4)
    totals = _race(db, clock, world, members, racers=16)
    uses, _ = _given(db, promotion_id)
    assert uses > 3 or -1 in totals, "the concurrency test could not tell a missing lock"


# ---------------------------------------------------------------- the store's clock


def test_happy_hours_follow_each_stores_own_clock(
    session: Session, clock: FixedClock, world: World, shop: Shop
) -> None:
    # TEST_NOW is 10:00 UTC: 18:00 in Shanghai, 05:00 in New York (a Monday in both)
    promo(session, clock, world, _configs(shop)["nth_item"][0],
          schedule={"hours": [{"start": "17:00", "end": "19:00"}], "days_of_week": [1]})
    ny: Store = make_store(session, clock, code="NY", timezone="America/New_York")
    m = make_member(session, clock, world.store_a)
    assert sell(session, clock, till(world), m, [("A", 2)]).total_minor == 1500
    assert sell(session, clock, owner(world), m, [("A", 2)],
                store_id=ny.id).total_minor == 2000
    clock.advance(timedelta(hours=12))  # 17:00 Monday in New York, 06:00 Tuesday in Shanghai
    assert sell(session, clock, owner(world), m, [("A", 2)],
                store_id=ny.id).total_minor == 1500
    assert sell(session, clock, till(world), m, [("A", 2)]).total_minor == 2000


def test_a_holiday_only_offer_runs_on_the_stores_local_holiday(
    session: Session, clock: FixedClock, world: World, shop: Shop
) -> None:
    promo(session, clock, world, _configs(shop)["nth_item"][0],
          schedule={"holidays": "only"})
    m = make_member(session, clock, world.store_a)
    clock.advance(datetime(2026, 12, 24, 15, 0, tzinfo=UTC) - clock.now())  # 23:00 on the 24th
    assert sell(session, clock, till(world), m, [("A", 2)]).total_minor == 2000
    clock.advance(timedelta(hours=2))  # 01:00 on Christmas Day in Shanghai
    assert sell(session, clock, till(world), m, [("A", 2)]).total_minor == 1500


# ---------------------------------------------------------------- quotes


def _counts(session: Session) -> dict[str, int]:
    from patron.core.registry import Base

    return {t.name: int(session.scalar(select(func.count()).select_from(t)) or 0)
            for t in Base.metadata.sorted_tables}


def test_a_quote_writes_nothing_and_the_sale_matches_it(
    db: Database, clock: FixedClock, world: World
) -> None:
    with db.write() as s:
        shop = Shop(make_product(s, sku="A", price_minor=1000, category_code="FOOD"),
                    make_product(s, sku="B", price_minor=600, category_code="FOOD"),
                    make_product(s, sku="G", price_minor=500, category_code="GIFTS"))
        configs = _configs(shop)
        for kind in ("buy_x_get_y", "spend_gift", "cashback"):
            promo(s, clock, world, configs[kind][0], limits={"per_member": 3, "total": 9})
        promo(s, clock, world, {"kind": "spend_discount",
                                "steps": [{"spend_minor": 6000, "amount_off_minor": 1000}]},
              name="10 off 60")
        member_id = make_member(s, clock, world.store_a).id
    data = SaleCreate(member_id=member_id, lines=[LineIn(sku="A", quantity=3),
                                                  LineIn(sku="B", quantity=2)])
    with db.read() as s:
        before = _counts(s)
    with db.read() as s:
        q = sales.quote(s, clock=clock, actor=till(world), till=TILL, data=data)
    with db.read() as s:
        assert _counts(s) == before
    assert q.total_minor == 3200  # 42.00 less one free A
    assert [p.kind for p in q.promotions] == ["buy_x_get_y", "spend_gift", "cashback"]
    assert q.cashback_minor == 160
    (hint,) = q.near_misses
    assert hint.message_key == "promotions.near_miss.spend_discount"
    assert hint.missing_minor == 2800 and hint.name == "10 off 60"
    assert hint.texts == {"en": "Spend ¥28.00 more to get ¥10.00 off",
                          "zh_CN": "再消费¥28.00，即可立减¥10.00"}
    with db.write() as s:
        data.payments = PaymentsIn(card_minor=q.total_minor)
        sale = sales.checkout(s, clock=clock, actor=till(world), till=TILL, data=data)
        r = sales.receipt(s, clock=clock, sale=sale, currency="CNY")
    assert r.total_minor == q.total_minor and r.discount_minor == q.discount_minor
    assert [(p.id, p.saving_minor, p.cashback_minor) for p in r.promotions] == [
        (p.id, p.saving_minor, p.cashback_minor) for p in q.promotions]
    assert [(ln.sku, ln.total_minor) for ln in r.lines] == [
        (ln.sku, ln.total_minor) for ln in q.lines]


def test_a_quote_shows_how_far_the_basket_is_from_the_next_offer(
    session: Session, clock: FixedClock, world: World, shop: Shop
) -> None:
    promo(session, clock, world, _configs(shop)["buy_x_get_y"][0], name="3 for 2")
    q = sales.quote(session, clock=clock, actor=till(world), till=TILL,
                    data=basket(None, [("A", 2)]))
    (hint,) = q.near_misses
    assert (hint.message_key, hint.missing_quantity) == ("promotions.near_miss.buy_x_get_y", 1)
    assert hint.texts == {"en": "Add 1 more to get 1 free", "zh_CN": "再买1件，1件免费"}


# ---------------------------------------------------------------- reports


def test_the_report_counts_what_was_given_and_what_it_earned(
    session: Session, clock: FixedClock, world: World, shop: Shop
) -> None:
    start = clock.now()
    m1, m2, m3 = (make_member(session, clock, world.store_a) for _ in range(3))
    # the week before: two plain sales
    for m in (m1, m2):
        sell(session, clock, till(world), m, [("B", 1)])
    clock.advance(timedelta(days=7))
    p = promo(session, clock, world, _configs(shop)["nth_item"][0], name="2nd half price")
    since = clock.now()
    sell(session, clock, till(world), m1, [("A", 2)])  # 5.00 off
    sell(session, clock, till(world), m2, [("A", 2)])  # 5.00 off
    walk_in = sell(session, clock, till(world), None, [("A", 4)])  # 10.00 off
    sell(session, clock, till(world), m3, [("B", 1)])  # no promotion
    refund(session, clock, world, walk_in, [(1, 2)])  # two back: 5.00 of discount returned
    clock.advance(timedelta(days=7))
    until = clock.now()
    clock.advance(timedelta(days=30))
    sell(session, clock, till(world), m1, [("B", 1)])  # m1 comes back within 90 days
    clock.advance(timedelta(days=100))
    report = sales.promotion_report(session, clock=clock, actor=owner(world),
                                    promotion_id=p.id, since=since, until=until)
    assert (report.redemptions, report.unique_members, report.walk_in_redemptions) == (3, 2, 1)
    assert (report.savings_minor, report.returned_minor, report.cost_minor) == (2000, 500, 1500)
    assert report.period.sales == 4
    assert report.period.net_sales_minor == 1500 + 1500 + 3000 - 1500 + 600
    assert report.previous_period.since == start and report.previous_period.sales == 2
    assert report.incremental_sales_minor == 5100 - 1200
    assert report.last_year is None  # no history a year back
    assert (report.retained_members, report.retention_window_complete) == (1, True)
    assert report.cost_per_retained_member_minor == 1500
    with pytest.raises(PatronError):
        sales.promotion_report(session, clock=clock, actor=till(world), promotion_id=p.id)


def test_last_years_figures_appear_once_the_history_reaches_back(
    session: Session, clock: FixedClock, world: World, shop: Shop
) -> None:
    m = make_member(session, clock, world.store_a)
    sell(session, clock, till(world), m, [("B", 2)])
    clock.advance(timedelta(days=366))
    p = promo(session, clock, world, _configs(shop)["nth_item"][0])
    since = clock.now() - timedelta(days=1)
    sell(session, clock, till(world), m, [("A", 2)])
    report = sales.promotion_report(session, clock=clock, actor=owner(world),
                                    promotion_id=p.id, since=since,
                                    until=clock.now() + timedelta(hours=1))
    assert report.last_year is not None and report.last_year.net_sales_minor == 1200
    assert report.incremental_sales_vs_last_year_minor == 1500 - 1200
    assert report.retention_window_complete is False


# ---------------------------------------------------------------- paid-plan perks


def test_a_plan_members_price_goes_to_payers_and_to_tiers_that_include_the_plan(
    session: Session, clock: FixedClock, world: World, shop: Shop
) -> None:
    from patron.loyalty import membership, perks
    from patron.loyalty.models import Membership, MemberTier

    fee = make_product(session, sku="PLUS", price_minor=26_000)
    plus = membership.create_plan(session, clock=clock, actor=owner(world), code="plus",
                                  name="Plus", product_id=fee.id, duration_days=365)
    gold = loyalty.create_tier(session, clock=clock, actor=owner(world), code="gold",
                               name="Gold", rank=1, threshold=500_000)
    perks.set_tier_perks(session, clock=clock, actor=owner(world), tier_id=gold.id,
                         birthday_coupon_template_id=None, plan_ids=[plus.id])
    promo(session, clock, world, _configs(shop)["member_price"][0], name="Plus price",
          audience={"plans": ["plus"]})
    payer, gold_member, plain = (make_member(session, clock, world.store_a) for _ in range(3))
    now = clock.now()
    session.add(Membership(member_id=payer.id, plan_id=plus.id, starts_at=now,
                           ends_at=now + timedelta(days=365), status="active"))
    session.add(MemberTier(member_id=gold_member.id, tier_id=gold.id, since=now,
                           source="manual"))
    session.flush()
    paid = {m.id: sell(session, clock, till(world), m, [("A", 2)]).total_minor
            for m in (payer, gold_member, plain)}
    # gold carries no discount of its own here: only the plan's member price differs
    assert paid == {payer.id: 1600, gold_member.id: 1600, plain.id: 2000}
    books_balance(session)


def test_a_segment_promotion_prices_the_segments_members_only(
    session: Session, clock: FixedClock, world: World, shop: Shop
) -> None:
    from patron.campaigns import service as campaigns
    from patron.campaigns.schemas import SegmentCreate

    vips = campaigns.create_segment(session, clock=clock, actor=owner(world), data=SegmentCreate(
        name="VIPs", rules={"field": "tags", "op": "any", "value": ["vip"]}))
    archived = campaigns.create_segment(
        session, clock=clock, actor=owner(world),
        data=SegmentCreate(name="Everyone in A", rules={
            "field": "home_store", "value": [str(world.store_a.id)]}))
    archived.archived_at = clock.now()
    promo(session, clock, world, _configs(shop)["member_price"][0], name="VIP price",
          audience={"segments": [str(vips.id)]})
    promo(session, clock, world, _configs(shop)["nth_item"][0], name="Dead segment",
          audience={"segments": [str(archived.id)]})
    vip = make_member(session, clock, world.store_a, tags=["vip"])
    other = make_member(session, clock, world.store_a, tags=["regular"])
    paid = {m.id: sell(session, clock, till(world), m, [("A", 2)]).total_minor
            for m in (vip, other)}
    assert paid == {vip.id: 1600, other.id: 2000}  # an archived segment holds nobody
