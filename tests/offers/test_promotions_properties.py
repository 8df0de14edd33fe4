"""Properties of the promotions engine over random baskets and random promotion mixes.

A small fixed catalogue (so promotions and lines meet often) and every promotion kind with
random terms, priorities and exclusivity. The properties are the ones checkout and refunds
rely on: totals never below zero, savings that add up exactly line by line, a price that
does not depend on line order, exclusive promotions that never stack and are chosen as
the best for the customer, and refunds that never pay back more than was paid.
"""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patron.offers.promotions import (
    BasketLine,
    MemberFacts,
    PricedBasket,
    PricingContext,
    Promotion,
    PromotionBook,
    parse_promotion,
    price_basket,
    reprice_after_return,
)
from tests.offers.test_promotions_engine import DRINK, FOOD, MEMBER, NOON_SHANGHAI, STORE

PRODUCTS = [(uuid.UUID(int=0x100 + n), category)
            for n, category in enumerate([FOOD, FOOD, FOOD, DRINK, DRINK, None])]
CATEGORIES = [FOOD, DRINK]
GIFT = uuid.UUID(int=0x6)
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])


@st.composite
def selectors(draw: st.DrawFn, targeted: bool = True) -> dict[str, list[str]]:
    products = draw(st.lists(st.sampled_from([str(p) for p, _ in PRODUCTS]), max_size=3,
                             unique=True))
    categories = draw(st.lists(st.sampled_from([str(c) for c in CATEGORIES]), max_size=1))
    if targeted and not products and not categories:
        products = [str(PRODUCTS[0][0])]
    return {"products": products, "categories": categories}


def percent() -> st.SearchStrategy[int]:
    return st.integers(1, 100)


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["member_price", "nth_item", "volume", "buy_x_get_y",
                                 "bundle", "category_discount", "spend_discount",
                                 "spend_gift", "cashback"]))
    if kind == "member_price":
        table = draw(st.dictionaries(st.sampled_from(["*", "gold", "silver"]),
                                     st.integers(0, 4000) if draw(st.booleans()) else percent(),
                                     min_size=1))
        form = "prices_minor" if any(v > 100 for v in table.values()) or draw(st.booleans()) \
            else "percent_off"
        if form == "percent_off":
            table = {k: max(1, min(100, v)) for k, v in table.items()}
        return {"kind": kind, "rules": [{"items": draw(selectors()), form: table}]}
    if kind == "nth_item":
        return {"kind": kind, "items": draw(selectors()), "nth": draw(st.integers(2, 4)),
                "percent_off": draw(percent()), "per_product": draw(st.booleans()),
                "max_applications": draw(st.none() | st.integers(1, 3))}
    if kind == "volume":
        low = draw(st.integers(2, 4))
        return {"kind": kind, "items": draw(selectors()),
                "tiers": [{"min_quantity": low, "percent_off": 5},
                          {"min_quantity": low + draw(st.integers(1, 4)), "percent_off": 15}]}
    if kind == "buy_x_get_y":
        return {"kind": kind, "buy": draw(selectors()), "buy_quantity": draw(st.integers(1, 3)),
                "get": draw(st.none() | selectors()), "get_quantity": draw(st.integers(1, 2)),
                "percent_off": draw(percent()),
                "reward_pick": draw(st.sampled_from(["group", "basket"])),
                "max_applications": draw(st.none() | st.integers(1, 3))}
    if kind == "bundle":
        components: list[dict[str, Any]] = draw(st.lists(st.fixed_dictionaries(
            {"items": selectors(), "quantity": st.integers(1, 3)}), min_size=1, max_size=3))
        if sum(c["quantity"] for c in components) < 2:
            components[0]["quantity"] = 2
        return {"kind": kind, "components": components, "price_minor": draw(st.integers(0, 6000))}
    if kind == "category_discount":
        if draw(st.booleans()):
            return {"kind": kind, "items": draw(selectors()), "percent_off": draw(percent())}
        return {"kind": kind, "items": draw(selectors()),
                "amount_off_minor": draw(st.integers(1, 3000))}
    if kind == "spend_discount":
        first = draw(st.integers(1, 10_000))
        steps: list[dict[str, Any]] = [
            {"spend_minor": first, "amount_off_minor": draw(st.integers(1, 5000))}]
        if draw(st.booleans()):
            steps.append({"spend_minor": first + draw(st.integers(1, 5000)),
                          "percent_off": draw(percent()),
                          "cap_minor": draw(st.none() | st.integers(1, 5000))})
        return {"kind": kind, "items": draw(selectors(targeted=False)), "steps": steps,
                "repeat": len(steps) == 1 and draw(st.booleans())}
    if kind == "spend_gift":
        return {"kind": kind, "items": draw(selectors(targeted=False)),
                "spend_minor": draw(st.integers(1, 10_000)), "gift_product_id": str(GIFT),
                "gift_quantity": draw(st.integers(1, 2)),
                "gift_value_minor": draw(st.integers(0, 2000))}
    return {"kind": kind, "items": draw(selectors(targeted=False)),
            "purchase_number": draw(st.integers(1, 3)), "window_days": 30,
            "mode": draw(st.sampled_from(["nth", "every_nth", "from_nth"])),
            "percent": draw(percent()), "cap_minor": draw(st.none() | st.integers(1, 500))}


@st.composite
def promotion_sets(draw: st.DrawFn) -> list[Promotion]:
    count = draw(st.integers(0, 7))
    ids = draw(st.lists(st.integers(1, 2**32), min_size=count, max_size=count, unique=True))
    return [parse_promotion({
        "id": str(uuid.UUID(int=n)), "name": f"p{n}", "config": draw(configs()),
        "priority": draw(st.integers(0, 3)), "exclusive": draw(st.booleans()),
        "stackable_with_coupons": draw(st.booleans())}) for n in ids]


@st.composite
def baskets(draw: st.DrawFn) -> list[BasketLine]:
    rows = draw(st.lists(st.tuples(st.sampled_from(PRODUCTS), st.integers(0, 5000),
                                   st.integers(1, 6)), min_size=1, max_size=8))
    return [BasketLine(f"L{n}", product, category, quantity, price)
            for n, ((product, category), price, quantity) in enumerate(rows)]


@st.composite
def contexts(draw: st.DrawFn) -> PricingContext:
    facts = None
    if draw(st.booleans()):
        facts = MemberFacts(member_id=MEMBER, joined_on=NOON_SHANGHAI.date(),
                            tier_code=draw(st.sampled_from([None, "gold", "silver"])),
                            purchases_within_days={30: draw(st.integers(0, 6))})
    return PricingContext(occurred_at=NOON_SHANGHAI, store_id=STORE,
                          store_timezone="Asia/Shanghai", member=facts)


def value(priced: PricedBasket) -> int:
    return sum(a.value_minor for a in priced.applied)


def fingerprint(priced: PricedBasket) -> Any:
    """Everything priced, with lines keyed by id so the caller's order does not show."""
    return (sorted((ln.line_id, ln.discount_minor, ln.total_minor, ln.savings,
                    ln.coupons_allowed) for ln in priced.lines),
            priced.applied, priced.gifts, priced.cashback, priced.near_misses,
            priced.subtotal_minor, priced.discount_minor, priced.total_minor,
            priced.coupons_allowed)


@PROPERTY_SETTINGS
@given(basket=baskets(), promotions=promotion_sets(), ctx=contexts())
def test_totals_never_go_below_zero_and_savings_add_up(
        basket: list[BasketLine], promotions: list[Promotion], ctx: PricingContext) -> None:
    priced = price_basket(basket, context=ctx, book=PromotionBook(promotions))
    assert priced.total_minor >= 0
    assert priced.total_minor == priced.subtotal_minor - priced.discount_minor
    for ln in priced.lines:
        assert 0 <= ln.total_minor <= ln.original_minor
        assert sum(s.amount_minor for s in ln.savings) == ln.discount_minor
        assert all(s.amount_minor > 0 for s in ln.savings)
    by_line: dict[tuple[str, uuid.UUID], int] = {
        (ln.line_id, s.promotion_id): s.amount_minor for ln in priced.lines for s in ln.savings}
    for applied in priced.applied:
        assert sum(a for _, a in applied.line_savings) == applied.saving_minor
        for line_id, amount in applied.line_savings:
            assert by_line[(line_id, applied.promotion_id)] == amount
    assert sum(a.saving_minor for a in priced.applied) == priced.discount_minor


@PROPERTY_SETTINGS
@given(basket=baskets(), promotions=promotion_sets(), ctx=contexts(), data=st.data())
def test_the_price_does_not_depend_on_line_order(
        basket: list[BasketLine], promotions: list[Promotion], ctx: PricingContext,
        data: st.DataObject) -> None:
    book = PromotionBook(promotions)
    shuffled = data.draw(st.permutations(basket))
    assert fingerprint(price_basket(shuffled, context=ctx, book=book)) \
        == fingerprint(price_basket(basket, context=ctx, book=book))
    shuffled_book = PromotionBook(data.draw(st.permutations(promotions)))
    assert fingerprint(price_basket(basket, context=ctx, book=shuffled_book)) \
        == fingerprint(price_basket(basket, context=ctx, book=book))


@PROPERTY_SETTINGS
@given(basket=baskets(), promotions=promotion_sets(), ctx=contexts())
def test_exclusive_promotions_never_stack_and_the_best_one_wins(
        basket: list[BasketLine], promotions: list[Promotion], ctx: PricingContext) -> None:
    priced = price_basket(basket, context=ctx, book=PromotionBook(promotions))
    assert sum(1 for a in priced.applied if a.exclusive) <= 1
    # brute force: each exclusive promotion priced as an ordinary one beside the others,
    # without the incremental trials the engine uses
    normal = [p for p in promotions if not p.exclusive]
    best = value(price_basket(basket, context=ctx, book=PromotionBook(normal)))
    for candidate in (p for p in promotions if p.exclusive):
        trial = price_basket(basket, context=ctx, book=PromotionBook(
            [*normal, candidate.model_copy(update={"exclusive": False})]))
        if any(a.promotion_id == candidate.id for a in trial.applied):
            best = max(best, value(trial))
    assert value(priced) == best


@PROPERTY_SETTINGS
@given(basket=baskets(), promotions=promotion_sets(), ctx=contexts(), data=st.data())
def test_a_refund_never_pays_back_more_than_was_paid(
        basket: list[BasketLine], promotions: list[Promotion], ctx: PricingContext,
        data: st.DataObject) -> None:
    book = PromotionBook(promotions)
    priced = price_basket(basket, context=ctx, book=book)
    returned = {ln.line_id: data.draw(st.integers(0, ln.quantity)) for ln in basket}
    returned |= {g.line_id: data.draw(st.integers(0, g.quantity)) for g in priced.gifts}
    quote = reprice_after_return(basket, priced, returned, book=book)
    assert 0 <= quote.refund_minor <= quote.returned_paid_minor <= priced.total_minor
    assert sum(a for _, a in quote.line_refunds) == quote.refund_minor
    totals = {ln.line_id: ln.total_minor for ln in priced.lines}
    for line_id, amount in quote.line_refunds:
        assert 0 <= amount <= totals.get(line_id, 0)
    assert quote.kept.total_minor >= 0


@PROPERTY_SETTINGS
@given(basket=baskets(), promotions=promotion_sets(), ctx=contexts())
def test_returning_everything_refunds_everything_paid(
        basket: list[BasketLine], promotions: list[Promotion], ctx: PricingContext) -> None:
    book = PromotionBook(promotions)
    priced = price_basket(basket, context=ctx, book=book)
    everything = {ln.line_id: ln.quantity for ln in basket} \
        | {g.line_id: g.quantity for g in priced.gifts}
    quote = reprice_after_return(basket, priced, everything, book=book)
    assert quote.refund_minor == priced.total_minor
    assert quote.kept.lines == ()
