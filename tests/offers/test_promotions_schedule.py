"""Schedules, audiences and limits, read in the store's time zone; and config validation.

Every schedule dimension is checked in a zone east of UTC (Asia/Shanghai, +8, no DST) and
one west of it with DST (America/New_York), at moments where the local date, weekday or
hour differs from UTC's - where a UTC-based check would get it wrong.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest

from patron.core.errors import ValidationFailed
from patron.offers.promotions import (
    PricingContext,
    PromotionBook,
    PromotionUsage,
    Refusal,
    parse_promotion,
    price_basket,
    refusal,
)
from patron.offers.promotions.schemas import parse_config
from tests.offers.test_promotions_engine import (
    FOOD,
    STORE,
    A,
    context,
    line,
    member,
    price,
    promo,
)

SHANGHAI, NEW_YORK = "Asia/Shanghai", "America/New_York"
TEN_OFF = {"kind": "category_discount", "items": {"categories": [str(FOOD)]}, "percent_off": 10}


def at(moment: datetime, zone: str, **overrides: Any) -> PricingContext:
    return context(occurred_at=moment, store_timezone=zone, **overrides)


def why(spec: dict[str, Any], ctx: PricingContext) -> Refusal | None:
    return refusal(promo(TEN_OFF, **spec), ctx)


# ---------------------------------------------------------------- dates, days, hours


@pytest.mark.parametrize(("moment", "zone", "expected"), [
    # 2026-11-10 16:30 UTC is already 11 November in Shanghai, still 10 November in New York
    (datetime(2026, 11, 10, 16, 30, tzinfo=UTC), SHANGHAI, None),
    (datetime(2026, 11, 10, 16, 30, tzinfo=UTC), NEW_YORK, Refusal.NOT_STARTED),
    # 2026-11-12 03:00 UTC is 12 November in Shanghai but the evening of the 11th in New York
    (datetime(2026, 11, 12, 3, 0, tzinfo=UTC), SHANGHAI, Refusal.ENDED),
    (datetime(2026, 11, 12, 3, 0, tzinfo=UTC), NEW_YORK, None),
])
def test_date_range_is_the_stores_local_days_inclusive(moment: datetime, zone: str,
                                                         expected: Refusal | None) -> None:
    spec = {"schedule": {"starts_on": "2026-11-11", "ends_on": "2026-11-11"}}
    assert why(spec, at(moment, zone)) == expected


@pytest.mark.parametrize(("moment", "zone", "expected"), [
    # Friday 2026-11-20 17:00 UTC: Saturday 01:00 in Shanghai, Friday 12:00 in New York
    (datetime(2026, 11, 20, 17, 0, tzinfo=UTC), SHANGHAI, None),
    (datetime(2026, 11, 20, 17, 0, tzinfo=UTC), NEW_YORK, Refusal.WRONG_DAY),
    # Sunday 2026-11-22 02:00 UTC: Sunday 10:00 in Shanghai, Saturday 21:00 in New York
    (datetime(2026, 11, 22, 2, 0, tzinfo=UTC), SHANGHAI, Refusal.WRONG_DAY),
    (datetime(2026, 11, 22, 2, 0, tzinfo=UTC), NEW_YORK, None),
])
def test_days_of_week_are_local(moment: datetime, zone: str, expected: Refusal | None) -> None:
    assert why({"schedule": {"days_of_week": [6]}}, at(moment, zone)) == expected  # Saturday


@pytest.mark.parametrize(("moment", "zone", "expected"), [
    (datetime(2026, 11, 23, 1, 0, tzinfo=UTC), SHANGHAI, None),  # 09:00 local
    (datetime(2026, 11, 23, 4, 0, tzinfo=UTC), SHANGHAI, Refusal.OUTSIDE_HOURS),  # 12:00
    (datetime(2026, 11, 23, 14, 0, tzinfo=UTC), NEW_YORK, None),  # 09:00 EST
    (datetime(2026, 11, 23, 13, 59, tzinfo=UTC), NEW_YORK, Refusal.OUTSIDE_HOURS),  # 08:59
])
def test_hours_are_the_stores_wall_clock(moment: datetime, zone: str,
                                         expected: Refusal | None) -> None:
    spec = {"schedule": {"hours": [{"start": "09:00", "end": "12:00"}]}}
    assert why(spec, at(moment, zone)) == expected


def test_hours_follow_daylight_saving_in_new_york() -> None:
    spec = {"schedule": {"hours": [{"start": "09:00", "end": "10:00"}]}}
    summer = datetime(2026, 7, 1, 13, 30, tzinfo=UTC)  # 09:30 EDT (UTC-4)
    winter = datetime(2026, 12, 1, 13, 30, tzinfo=UTC)  # 08:30 EST (UTC-5)
    assert why(spec, at(summer, NEW_YORK)) is None
    assert why(spec, at(winter, NEW_YORK)) == Refusal.OUTSIDE_HOURS
    # the repeated hour when clocks fall back (2026-11-01): both 01:30s are in 01:00-02:00
    night = {"schedule": {"hours": [{"start": "01:00", "end": "02:00"}]}}
    assert why(night, at(datetime(2026, 11, 1, 5, 30, tzinfo=UTC), NEW_YORK)) is None
    assert why(night, at(datetime(2026, 11, 1, 6, 30, tzinfo=UTC), NEW_YORK)) is None


def test_an_overnight_window_wraps_past_midnight() -> None:
    spec = {"schedule": {"hours": [{"start": "22:00", "end": "02:00"}]}}
    assert why(spec, at(datetime(2026, 11, 23, 15, 0, tzinfo=UTC), SHANGHAI)) is None  # 23:00
    assert why(spec, at(datetime(2026, 11, 23, 17, 30, tzinfo=UTC), SHANGHAI)) is None  # 01:30
    assert why(spec, at(datetime(2026, 11, 23, 18, 0, tzinfo=UTC), SHANGHAI)) \
        == Refusal.OUTSIDE_HOURS  # 02:00, the end is exclusive


def test_holidays_are_the_callers_local_dates() -> None:
    national_day = frozenset({date(2026, 10, 1)})
    # 2026-09-30 17:00 UTC is 1 October in Shanghai, still 30 September in New York
    moment = datetime(2026, 9, 30, 17, 0, tzinfo=UTC)
    only = {"schedule": {"holidays": "only"}}
    never = {"schedule": {"holidays": "except"}}
    assert why(only, at(moment, SHANGHAI, holidays=national_day)) is None
    assert why(only, at(moment, NEW_YORK, holidays=national_day)) == Refusal.NOT_HOLIDAY
    assert why(never, at(moment, SHANGHAI, holidays=national_day)) == Refusal.HOLIDAY
    assert why(never, at(moment, NEW_YORK, holidays=national_day)) is None


def test_a_closed_schedule_keeps_the_promotion_off_the_receipt() -> None:
    p = promo(TEN_OFF, schedule={"hours": [{"start": "09:00", "end": "12:00"}]})
    basket = [line("a", A, 1000)]
    closed = at(datetime(2026, 11, 23, 10, 0, tzinfo=UTC), NEW_YORK)  # 05:00 in New York
    assert price(basket, p, ctx=closed).discount_minor == 0
    assert price(basket, p, ctx=at(datetime(2026, 11, 23, 15, 0, tzinfo=UTC), NEW_YORK)
                 ).discount_minor == 100  # 10:00


def test_member_days_count_from_the_local_date() -> None:
    # joined on 2025-11-24 local; at 2026-11-23 17:00 UTC it is the 24th in Shanghai: 365 days
    spec = {"audience": {"min_member_days": 365}}
    joined = member(joined_on=date(2025, 11, 24))
    moment = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)
    assert why(spec, at(moment, SHANGHAI, member=joined)) is None
    assert why(spec, at(moment, NEW_YORK, member=joined)) == Refusal.MEMBER_TOO_NEW


# ---------------------------------------------------------------- audience


def test_stores_tiers_and_segments() -> None:
    other_store, segment = uuid.UUID(int=0x99), uuid.UUID(int=0x5E6)
    ctx = context()
    assert why({"audience": {"stores": [str(STORE)]}}, ctx) is None
    assert why({"audience": {"stores": [str(other_store)]}}, ctx) == Refusal.WRONG_STORE
    assert why({"audience": {"tiers": ["gold"]}}, ctx) is None
    assert why({"audience": {"tiers": ["silver"]}}, ctx) == Refusal.WRONG_TIER
    assert why({"audience": {"segments": [str(segment)]}}, ctx) == Refusal.NOT_IN_SEGMENT
    in_segment = context(member=member(segment_ids=frozenset({segment})))
    assert why({"audience": {"segments": [str(segment)]}}, in_segment) is None
    walk_in = context(member=None)
    assert why({"audience": {"tiers": ["gold"]}}, walk_in) == Refusal.MEMBERS_ONLY
    assert why({"audience": {"members_only": True}}, walk_in) == Refusal.MEMBERS_ONLY
    assert why({}, walk_in) is None


def test_paid_plan_audience_needs_the_plans_perks() -> None:
    spec = {"audience": {"plans": ["plus"]}}
    assert why(spec, context()) == Refusal.NOT_A_PLAN_MEMBER
    assert why(spec, context(member=member(plan_codes=frozenset({"plus"})))) is None
    assert why(spec, context(member=member(plan_codes=frozenset({"basic"})))) \
        == Refusal.NOT_A_PLAN_MEMBER
    assert why(spec, context(member=None)) == Refusal.MEMBERS_ONLY


def test_customer_conditions() -> None:
    first = {"audience": {"first_purchase_only": True}}
    assert why(first, context(member=member(previous_purchases=0))) is None
    assert why(first, context(member=member(previous_purchases=1))) \
        == Refusal.NOT_FIRST_PURCHASE
    old = {"audience": {"max_member_days": 30}}
    assert why(old, context(member=member(joined_on=date(2026, 1, 1)))) \
        == Refusal.MEMBER_TOO_OLD


def test_member_kinds_need_a_member() -> None:
    mp = promo({"kind": "member_price", "rules": [
        {"items": {"products": [str(A)]}, "percent_off": {"*": 5}}]})
    assert refusal(mp, context(member=None)) == Refusal.MEMBERS_ONLY
    cb = promo({"kind": "cashback", "purchase_number": 2, "window_days": 14, "percent": 3})
    assert refusal(cb, context(member=None)) == Refusal.MEMBERS_ONLY
    assert refusal(cb, context()) == Refusal.PURCHASES_UNKNOWN
    assert refusal(cb, context(member=member(purchases_within_days={14: 0}))) is None


# ---------------------------------------------------------------- limits


def test_usage_limits_fail_closed_without_counters() -> None:
    p = promo(TEN_OFF, limits={"per_member": 1, "total": 10, "budget_minor": 1_000})
    assert refusal(p, context()) == Refusal.USAGE_UNKNOWN
    assert refusal(p, context(member=None)) == Refusal.MEMBERS_ONLY
    use = {"member_uses": 0, "total_uses": 0, "budget_spent_minor": 0}
    assert refusal(p, context(usage={p.id: PromotionUsage(**use)})) is None
    assert refusal(p, context(usage={p.id: PromotionUsage(**use | {"member_uses": 1})})) \
        == Refusal.MEMBER_LIMIT
    assert refusal(p, context(usage={p.id: PromotionUsage(**use | {"total_uses": 10})})) \
        == Refusal.TOTAL_LIMIT
    assert refusal(p, context(usage={p.id: PromotionUsage(
        **use | {"budget_spent_minor": 1_000})})) == Refusal.BUDGET_SPENT


def test_unlimited_promotions_need_no_counters() -> None:
    p = promo(TEN_OFF)
    priced = price_basket([line("a", A, 1000)], context=context(member=None),
                          book=PromotionBook([p]))
    assert priced.discount_minor == 100


def test_context_needs_an_aware_moment() -> None:
    with pytest.raises(ValueError, match="time zone"):
        context(occurred_at=datetime(2026, 11, 23, 12, 0))


# ---------------------------------------------------------------- validation names the field


def field_of(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationFailed) as err:
        parse_promotion({"id": str(uuid.uuid4()), "name": "x"} | data)
    assert err.value.field is not None
    return err.value.field


def test_validation_errors_name_the_field() -> None:
    assert field_of({"config": {"kind": "spend_discount", "steps": [
        {"spend_minor": 100, "amount_off_minor": 10},
        {"spend_minor": 0, "amount_off_minor": 20}]}}) == "config.steps.1.spend_minor"
    assert field_of({"config": {"kind": "spend_discount", "steps": [
        {"spend_minor": 100, "amount_off_minor": 10, "percent_off": 5}]}}) \
        == "config.steps.0.percent_off"
    assert field_of({"config": {"kind": "member_price", "rules": [
        {"items": {"products": [str(A)]}}]}}) == "config.rules.0.percent_off"
    assert field_of({"config": {"kind": "nth_item", "items": {}, "nth": 2,
                                "percent_off": 50}}) == "config.items"
    assert field_of({"config": {"kind": "bundle", "price_minor": 5, "components": [
        {"items": {"products": [str(A)]}}]}}) == "config.components"
    assert field_of({"config": {"kind": "volume", "items": {"products": [str(A)]}, "tiers": [
        {"min_quantity": 3, "percent_off": 5}, {"min_quantity": 2, "percent_off": 10}]}}) \
        == "config.tiers"
    assert field_of({"config": {"kind": "teleport"}}) == "config"
    assert field_of({"config": TEN_OFF | {"percentoff": 3}}) == "config.percentoff"
    assert field_of({"config": TEN_OFF, "schedule": {
        "starts_on": "2026-12-01", "ends_on": "2026-11-01"}}) == "schedule.ends_on"
    assert field_of({"config": TEN_OFF, "schedule": {
        "hours": [{"start": "09:00", "end": "09:00"}]}}) == "schedule.hours.0.end"
    assert field_of({"config": TEN_OFF, "schedule": {"days_of_week": [0]}}) \
        == "schedule.days_of_week.0"
    assert field_of({"config": TEN_OFF, "audience": {
        "min_member_days": 30, "max_member_days": 10}}) == "audience.max_member_days"
    assert field_of({"config": {"kind": "spend_discount", "repeat": True, "steps": [
        {"spend_minor": 100, "percent_off": 5}]}}) == "config.repeat"


def test_the_config_column_validates_alone() -> None:
    assert parse_config(TEN_OFF).kind == "category_discount"
    with pytest.raises(ValidationFailed) as err:
        parse_config({"kind": "cashback", "purchase_number": 0, "window_days": 30,
                      "percent": 5})
    assert err.value.field == "config.purchase_number"
    assert [p.field for p in err.value.problems] == ["config.purchase_number"]
