"""The promotions engine, kind by kind, then combinations, near misses, limits and refunds.

Amounts are minor units: 1000 is 10.00. Products, categories and promotions are built by
the small factories below; the other promotion test modules import them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
from pydantic import TypeAdapter

from patron.core.errors import ValidationFailed
from patron.offers.promotions import (
    BasketLine,
    MemberFacts,
    PricedBasket,
    PricingContext,
    Promotion,
    PromotionBook,
    PromotionUsage,
    parse_promotion,
    price_basket,
    reprice_after_return,
    settle_cashback,
)

STORE = uuid.UUID(int=0x5)
MEMBER = uuid.UUID(int=0x77)
A, B, C, D = (uuid.UUID(int=0xA0 + n) for n in range(4))  # products
FOOD, DRINK = uuid.UUID(int=0xF00D), uuid.UUID(int=0xD21C)  # categories
NOON_SHANGHAI = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # a Monday, 12:00 in Shanghai


def promo(config: dict[str, Any], **spec: Any) -> Promotion:
    """A promotion from its config; ``spec`` overrides name, priority, schedule, ..."""
    data: dict[str, Any] = {"id": str(spec.pop("id", uuid.uuid4())),
                            "name": spec.pop("name", config["kind"]), "config": config}
    return parse_promotion(data | spec)


def line(line_id: str, product: uuid.UUID, price: int, quantity: int = 1,
         category: uuid.UUID | None = FOOD) -> BasketLine:
    return BasketLine(line_id, product, category, quantity, price)


def member(**overrides: Any) -> MemberFacts:
    data: dict[str, Any] = {"member_id": MEMBER, "joined_on": date(2024, 1, 1),
                            "tier_code": "gold", "previous_purchases": 3,
                            "purchases_within_days": {30: 1}} | overrides
    return MemberFacts(**data)


def context(**overrides: Any) -> PricingContext:
    data: dict[str, Any] = {"occurred_at": NOON_SHANGHAI, "store_id": STORE,
                            "store_timezone": "Asia/Shanghai", "member": member()} | overrides
    return PricingContext(**data)


def price(lines: list[BasketLine], *promotions: Promotion,
          ctx: PricingContext | None = None) -> PricedBasket:
    return price_basket(lines, context=ctx or context(), book=PromotionBook(promotions))


def ids(*products: uuid.UUID) -> list[str]:
    return [str(p) for p in products]


def saving_of(priced: PricedBasket, promotion: Promotion) -> int:
    return sum(a.saving_minor for a in priced.applied if a.promotion_id == promotion.id)


def line_of(priced: PricedBasket, line_id: str) -> Any:
    return next(ln for ln in priced.lines if ln.line_id == line_id)


# ---------------------------------------------------------------- member prices


def test_member_price_per_tier_replaces_the_shelf_price() -> None:
    p = promo({"kind": "member_price", "rules": [
        {"items": {"products": ids(A)}, "prices_minor": {"gold": 800, "silver": 900}}]})
    priced = price([line("1", A, 1000, 3)], p)
    assert priced.total_minor == 2400
    assert line_of(priced, "1").savings[0].amount_minor == 600
    silver = price([line("1", A, 1000, 3)], p, ctx=context(member=member(tier_code="silver")))
    assert silver.total_minor == 2700


def test_member_price_star_covers_other_tiers_but_not_walk_ins() -> None:
    p = promo({"kind": "member_price", "rules": [
        {"items": {"categories": [str(DRINK)]}, "percent_off": {"*": 10, "gold": 20}}]})
    basket = [line("1", A, 1000, category=DRINK)]
    assert price(basket, p).total_minor == 800
    assert price(basket, p, ctx=context(member=member(tier_code="bronze"))).total_minor == 900
    assert price(basket, p, ctx=context(member=None)).total_minor == 1000


def test_lowest_member_price_wins_and_a_price_above_the_shelf_is_ignored() -> None:
    cheap = promo({"kind": "member_price", "rules": [
        {"items": {"products": ids(A)}, "prices_minor": {"gold": 700}}]}, priority=9)
    dear = promo({"kind": "member_price", "rules": [
        {"items": {"products": ids(A, B)}, "prices_minor": {"gold": 1200}}]}, priority=1)
    priced = price([line("a", A, 1000), line("b", B, 1000)], cheap, dear)
    assert priced.total_minor == 700 + 1000
    assert [a.promotion_id for a in priced.applied] == [cheap.id]


def test_member_price_over_its_remaining_budget_is_dropped_whole() -> None:
    p = promo({"kind": "member_price", "rules": [
        {"items": {"products": ids(A)}, "prices_minor": {"gold": 500}}]},
        limits={"budget_minor": 10_000})
    ctx = context(usage={p.id: PromotionUsage(budget_spent_minor=9_000)})
    assert price([line("1", A, 1000, 2)], p, ctx=ctx).total_minor == 1000  # 1000 fits
    assert price([line("1", A, 1000, 3)], p, ctx=ctx).total_minor == 3000  # 1500 does not


# ---------------------------------------------------------------- quantity discounts


def test_second_item_half_price() -> None:
    p = promo({"kind": "nth_item", "items": {"products": ids(A)}, "nth": 2, "percent_off": 50})
    assert price([line("1", A, 1000, 1)], p).discount_minor == 0
    assert price([line("1", A, 1000, 2)], p).discount_minor == 500
    assert price([line("1", A, 1000, 3)], p).discount_minor == 500
    assert price([line("1", A, 1000, 4)], p).discount_minor == 1000


def test_nth_item_discounts_the_cheapest_unit_of_each_group() -> None:
    p = promo({"kind": "nth_item", "items": {"categories": [str(FOOD)]}, "nth": 2,
               "percent_off": 50})
    priced = price([line("a", A, 1000), line("b", B, 600), line("c", C, 400),
                    line("d", D, 100)], p)
    assert priced.discount_minor == 300 + 50  # groups (1000, 600) and (400, 100)


def test_three_for_the_price_of_two_with_a_cap_on_applications() -> None:
    p = promo({"kind": "nth_item", "items": {"products": ids(A)}, "nth": 3, "percent_off": 100,
               "max_applications": 1})
    assert price([line("1", A, 1000, 3)], p).discount_minor == 1000
    assert price([line("1", A, 1000, 9)], p).discount_minor == 1000


def test_nth_item_per_product_does_not_mix_products() -> None:
    config = {"kind": "nth_item", "items": {"products": ids(A, B)}, "nth": 2, "percent_off": 50}
    basket = [line("a", A, 1000), line("b", B, 1000)]
    assert price(basket, promo(config)).discount_minor == 500
    assert price(basket, promo(config | {"per_product": True})).discount_minor == 0


def test_volume_tiers_by_quantity() -> None:
    p = promo({"kind": "volume", "items": {"products": ids(A)},
               "tiers": [{"min_quantity": 2, "percent_off": 5},
                         {"min_quantity": 5, "percent_off": 10}]})
    assert price([line("1", A, 1000, 1)], p).discount_minor == 0
    assert price([line("1", A, 1000, 2)], p).discount_minor == 100
    assert price([line("1", A, 1000, 4)], p).discount_minor == 200
    assert price([line("1", A, 1000, 3), line("2", A, 1000, 2)], p).discount_minor == 500


# ---------------------------------------------------------------- buy x get y


def test_buy_two_get_one_free_of_the_same_product() -> None:
    p = promo({"kind": "buy_x_get_y", "buy": {"products": ids(A)}, "buy_quantity": 2})
    assert price([line("1", A, 1000, 2)], p).discount_minor == 0
    assert price([line("1", A, 1000, 3)], p).discount_minor == 1000
    assert price([line("1", A, 1000, 7)], p).discount_minor == 2000


def test_buy_x_get_y_group_versus_basket_cheapest() -> None:
    basket = [line(f"l{n}", p_, price_) for n, (p_, price_) in enumerate(
        [(A, 1000), (B, 900), (C, 800), (D, 300), (uuid.UUID(int=1), 200),
         (uuid.UUID(int=2), 100)])]
    config = {"kind": "buy_x_get_y", "buy": {"categories": [str(FOOD)]}, "buy_quantity": 2}
    assert price(basket, promo(config)).discount_minor == 800 + 100
    assert price(basket, promo(config | {"reward_pick": "basket"})).discount_minor == 100 + 200


def test_buy_one_product_get_another_half_price() -> None:
    p = promo({"kind": "buy_x_get_y", "buy": {"products": ids(A)}, "buy_quantity": 1,
               "get": {"products": ids(B)}, "percent_off": 50})
    assert price([line("b", B, 600, 2)], p).discount_minor == 0
    assert price([line("a", A, 1000), line("b", B, 600, 2)], p).discount_minor == 300
    assert price([line("a", A, 1000, 2), line("b", B, 600, 2)], p).discount_minor == 600


def test_buy_x_get_y_with_overlapping_pools_keeps_enough_qualifiers() -> None:
    # buy anything in FOOD, get B (also FOOD) free: each application needs two units
    p = promo({"kind": "buy_x_get_y", "buy": {"categories": [str(FOOD)]}, "buy_quantity": 1,
               "get": {"products": ids(B)}})
    assert price([line("a", A, 1000), line("b", B, 500, 2)], p).discount_minor == 500
    priced = price([line("a", A, 1000), line("b", B, 500, 3)], p)
    assert priced.discount_minor == 1000  # A qualifies one B, a B qualifies another
    assert priced.applied[0].applications == 2


# ---------------------------------------------------------------- bundles


def test_bundle_of_skus_at_a_fixed_price() -> None:
    p = promo({"kind": "bundle", "price_minor": 2000, "components": [
        {"items": {"products": ids(A)}}, {"items": {"products": ids(B)}},
        {"items": {"products": ids(C)}}]})
    assert price([line("a", A, 1000), line("b", B, 900)], p).discount_minor == 0
    priced = price([line("a", A, 1000, 2), line("b", B, 900, 2), line("c", C, 700, 3)], p)
    assert priced.discount_minor == 2 * (2600 - 2000)
    assert priced.applied[0].applications == 2
    assert sum(a for _, a in priced.applied[0].line_savings) == 1200


def test_any_three_from_a_category_for_a_price_takes_the_dearest() -> None:
    p = promo({"kind": "bundle", "price_minor": 1000,
               "components": [{"items": {"categories": [str(FOOD)]}, "quantity": 3}]})
    priced = price([line("a", A, 500), line("b", B, 450), line("c", C, 400),
                    line("d", D, 100)], p)
    assert priced.discount_minor == 350
    assert line_of(priced, "d").discount_minor == 0
    assert price([line("a", A, 500, 6)], p).discount_minor == 1000


def test_bundle_is_not_formed_when_it_would_cost_more() -> None:
    p = promo({"kind": "bundle", "price_minor": 1500,
               "components": [{"items": {"products": ids(A)}, "quantity": 2}]})
    assert price([line("a", A, 700, 2)], p).discount_minor == 0


# ---------------------------------------------------------------- period discounts


def test_category_percent_and_amount_off_per_unit() -> None:
    pct = promo({"kind": "category_discount", "items": {"categories": [str(DRINK)]},
                 "percent_off": 15})
    off = promo({"kind": "category_discount", "items": {"products": ids(B)},
                 "amount_off_minor": 300})
    priced = price([line("a", A, 1000, 2, category=DRINK), line("b", B, 200, 3)], pct, off)
    assert saving_of(priced, pct) == 300
    assert saving_of(priced, off) == 600  # 3 x 300 capped at the line's 600
    assert line_of(priced, "b").total_minor == 0


def test_category_discount_applies_to_what_member_prices_left() -> None:
    mp = promo({"kind": "member_price", "rules": [
        {"items": {"products": ids(A)}, "prices_minor": {"gold": 800}}]})
    cat = promo({"kind": "category_discount", "items": {"categories": [str(FOOD)]},
                 "percent_off": 10})
    priced = price([line("a", A, 1000)], mp, cat)
    assert [a.kind for a in priced.applied] == ["member_price", "category_discount"]
    assert priced.total_minor == 720


# ---------------------------------------------------------------- spend thresholds


def test_spend_x_get_y_off_takes_the_highest_step_reached() -> None:
    p = promo({"kind": "spend_discount", "steps": [
        {"spend_minor": 10_000, "amount_off_minor": 1_000},
        {"spend_minor": 20_000, "amount_off_minor": 3_000}]})
    assert price([line("a", A, 9_999)], p).discount_minor == 0
    assert price([line("a", A, 10_000)], p).discount_minor == 1_000
    assert price([line("a", A, 25_000)], p).discount_minor == 3_000


def test_spend_every_multiple_and_percent_with_cap() -> None:
    every = promo({"kind": "spend_discount", "repeat": True,
                   "steps": [{"spend_minor": 10_000, "amount_off_minor": 1_000}]})
    assert price([line("a", A, 35_000)], every).discount_minor == 3_000
    pct = promo({"kind": "spend_discount", "items": {"products": ids(A)},
                 "steps": [{"spend_minor": 5_000, "percent_off": 10, "cap_minor": 800}]})
    assert price([line("a", A, 6_000), line("b", B, 9_000)], pct).discount_minor == 600
    assert price([line("a", A, 9_000)], pct).discount_minor == 800


def test_spend_threshold_reads_the_spend_after_period_discounts() -> None:
    cat = promo({"kind": "category_discount", "items": {"categories": [str(FOOD)]},
                 "percent_off": 10})
    spend = promo({"kind": "spend_discount",
                   "steps": [{"spend_minor": 10_000, "amount_off_minor": 1_000}]})
    assert saving_of(price([line("a", A, 10_500)], cat, spend), spend) == 0
    assert saving_of(price([line("a", A, 11_200)], cat, spend), spend) == 1_000


def test_spend_gift_adds_a_zero_price_line() -> None:
    gift_product = uuid.UUID(int=0x61F7)
    p = promo({"kind": "spend_gift", "spend_minor": 20_000, "gift_product_id": str(gift_product),
               "gift_quantity": 2, "gift_value_minor": 500})
    assert price([line("a", A, 19_999)], p).gifts == ()
    priced = price([line("a", A, 20_000)], p)
    (gift,) = priced.gifts
    assert (gift.product_id, gift.quantity, gift.unit_price_minor) == (gift_product, 2, 0)
    assert gift.line_id == f"gift:{p.id}"
    assert priced.total_minor == 20_000
    assert priced.applied[0].gift_value_minor == 1_000


# ---------------------------------------------------------------- cashback


def test_fifth_purchase_in_thirty_days_returns_five_percent() -> None:
    p = promo({"kind": "cashback", "purchase_number": 5, "window_days": 30, "percent": 5})
    basket = [line("a", A, 10_000)]
    fifth = price(basket, p, ctx=context(member=member(purchases_within_days={30: 4})))
    assert fifth.cashback_minor == 500
    assert fifth.total_minor == 10_000  # cashback goes to the wallet, not off the price
    fourth = price(basket, p, ctx=context(member=member(purchases_within_days={30: 3})))
    assert fourth.cashback == ()
    sixth = price(basket, p, ctx=context(member=member(purchases_within_days={30: 5})))
    assert sixth.cashback == ()


def test_cashback_modes_cap_and_unknown_window() -> None:
    every = promo({"kind": "cashback", "purchase_number": 3, "window_days": 7, "percent": 10,
                   "mode": "every_nth", "cap_minor": 300})
    basket = [line("a", A, 10_000)]
    counts = {n: price(basket, every, ctx=context(member=member(purchases_within_days={7: n})))
              .cashback_minor for n in range(7)}
    assert counts == {0: 0, 1: 0, 2: 300, 3: 0, 4: 0, 5: 300, 6: 0}
    from_nth = promo({"kind": "cashback", "purchase_number": 2, "window_days": 7, "percent": 1,
                      "mode": "from_nth"})
    assert price(basket, from_nth, ctx=context(member=member(purchases_within_days={7: 9}))
                 ).cashback_minor == 100
    # the caller did not count purchases in this window: no cashback rather than a guess
    assert price(basket, from_nth, ctx=context(member=member(purchases_within_days={30: 9}))
                 ).cashback == ()


def test_cashback_is_settled_on_what_was_finally_paid() -> None:
    p = promo({"kind": "cashback", "purchase_number": 1, "window_days": 30, "percent": 5,
               "mode": "from_nth", "items": {"products": ids(A)}})
    priced = price([line("a", A, 10_000), line("b", B, 4_000)], p)
    assert priced.cashback[0].base_minor == 10_000
    (settled,) = settle_cashback(priced, paid_by_line={"a": 9_000, "b": 3_000})
    assert (settled.base_minor, settled.amount_minor) == (9_000, 450)


# ---------------------------------------------------------------- customer conditions


def test_first_purchase_only_and_membership_age_conditions() -> None:
    config = {"kind": "category_discount", "items": {"categories": [str(FOOD)]},
              "percent_off": 10}
    first = promo(config, audience={"first_purchase_only": True})
    loyal = promo(config, audience={"min_member_days": 365})
    new = promo(config, audience={"max_member_days": 30})
    basket = [line("a", A, 1000)]
    newcomer = context(member=member(previous_purchases=0, joined_on=date(2026, 11, 20)))
    veteran = context(member=member(previous_purchases=40, joined_on=date(2020, 1, 1)))
    assert price(basket, first, ctx=newcomer).discount_minor == 100
    assert price(basket, first, ctx=veteran).discount_minor == 0
    assert price(basket, loyal, ctx=veteran).discount_minor == 100
    assert price(basket, loyal, ctx=newcomer).discount_minor == 0
    assert price(basket, new, ctx=newcomer).discount_minor == 100
    assert price(basket, new, ctx=veteran).discount_minor == 0
    assert price(basket, first, ctx=context(member=None)).discount_minor == 0


# ---------------------------------------------------------------- combinations


def test_each_unit_is_consumed_by_one_unit_promotion_in_priority_order() -> None:
    bxgy = promo({"kind": "buy_x_get_y", "buy": {"products": ids(A)}, "buy_quantity": 1},
                 priority=1)
    half = promo({"kind": "nth_item", "items": {"products": ids(A)}, "nth": 2,
                  "percent_off": 50}, priority=2)
    priced = price([line("a", A, 1000, 5)], bxgy, half)
    assert saving_of(priced, bxgy) == 2000  # units 1-4
    assert saving_of(priced, half) == 0  # one unit left: no pair
    priced = price([line("a", A, 1000, 6)], half.model_copy(update={"priority": 0}), bxgy)
    assert saving_of(priced, half) == 1500
    assert saving_of(priced, bxgy) == 0


def test_best_exclusive_promotion_wins_and_non_exclusive_ones_still_stack() -> None:
    small = promo({"kind": "category_discount", "items": {"products": ids(A)},
                   "percent_off": 10}, exclusive=True, priority=1)
    big = promo({"kind": "buy_x_get_y", "buy": {"products": ids(A)}, "buy_quantity": 1},
                exclusive=True, priority=5)
    spend = promo({"kind": "spend_discount",
                   "steps": [{"spend_minor": 1_000, "amount_off_minor": 100}]})
    priced = price([line("a", A, 1000, 2)], small, big, spend)
    assert {a.promotion_id for a in priced.applied} == {big.id, spend.id}
    assert priced.total_minor == 1000 - 100


def test_exclusive_ties_go_to_the_lower_priority_number_then_the_smaller_id() -> None:
    config = {"kind": "category_discount", "items": {"products": ids(A)}, "percent_off": 10}
    first = promo(config, exclusive=True, priority=3, id=uuid.UUID(int=9))
    second = promo(config, exclusive=True, priority=7, id=uuid.UUID(int=1))
    assert price([line("a", A, 1000)], second, first).applied[0].promotion_id == first.id
    twin = promo(config, exclusive=True, priority=3, id=uuid.UUID(int=2))
    assert price([line("a", A, 1000)], first, twin).applied[0].promotion_id == twin.id


def test_an_exclusive_promotion_that_displaces_more_than_it_gives_is_not_chosen() -> None:
    bundle = promo({"kind": "bundle", "price_minor": 1500,
                    "components": [{"items": {"products": ids(A)}, "quantity": 2}]},
                   exclusive=True, priority=1)
    bogof = promo({"kind": "buy_x_get_y", "buy": {"products": ids(A)}, "buy_quantity": 1},
                  priority=2)
    priced = price([line("a", A, 1000, 2)], bundle, bogof)
    assert [a.promotion_id for a in priced.applied] == [bogof.id]
    assert priced.total_minor == 1000


def test_coupons_are_blocked_by_a_promotion_that_does_not_stack_with_them() -> None:
    blocking = promo({"kind": "category_discount", "items": {"products": ids(A)},
                      "percent_off": 10}, stackable_with_coupons=False)
    friendly = promo({"kind": "category_discount", "items": {"products": ids(B)},
                      "percent_off": 10})
    priced = price([line("a", A, 1000), line("b", B, 1000)], blocking, friendly)
    assert priced.coupons_allowed is False
    assert (line_of(priced, "a").coupons_allowed, line_of(priced, "b").coupons_allowed) \
        == (False, True)
    assert price([line("b", B, 1000)], blocking, friendly).coupons_allowed is True


def test_every_saving_is_split_over_lines_exactly() -> None:
    spend = promo({"kind": "spend_discount",
                   "steps": [{"spend_minor": 100, "amount_off_minor": 100}]})
    priced = price([line("a", A, 333), line("b", B, 333), line("c", C, 334)], spend)
    assert sorted(a for _, a in priced.applied[0].line_savings) == [33, 33, 34]
    assert sum(ln.discount_minor for ln in priced.lines) == priced.discount_minor == 100


def test_lines_come_back_in_the_callers_order() -> None:
    priced = price([line("z", B, 100), line("a", A, 200)])
    assert [ln.line_id for ln in priced.lines] == ["z", "a"]
    assert (priced.subtotal_minor, priced.total_minor) == (300, 300)


def test_bad_lines_are_refused_naming_the_field() -> None:
    with pytest.raises(ValidationFailed) as err:
        price([line("a", A, 100), line("a", B, 100)])
    assert err.value.field == "lines.1.line_id"
    with pytest.raises(ValidationFailed) as err:
        price([line("a", A, 100, 0)])
    assert err.value.field == "lines.0.quantity"


def test_priced_basket_and_context_round_trip_through_json() -> None:
    p = promo({"kind": "buy_x_get_y", "buy": {"products": ids(A)}, "buy_quantity": 2})
    priced = price([line("a", A, 1000, 2)], p)
    adapter = TypeAdapter(PricedBasket)
    assert adapter.validate_json(adapter.dump_json(priced)) == priced
    ctx = context(holidays=frozenset({date(2026, 10, 1)}),
                  usage={p.id: PromotionUsage(1, 2, 3)})
    ctx_adapter = TypeAdapter(PricingContext)
    assert ctx_adapter.validate_json(ctx_adapter.dump_json(ctx)) == ctx


# ---------------------------------------------------------------- near misses


def test_near_miss_add_one_more_to_get_one_free() -> None:
    p = promo({"kind": "buy_x_get_y", "buy": {"products": ids(A)}, "buy_quantity": 2})
    (miss,) = price([line("a", A, 1000, 2)], p).near_misses
    assert miss.message_key == "promotions.near_miss.buy_x_get_y"
    assert (miss.promotion_id, miss.missing_quantity, miss.products) == (p.id, 1, (A,))
    assert miss.params["get_quantity"] == 1 and miss.params["percent_off"] == 100
    assert price([line("a", A, 1000, 1)], p).near_misses == ()  # not half way yet
    assert price([line("a", A, 1000, 3)], p).near_misses == ()  # qualifies


def test_near_miss_spend_more_to_get_money_off() -> None:
    p = promo({"kind": "spend_discount", "steps": [
        {"spend_minor": 10_000, "amount_off_minor": 1_000},
        {"spend_minor": 20_000, "amount_off_minor": 2_000}]})
    (miss,) = price([line("a", A, 17_700)], p).near_misses
    assert miss.message_key == "promotions.near_miss.spend_discount"
    assert (miss.missing_minor, miss.params["amount_off_minor"]) == (2_300, 2_000)
    assert price([line("a", A, 4_000)], p).near_misses == ()
    assert price([line("a", A, 20_000)], p).near_misses == ()


def test_near_miss_for_a_gift() -> None:
    gift = promo({"kind": "spend_gift", "spend_minor": 5_000, "gift_product_id": str(D),
                  "gift_quantity": 2})
    (miss,) = price([line("a", A, 3_000)], gift).near_misses
    assert miss.message_key == "promotions.near_miss.spend_gift"
    assert miss.missing_minor == 2_000
    assert (miss.params["gift_product_id"], miss.params["gift_quantity"]) == (str(D), 2)


def test_near_misses_for_unit_promotions() -> None:
    bundle = promo({"kind": "bundle", "price_minor": 1_000, "components": [
        {"items": {"products": ids(A)}}, {"items": {"products": ids(C)}}]}, priority=1)
    half = promo({"kind": "nth_item", "items": {"products": ids(C)}, "nth": 2,
                  "percent_off": 50}, priority=2)
    vol = promo({"kind": "volume", "items": {"products": ids(B)},
                 "tiers": [{"min_quantity": 4, "percent_off": 10}]}, priority=3)
    priced = price([line("a", A, 3_000), line("b", B, 100, 3), line("c", C, 300, 3)],
                   bundle, half, vol)
    assert saving_of(priced, bundle) == 2_300  # A + the dearest C
    assert saving_of(priced, half) == 150  # the two C left
    misses = {m.promotion_id: m for m in priced.near_misses}
    assert [m.promotion_id for m in priced.near_misses] == [bundle.id, half.id, vol.id]
    assert misses[bundle.id].missing_quantity == 1  # one more A for a second bundle
    assert misses[half.id].missing_quantity == 1
    assert (misses[vol.id].missing_quantity, misses[vol.id].params["percent_off"]) == (1, 10)


# ---------------------------------------------------------------- limits and budget


def test_usage_limits_and_budget_cap() -> None:
    p = promo({"kind": "spend_discount", "steps": [{"spend_minor": 1, "amount_off_minor": 2_000}]},
              limits={"per_member": 2, "total": 100, "budget_minor": 10_000})
    basket = [line("a", A, 5_000)]
    fresh = context(usage={p.id: PromotionUsage(member_uses=1, total_uses=50)})
    assert price(basket, p, ctx=fresh).discount_minor == 2_000
    mine = context(usage={p.id: PromotionUsage(member_uses=2, total_uses=50)})
    assert price(basket, p, ctx=mine).discount_minor == 0
    everyone = context(usage={p.id: PromotionUsage(member_uses=0, total_uses=100)})
    assert price(basket, p, ctx=everyone).discount_minor == 0
    almost = context(usage={p.id: PromotionUsage(budget_spent_minor=9_500)})
    priced = price(basket, p, ctx=almost)
    assert priced.discount_minor == 500 and priced.applied[0].value_minor == 500
    assert price(basket, p, ctx=context()).discount_minor == 0  # counters missing: closed


def test_gift_beyond_the_remaining_budget_is_not_given() -> None:
    p = promo({"kind": "spend_gift", "spend_minor": 1_000, "gift_product_id": str(D),
               "gift_value_minor": 800}, limits={"budget_minor": 5_000})
    basket = [line("a", A, 2_000)]
    assert price(basket, p, ctx=context(usage={p.id: PromotionUsage(budget_spent_minor=4_200)})
                 ).gifts != ()
    assert price(basket, p, ctx=context(usage={p.id: PromotionUsage(budget_spent_minor=4_300)})
                 ).gifts == ()


# ---------------------------------------------------------------- refunds


def refund(basket: list[BasketLine], promotions: list[Promotion], returned: dict[str, int],
           **kwargs: Any) -> Any:
    book = PromotionBook(promotions)
    priced = price_basket(basket, context=context(), book=book)
    return priced, reprice_after_return(basket, priced, returned, book=book, **kwargs)


def test_returning_the_qualifying_unit_takes_back_the_free_one() -> None:
    bxgy = promo({"kind": "buy_x_get_y", "buy": {"products": ids(A)}, "buy_quantity": 2})
    priced, quote = refund([line("a", A, 1000, 3)], [bxgy], {"a": 1})
    assert priced.total_minor == 2000
    assert quote.returned_paid_minor == 667
    assert quote.discount_taken_back_minor == 667  # the two kept now cost 2000
    assert quote.refund_minor == 0


def test_returning_the_bought_item_charges_the_kept_free_item() -> None:
    bxgy = promo({"kind": "buy_x_get_y", "buy": {"products": ids(A)}, "buy_quantity": 1,
                  "get": {"products": ids(B)}})
    priced, quote = refund([line("a", A, 1000), line("b", B, 500)], [bxgy], {"a": 1})
    assert priced.total_minor == 1000
    assert quote.refund_minor == 500  # paid 1000 in all, keeps B at its full 500
    assert quote.kept.total_minor == 500
    _, free_back = refund([line("a", A, 1000), line("b", B, 500)], [bxgy], {"b": 1})
    assert free_back.refund_minor == 0  # nothing was really paid for the free B


def test_a_kept_gift_is_charged_when_the_spend_falls_below_its_threshold() -> None:
    gift = promo({"kind": "spend_gift", "spend_minor": 10_000, "gift_product_id": str(D),
                  "gift_value_minor": 1_500})
    basket = [line("a", A, 6_000), line("b", B, 6_000)]
    priced, kept_gift = refund(basket, [gift], {"a": 1})
    assert kept_gift.gift_value_taken_back_minor == 1_500
    assert kept_gift.refund_minor == 4_500
    _, gift_back = refund(basket, [gift], {"a": 1, priced.gifts[0].line_id: 1})
    assert gift_back.refund_minor == 6_000


def test_returning_everything_refunds_everything_paid() -> None:
    promotions = [
        promo({"kind": "buy_x_get_y", "buy": {"products": ids(A)}, "buy_quantity": 1}),
        promo({"kind": "spend_gift", "spend_minor": 100, "gift_product_id": str(D),
               "gift_value_minor": 50}),
        promo({"kind": "spend_discount", "steps": [{"spend_minor": 100, "amount_off_minor": 70}]}),
    ]
    basket = [line("a", A, 999, 3), line("b", B, 333, 2)]
    priced = price_basket(basket, context=context(), book=PromotionBook(promotions))
    everything = {ln.line_id: ln.quantity for ln in basket} \
        | {g.line_id: g.quantity for g in priced.gifts}
    quote = reprice_after_return(basket, priced, everything, book=PromotionBook(promotions))
    assert quote.refund_minor == priced.total_minor
    assert sum(a for _, a in quote.line_refunds) == priced.total_minor


def test_refund_uses_the_amounts_actually_paid_after_coupons() -> None:
    bxgy = promo({"kind": "buy_x_get_y", "buy": {"products": ids(A)}, "buy_quantity": 1,
                  "get": {"products": ids(B)}})
    _, quote = refund([line("a", A, 1000), line("b", B, 500), line("c", C, 800)], [bxgy],
                      {"c": 1}, paid_by_line={"a": 600, "b": 300, "c": 700})
    assert (quote.returned_paid_minor, quote.refund_minor) == (700, 700)


def test_reprice_refuses_unknown_lines_and_too_many_units() -> None:
    with pytest.raises(ValidationFailed) as err:
        refund([line("a", A, 1000)], [], {"x": 1})
    assert err.value.field == "returned.x"
    with pytest.raises(ValidationFailed):
        refund([line("a", A, 1000)], [], {"a": 2})


def test_the_book_says_which_counters_checkout_must_load() -> None:
    limited = promo({"kind": "category_discount", "items": {"products": ids(A)},
                     "percent_off": 5}, limits={"total": 10})
    cashback = promo({"kind": "cashback", "purchase_number": 5, "window_days": 30,
                      "percent": 5})
    book = PromotionBook([limited, cashback])
    assert (len(book), book.limited_ids(), book.cashback_windows()) \
        == (2, frozenset({limited.id}), frozenset({30}))
    with pytest.raises(ValueError, match="unique"):
        PromotionBook([limited, limited])


def test_the_worked_example_in_the_docs() -> None:
    """docs/promotions.md, "Order": 3 x A at 10.00 for a gold member."""
    promotions = [
        promo({"kind": "member_price", "rules": [
            {"items": {"products": ids(A)}, "prices_minor": {"gold": 800}}]}),
        promo({"kind": "buy_x_get_y", "buy": {"products": ids(A)}, "buy_quantity": 2}),
        promo({"kind": "category_discount", "items": {"categories": [str(FOOD)]},
               "percent_off": 10}),
        promo({"kind": "spend_discount",
               "steps": [{"spend_minor": 1_000, "amount_off_minor": 100}]}),
        promo({"kind": "cashback", "purchase_number": 5, "window_days": 30, "percent": 5}),
    ]
    ctx = context(member=member(purchases_within_days={30: 4}))
    priced = price([line("a", A, 1000, 3)], *promotions, ctx=ctx)
    assert [a.saving_minor for a in priced.applied] == [600, 800, 160, 100, 0]
    assert priced.total_minor == 1340
    assert priced.cashback_minor == 67
