"""Checkout and refunds: what moves, what is refused, and that nothing half-happens."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.auth.principal import Principal
from patron.core.clock import FixedClock
from patron.core.errors import InsufficientBalance, ValidationFailed
from patron.core.events import OutboxEvent
from patron.loyalty import service as loyalty
from patron.members.models import Member
from patron.sales import service as sales
from patron.sales.models import Sale
from patron.sales.schemas import LineIn, PaymentsIn, RefundCreate, RefundLineIn, SaleCreate
from patron.wallet import service as wallet
from patron.wallet.enums import SpendOrder
from tests.factories import World, make_member, make_product

TILL = sales.TillConfig(currency="CNY", region="CN", timezone="Asia/Shanghai",
                        spend_order=SpendOrder.PRINCIPAL_FIRST)


def _pos(world: World) -> Principal:
    return auth.principal_for_user(world.cashier_a)


def _sale(session: Session, clock: FixedClock, world: World, member: Member | None,
          lines: list[tuple[str, int]], *, cash: int | None = None, wallet_minor: int = 0,
          points: int = 0) -> Sale:
    basket = SaleCreate(member_id=member.id if member else None,
                        lines=[LineIn(sku=s, quantity=q) for s, q in lines],
                        points_to_redeem=points,
                        payments=PaymentsIn(cash_minor=cash or 0, wallet_minor=wallet_minor))
    if cash is None:  # pay the rest in cash: price the basket first
        total = _price(session, basket)
        basket.payments.cash_minor = total - wallet_minor - points
    return sales.checkout(session, clock=clock, actor=_pos(world), till=TILL, data=basket)


def _price(session: Session, basket: SaleCreate) -> int:
    from patron.catalog import queries

    products = {p.sku: p for p in queries.find_products(
        session, skus={ln.sku for ln in basket.lines if ln.sku})}
    return sum(products[ln.sku or ""].price_minor * ln.quantity for ln in basket.lines)


@pytest.fixture
def program(session: Session, clock: FixedClock, world: World) -> None:
    owner = auth.principal_for_user(world.owner)
    loyalty.update_program(session, clock=clock, actor=owner, changes={
        "points_per_major": 1, "pending_days": 7, "points_per_major_redeemed": 100,
        "expiry_policy": "months", "expiry_months": 12})


def test_checkout_earns_pending_points_and_writes_the_event(
    session: Session, clock: FixedClock, world: World, program: None
) -> None:
    make_product(session, sku="COFFEE", price_minor=4550)
    m = make_member(session, clock, world.store_a)
    sale = _sale(session, clock, world, m, [("COFFEE", 2)])
    assert sale.total_minor == 9100
    assert sale.points_earned == 91  # 1 point per yuan, floor
    bal = loyalty.balance(session, clock=clock, member_id=m.id)
    assert (bal.available, bal.pending) == (0, 91)  # inside the 7-day return window
    clock.advance(timedelta(days=7))
    assert loyalty.balance(session, clock=clock, member_id=m.id).available == 91
    events = session.scalars(select(OutboxEvent.type)).all()
    assert "sale.completed" in events
    r = sales.receipt(session, clock=clock, sale=sale, currency="CNY")
    assert r.points_available == 91
    assert [p.method for p in r.payments] == ["cash"]


def test_bad_baskets_are_refused_naming_the_field_and_write_nothing(
    session: Session, clock: FixedClock, world: World, program: None
) -> None:
    make_product(session, sku="TEA", price_minor=1000)
    m = make_member(session, clock, world.store_a)
    cases = [
        (SaleCreate(lines=[LineIn(sku="NOPE", quantity=1)],
                    payments=PaymentsIn(cash_minor=1000)), "lines.0.sku"),
        (SaleCreate(lines=[LineIn(sku="TEA", quantity=1)],
                    payments=PaymentsIn(cash_minor=999)), "payments"),
        (SaleCreate(member_id=m.id, lines=[LineIn(sku="TEA", quantity=1)], points_to_redeem=100,
                    payments=PaymentsIn(cash_minor=999)), "points_to_redeem"),
        (SaleCreate(member_id=m.id, lines=[LineIn(sku="TEA", quantity=1)],
                    payments=PaymentsIn(wallet_minor=1000)), "payments.wallet_minor"),
        (SaleCreate(lines=[LineIn(sku="TEA", quantity=1)],
                    payments=PaymentsIn(wallet_minor=1000)), "payments.wallet_minor"),
        (SaleCreate(card_no="000000000000", lines=[LineIn(sku="TEA", quantity=1)],
                    payments=PaymentsIn(cash_minor=1000)), "card_no"),
    ]
    for data, field in cases:
        with pytest.raises((ValidationFailed, InsufficientBalance)) as err:
            sales.checkout(session, clock=clock, actor=_pos(world), till=TILL, data=data)
        assert err.value.field == field, (field, err.value.message)
    assert session.scalar(select(func.count()).select_from(Sale)) == 0


def test_points_and_wallet_pay_and_earn_only_on_the_rest(
    session: Session, clock: FixedClock, world: World, program: None
) -> None:
    make_product(session, sku="BEANS", price_minor=10_000)
    m = make_member(session, clock, world.store_a)
    wallet.top_up(session, clock=clock, actor=None, member_id=m.id, amount_minor=3_000)
    loyalty.adjust(session, clock=clock, actor=auth.principal_for_user(world.owner),
                   member_id=m.id, points=500, reason="welcome", tz="Asia/Shanghai")
    sale = _sale(session, clock, world, m, [("BEANS", 1)], wallet_minor=3_000, points=500)
    assert {p.method: p.amount_minor for p in sale.payments} == {
        "wallet": 3_000, "points": 500, "cash": 6_500}
    assert sale.points_earned == 95  # (10,000 - 500 paid in points) / 100
    assert wallet.balance(session, member_id=m.id).total_minor == 0
    assert loyalty.balance(session, clock=clock, member_id=m.id).available == 0


def test_partial_refunds_add_up_exactly_to_the_sale(
    session: Session, clock: FixedClock, world: World, program: None
) -> None:
    make_product(session, sku="A", price_minor=333)
    make_product(session, sku="B", price_minor=1001)
    m = make_member(session, clock, world.store_a)
    wallet.top_up(session, clock=clock, actor=None, member_id=m.id, amount_minor=1_000)
    sale = _sale(session, clock, world, m, [("A", 3), ("B", 2)], wallet_minor=1_000)
    assert sale.total_minor == 3001
    line_a, line_b = sale.lines
    outs = [sales.refund(session, clock=clock, actor=_pos(world), till=TILL, sale_id=sale.id,
                         data=RefundCreate(lines=[RefundLineIn(line_id=line_a.id, quantity=1)]))
            for _ in range(2)]
    outs.append(sales.refund(session, clock=clock, actor=_pos(world), till=TILL,
                             sale_id=sale.id, data=RefundCreate()))
    assert sum(o.refund.amount_minor for o in outs) == sale.total_minor
    assert sale.status == "refunded"
    assert sum(o.refund.points_clawed_back + o.refund.points_debt for o in outs) \
        == sale.points_earned
    assert sum(o.refund.wallet_returned_minor for o in outs) == 1_000
    assert wallet.balance(session, member_id=m.id).total_minor == 1_000
    with pytest.raises(ValidationFailed) as err:
        sales.refund(session, clock=clock, actor=_pos(world), till=TILL, sale_id=sale.id,
                     data=RefundCreate(lines=[RefundLineIn(line_id=line_b.id, quantity=1)]))
    assert err.value.field == "lines.0.quantity"
    assert sales.verify(session) == []
    assert loyalty.verify(session) == []
    assert wallet.verify(session) == []


def test_refund_after_the_points_were_spent_leaves_a_debt_settled_by_future_earnings(
    session: Session, clock: FixedClock, world: World, program: None
) -> None:
    make_product(session, sku="TV", price_minor=100_000)
    m = make_member(session, clock, world.store_a)
    sale = _sale(session, clock, world, m, [("TV", 1)])
    assert sale.points_earned == 1000
    clock.advance(timedelta(days=8))
    _sale(session, clock, world, m, [("TV", 1)], points=1000)  # spends all 1000 points
    out = sales.refund(session, clock=clock, actor=_pos(world), till=TILL, sale_id=sale.id,
                       data=RefundCreate())
    # all 1000 were spent and the second sale's 990 are still pending (not touched)
    assert (out.refund.points_clawed_back, out.refund.points_debt) == (0, 1000)
    bal = loyalty.balance(session, clock=clock, member_id=m.id)
    assert (bal.available, bal.pending, bal.debt) == (0, 990, 1000)
    _sale(session, clock, world, m, [("TV", 1)])  # earns 1000, all of it settles the debt
    bal = loyalty.balance(session, clock=clock, member_id=m.id)
    assert (bal.debt, bal.pending) == (0, 990)
    assert loyalty.verify(session) == []


def test_refund_of_a_points_paid_sale_returns_the_points(
    session: Session, clock: FixedClock, world: World, program: None
) -> None:
    make_product(session, sku="X", price_minor=2_000)
    m = make_member(session, clock, world.store_a)
    loyalty.adjust(session, clock=clock, actor=auth.principal_for_user(world.owner),
                   member_id=m.id, points=2_000, reason="gift", tz="Asia/Shanghai")
    sale = _sale(session, clock, world, m, [("X", 1)], points=2_000)
    assert sale.points_earned == 0
    out = sales.refund(session, clock=clock, actor=_pos(world), till=TILL, sale_id=sale.id,
                       data=RefundCreate())
    assert out.refund.points_returned == 2_000
    assert loyalty.balance(session, clock=clock, member_id=m.id).available == 2_000


def test_tier_upgrades_at_once_and_gives_its_discount_and_multiplier(
    session: Session, clock: FixedClock, world: World, program: None
) -> None:
    owner = auth.principal_for_user(world.owner)
    loyalty.create_tier(session, clock=clock, actor=owner, code="member", name="Member",
                        rank=0, threshold=0)
    loyalty.create_tier(session, clock=clock, actor=owner, code="gold", name="Gold", rank=1,
                        threshold=50_000, points_multiplier_pct=200, discount_pct=10)
    make_product(session, sku="BAG", price_minor=60_000)
    m = make_member(session, clock, world.store_a)
    first = _sale(session, clock, world, m, [("BAG", 1)])
    assert first.discount_minor == 0 and first.points_earned == 600
    assert loyalty.member_tier(session, member_id=m.id).code == "gold"  # type: ignore[union-attr]
    second = _sale(session, clock, world, m, [("BAG", 1)], cash=54_000)
    assert second.discount_minor == 6_000
    assert second.points_earned == 1_080  # 540 yuan x 2
    # downgrade only at period end, and not while the tier is held
    clock.advance(timedelta(days=200))
    for s in (first, second):
        sales.refund(session, clock=clock, actor=_pos(world), till=TILL, sale_id=s.id,
                     data=RefundCreate())
    assert loyalty.evaluate_tier(session, clock=clock, member_id=m.id,
                                 allow_downgrade=True).code == "gold"  # type: ignore[union-attr]
    clock.advance(timedelta(days=200))
    assert loyalty.evaluate_tier(session, clock=clock, member_id=m.id,
                                 allow_downgrade=True).code == "member"  # type: ignore[union-attr]


def test_daily_job_releases_warns_and_expires_lots(
    session: Session, clock: FixedClock, world: World, program: None
) -> None:
    make_product(session, sku="P", price_minor=10_000)
    m = make_member(session, clock, world.store_a)
    _sale(session, clock, world, m, [("P", 1)])
    clock.advance(timedelta(days=8))
    assert loyalty.run_daily(session, clock=clock)["released"] == 100
    clock.advance(timedelta(days=340))
    counts = loyalty.run_daily(session, clock=clock)
    assert counts["expiring_notices"] == 1
    assert loyalty.run_daily(session, clock=clock)["expiring_notices"] == 0  # once per lot
    clock.advance(timedelta(days=30))
    assert loyalty.run_daily(session, clock=clock)["expired_points"] == 100
    assert loyalty.balance(session, clock=clock, member_id=m.id).available == 0
    types = session.scalars(select(OutboxEvent.type)).all()
    assert "points.expiring" in types and "points.expired" in types
    assert loyalty.verify(session) == []


def test_checkout_stamps_the_card_and_a_refund_takes_the_stamps_back(
    session: Session, clock: FixedClock, world: World, program: None
) -> None:
    from patron.cards import service as cards
    from patron.cards.schemas import StampProgrammeCreate

    coffee = make_product(session, sku="ESPRESSO", price_minor=2_000, category_code="COFFEE")
    make_product(session, sku="CAKE", price_minor=3_000, category_code="BAKERY")
    cards.create_programme(session, clock=clock, actor=auth.principal_for_user(world.manager_a),
                           data=StampProgrammeCreate(
                               name="10th coffee free", basis="item", stamps_needed=10,
                               reward_kind="product", reward_product_id=coffee.id,
                               category_ids=[coffee.category_id]))
    m = make_member(session, clock, world.store_a)
    sale = _sale(session, clock, world, m, [("ESPRESSO", 4), ("CAKE", 1)])
    (view,) = cards.member_stamp_cards(session, clock=clock, member_id=m.id)
    assert view.card.stamps == 4  # cakes don't count
    espresso_line = next(ln for ln in sale.lines if ln.product_id == coffee.id)
    sales.refund(session, clock=clock, actor=_pos(world), till=TILL, sale_id=sale.id,
                 data=RefundCreate(lines=[RefundLineIn(line_id=espresso_line.id, quantity=1)]))
    (view,) = cards.member_stamp_cards(session, clock=clock, member_id=m.id)
    assert view.card.stamps == 3
    _sale(session, clock, world, m, [("ESPRESSO", 7)])
    (view,) = cards.member_stamp_cards(session, clock=clock, member_id=m.id)
    assert (view.card.stamps, len(view.rewards)) == (0, 1)


def test_coupon_at_checkout_is_redeemed_once_and_replaced_after_a_full_refund(
    session: Session, clock: FixedClock, world: World, program: None
) -> None:
    from patron.offers import service as offers
    from patron.offers.schemas import CouponTemplateCreate

    make_product(session, sku="SHOES", price_minor=50_000)
    m = make_member(session, clock, world.store_a)
    template = offers.create_template(
        session, clock=clock, actor=auth.principal_for_user(world.manager_a),
        data=CouponTemplateCreate(name="20 off 200", kind="fixed", amount_minor=2_000,
                                  min_spend_minor=20_000, validity="days", valid_days=30,
                                  restore_on_refund=True))
    (coupon,) = offers.issue_coupons(session, clock=clock, actor=None, template_id=template.id,
                                     member_id=m.id)
    sale = sales.checkout(session, clock=clock, actor=_pos(world), till=TILL, data=SaleCreate(
        member_id=m.id, lines=[LineIn(sku="SHOES", quantity=1)], coupon_codes=[coupon.code],
        payments=PaymentsIn(card_minor=48_000)))
    assert sale.discount_minor == 2_000
    assert [(d.kind, d.amount_minor) for d in sale.discounts] == [("coupon", 2_000)]
    with pytest.raises(ValidationFailed) as err:  # used once, ever
        sales.checkout(session, clock=clock, actor=_pos(world), till=TILL, data=SaleCreate(
            member_id=m.id, lines=[LineIn(sku="SHOES", quantity=1)],
            coupon_codes=[coupon.code], payments=PaymentsIn(card_minor=48_000)))
    assert err.value.field == "coupon_codes"
    sales.refund(session, clock=clock, actor=_pos(world), till=TILL, sale_id=sale.id,
                 data=RefundCreate())
    coupons = offers.list_member_coupons(session, member_id=m.id)
    assert any(c.code != coupon.code and c.status == "issued" for c in coupons)
    assert offers.verify(session) == []
    assert sales.verify(session) == []
