"""Pure coupon rules: codes, windows, discounts and their split over lines."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patron.offers import rules
from patron.offers.enums import CouponKind, CouponScope, CouponStatus, Validity
from patron.offers.rules import Refusal, Terms
from tests.offers.support import line

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


# ---------------------------------------------------------------- codes


def test_codes_are_twelve_characters_without_look_alikes_and_well_formed() -> None:
    codes = {rules.new_coupon_code() for _ in range(2_000)}
    assert len(codes) == 2_000
    for code in codes:
        assert len(code) == 12
        assert not set(code) & set("01OIL")
        assert rules.is_well_formed(code, 12)


def test_check_character_catches_every_single_typo_and_neighbour_swap() -> None:
    code = rules.new_coupon_code()
    for i in range(12):
        for c in rules.ALPHABET:
            if c != code[i]:
                assert not rules.is_well_formed(code[:i] + c + code[i + 1:], 12)
    for i in range(11):
        if code[i] != code[i + 1]:
            swapped = code[:i] + code[i + 1] + code[i] + code[i + 2:]
            assert not rules.is_well_formed(swapped, 12)


def test_codes_are_read_the_way_people_type_them() -> None:
    code = rules.new_coupon_code()
    typed = " " + rules.format_code(code).lower() + " "
    assert rules.normalise_code(typed) == code
    assert rules.format_code(code).count("-") == 2
    referral = rules.new_referral_code()
    assert len(referral) == 8 and rules.is_well_formed(referral, 8)
    assert not rules.is_well_formed(referral, 12)


# ---------------------------------------------------------------- windows


def test_a_days_template_runs_from_issue_for_n_days() -> None:
    assert rules.coupon_window(validity=Validity.DAYS, starts_at=None, ends_at=None,
                               valid_days=30, issued_at=NOW) == (NOW, NOW + timedelta(days=30))


def test_a_fixed_window_starts_at_its_start_or_at_issue_whichever_is_later() -> None:
    start, end = NOW + timedelta(days=1), NOW + timedelta(days=10)
    assert rules.coupon_window(validity=Validity.FIXED, starts_at=start, ends_at=end,
                               valid_days=None, issued_at=NOW) == (start, end)
    assert rules.coupon_window(validity=Validity.FIXED, starts_at=NOW - timedelta(days=5),
                               ends_at=end, valid_days=None, issued_at=NOW) == (NOW, end)


@pytest.mark.parametrize(("status", "offset", "code"), [
    (CouponStatus.REDEEMED, 0, rules.ALREADY_REDEEMED),
    (CouponStatus.VOID, 0, rules.VOID),
    (CouponStatus.EXPIRED, 0, rules.EXPIRED),
    (CouponStatus.ISSUED, 10, rules.EXPIRED),  # at valid_until: the end is exclusive
    (CouponStatus.ISSUED, -1, rules.NOT_YET_VALID),
])
def test_unusable_coupons_are_refused_with_the_reason(status: CouponStatus, offset: int,
                                                      code: str) -> None:
    state = rules.CouponState(status, NOW, NOW + timedelta(days=10), None)
    with pytest.raises(Refusal) as err:
        rules.check_usable(state, now=NOW + timedelta(days=offset), member_id=None)
    assert err.value.code == code


def test_a_members_coupon_is_for_that_member_only() -> None:
    owner, other = uuid.uuid4(), uuid.uuid4()
    state = rules.CouponState(CouponStatus.ISSUED, NOW, NOW + timedelta(days=1), owner)
    rules.check_usable(state, now=NOW, member_id=owner)
    with pytest.raises(Refusal) as err:
        rules.check_usable(state, now=NOW, member_id=other)
    assert err.value.code == rules.OTHER_MEMBER
    with pytest.raises(Refusal) as err:
        rules.check_usable(state, now=NOW, member_id=None)
    assert err.value.code == rules.MEMBER_REQUIRED
    bearer = rules.CouponState(CouponStatus.ISSUED, NOW, NOW + timedelta(days=1), None)
    rules.check_usable(bearer, now=NOW, member_id=other)


# ---------------------------------------------------------------- discounts


def test_fixed_coupon_takes_its_amount_but_never_more_than_the_basket() -> None:
    terms = Terms(kind=CouponKind.FIXED, amount_minor=1_000)
    assert rules.discount_for(terms, [line(3_000)]).discount_minor == 1_000
    small = rules.discount_for(terms, [line(600)])
    assert (small.discount_minor, small.line_discounts) == (600, (600,))


def test_percent_coupon_rounds_half_up_and_stops_at_its_cap() -> None:
    terms = Terms(kind=CouponKind.PERCENT, percent=15)
    assert rules.discount_for(terms, [line(1_010)]).discount_minor == 152  # 151.5 -> 152
    capped = Terms(kind=CouponKind.PERCENT, percent=50, cap_minor=2_000)
    assert rules.discount_for(capped, [line(3_000)]).discount_minor == 1_500
    assert rules.discount_for(capped, [line(10_000)]).discount_minor == 2_000


def test_minimum_spend_counts_only_lines_in_scope() -> None:
    food = uuid.uuid4()
    terms = Terms(kind=CouponKind.FIXED, amount_minor=500, min_spend_minor=5_000,
                  scope=CouponScope.CATEGORIES, category_ids=frozenset({food}))
    basket = [line(4_000, category_id=food), line(9_000, category_id=uuid.uuid4())]
    with pytest.raises(Refusal) as err:
        rules.discount_for(terms, basket)
    assert err.value.code == rules.MIN_SPEND
    ok = rules.discount_for(terms, [*basket, line(1_000, category_id=food)])
    assert ok.eligible_minor == 5_000
    assert ok.line_discounts == (400, 0, 100)


def test_scope_by_product_and_nothing_in_scope() -> None:
    wanted = uuid.uuid4()
    terms = Terms(kind=CouponKind.PERCENT, percent=10, scope=CouponScope.PRODUCTS,
                  product_ids=frozenset({wanted}))
    d = rules.discount_for(terms, [line(500), line(2_000, quantity=2, product_id=wanted)])
    assert (d.eligible_minor, d.discount_minor, d.line_discounts) == (4_000, 400, (0, 400))
    with pytest.raises(Refusal) as err:
        rules.discount_for(terms, [line(500)])
    assert err.value.code == rules.NOTHING_IN_SCOPE


def test_a_discount_that_rounds_to_nothing_is_refused_not_used_up() -> None:
    terms = Terms(kind=CouponKind.PERCENT, percent=1)
    with pytest.raises(Refusal) as err:
        rules.discount_for(terms, [line(40)])
    assert err.value.code == rules.NO_DISCOUNT


def test_split_sums_exactly_where_rounding_each_part_would_not() -> None:
    # rounding 3 x 1/5 = 0.6 up on five lines would hand out 5
    assert rules.split(3, [1, 1, 1, 1, 1]) == [1, 0, 1, 0, 1]
    assert rules.split(0, [5, 5]) == [0, 0]
    assert rules.split(100, [0, 10, 0]) == [0, 100, 0]


@given(st.lists(st.integers(0, 1_000_000), min_size=1, max_size=30), st.data())
def test_split_parts_are_exact_non_negative_and_within_their_lines(
    weights: list[int], data: st.DataObject
) -> None:
    total_weight = sum(weights)
    total = data.draw(st.integers(0, total_weight))
    if total_weight == 0:
        assert rules.split(0, weights) == [0] * len(weights)
        return
    parts = rules.split(total, weights)
    assert sum(parts) == total
    assert all(0 <= p <= w for p, w in zip(parts, weights, strict=True))
    for p, w in zip(parts, weights, strict=True):  # each within one unit of its exact share
        assert abs(p * total_weight - total * w) <= total_weight


@given(
    st.lists(st.tuples(st.integers(1, 20), st.integers(0, 100_000), st.booleans()),
             min_size=1, max_size=20),
    st.sampled_from([CouponKind.FIXED, CouponKind.PERCENT]),
    st.integers(1, 100), st.integers(1, 200_000), st.one_of(st.none(), st.integers(1, 50_000)),
)
def test_any_basket_gets_a_discount_that_adds_up_and_stays_in_scope(
    raw: list[tuple[int, int, bool]], kind: CouponKind, percent: int, amount: int,
    cap: int | None,
) -> None:
    cat = uuid.uuid4()
    lines = [line(price, quantity=q, category_id=cat if inside else None)
             for q, price, inside in raw]
    terms = Terms(kind=kind, amount_minor=amount if kind is CouponKind.FIXED else None,
                  percent=percent if kind is CouponKind.PERCENT else None,
                  cap_minor=cap if kind is CouponKind.PERCENT else None,
                  scope=CouponScope.CATEGORIES, category_ids=frozenset({cat}))
    in_scope = sum(ln.total_minor for ln in lines if ln.category_id == cat)
    if in_scope == 0:
        with pytest.raises(Refusal) as err:
            rules.discount_for(terms, lines)
        assert err.value.code == rules.NOTHING_IN_SCOPE
        return
    if kind is CouponKind.PERCENT and (in_scope * percent * 2) < 100:  # rounds to 0
        with pytest.raises(Refusal) as err:
            rules.discount_for(terms, lines)
        assert err.value.code == rules.NO_DISCOUNT
        return
    d = rules.discount_for(terms, lines)
    assert sum(d.line_discounts) == d.discount_minor
    assert 0 < d.discount_minor <= d.eligible_minor
    for ln, part in zip(lines, d.line_discounts, strict=True):
        assert 0 <= part <= ln.total_minor
        if ln.category_id != cat:
            assert part == 0
    if kind is CouponKind.FIXED:
        assert d.discount_minor == min(amount, d.eligible_minor)
