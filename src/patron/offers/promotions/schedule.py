"""Whether a promotion may apply to this sale: schedule, audience, usage limits, budget.

Design overview
---------------
The engine never queries. Everything it needs about the moment, the store, the member and
the promotions' counters arrives in one ``PricingContext`` built by the caller:

* the moment (``occurred_at``, aware) and the store's IANA time zone: the schedule is read
  in the store's local calendar and clock (DESIGN rule 7), so "Saturdays 10:00-12:00" means
  the same thing in Shanghai and New York;
* the holiday calendar as a set of local dates (the calendar itself is maintained
  elsewhere);
* the member's facts: tier, segments, join date, purchase counts;
* per promotion, the usage counters and the budget already spent.

Checks fail closed: a promotion with a usage limit or budget whose counters are missing
from the context does not apply (``usage_unknown``) rather than risk giving too much.
Each refusal is a stable reason code, so an admin screen can say why a promotion did not
apply.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from patron.offers.promotions.schemas import (
    Audience,
    CashbackConfig,
    HolidayRule,
    Limits,
    MemberPriceConfig,
    Promotion,
    Schedule,
)


@dataclass(frozen=True)
class MemberFacts:
    """What the engine may know about the identified member, as of the sale.

    ``previous_purchases`` counts completed purchases before this one (0 = this is the
    first). ``purchases_within_days`` maps a window length in days to the number of
    purchases in the window ending now, this one excluded; cashback promotions read the
    window they are configured with (``PromotionBook.cashback_windows``).
    """

    member_id: uuid.UUID
    joined_on: date
    tier_code: str | None = None
    plan_codes: frozenset[str] = frozenset()  # paid plans whose perks the member has now
    segment_ids: frozenset[uuid.UUID] = frozenset()
    previous_purchases: int = 0
    purchases_within_days: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PromotionUsage:
    """Counters of one promotion before this sale: its uses and the budget already spent."""

    member_uses: int = 0
    total_uses: int = 0
    budget_spent_minor: int = 0


@dataclass(frozen=True)
class PricingContext:
    """Everything about the sale the engine reads besides the basket and the promotions."""

    occurred_at: datetime
    store_id: uuid.UUID
    store_timezone: str
    member: MemberFacts | None = None
    holidays: frozenset[date] = frozenset()
    usage: Mapping[uuid.UUID, PromotionUsage] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None or self.occurred_at.utcoffset() is None:
            raise ValueError("occurred_at needs a time zone")

    def local_moment(self) -> datetime:
        """The sale's moment on the store's wall clock."""
        return self.occurred_at.astimezone(ZoneInfo(self.store_timezone))


class Refusal(StrEnum):
    """Why a promotion does not apply to this sale (stable codes for screens and logs)."""

    NOT_STARTED = "not_started"
    ENDED = "ended"
    WRONG_DAY = "wrong_day_of_week"
    OUTSIDE_HOURS = "outside_hours"
    HOLIDAY = "holiday"
    NOT_HOLIDAY = "not_holiday"
    WRONG_STORE = "wrong_store"
    MEMBERS_ONLY = "members_only"
    WRONG_TIER = "wrong_tier"
    NOT_A_PLAN_MEMBER = "not_a_plan_member"
    NOT_IN_SEGMENT = "not_in_segment"
    NOT_FIRST_PURCHASE = "not_first_purchase"
    MEMBER_TOO_NEW = "member_too_new"
    MEMBER_TOO_OLD = "member_too_old"
    USAGE_UNKNOWN = "usage_unknown"
    MEMBER_LIMIT = "member_limit_reached"
    TOTAL_LIMIT = "total_limit_reached"
    BUDGET_SPENT = "budget_spent"
    PURCHASES_UNKNOWN = "purchase_count_unknown"


def schedule_refusal(schedule: Schedule, *, local: datetime,
                     holidays: frozenset[date]) -> Refusal | None:
    """Why ``schedule`` is closed at the local moment ``local``, or None when it is open."""
    today = local.date()
    if schedule.starts_on is not None and today < schedule.starts_on:
        return Refusal.NOT_STARTED
    if schedule.ends_on is not None and today > schedule.ends_on:
        return Refusal.ENDED
    if schedule.days_of_week and today.isoweekday() not in schedule.days_of_week:
        return Refusal.WRONG_DAY
    if schedule.hours:
        moment = local.time().replace(tzinfo=None)
        if not any(window.contains(moment) for window in schedule.hours):
            return Refusal.OUTSIDE_HOURS
    if schedule.holidays is HolidayRule.ONLY and today not in holidays:
        return Refusal.NOT_HOLIDAY
    if schedule.holidays is HolidayRule.EXCEPT and today in holidays:
        return Refusal.HOLIDAY
    return None


def audience_refusal(audience: Audience, *, store_id: uuid.UUID, member: MemberFacts | None,
                     today_on: date) -> Refusal | None:
    """Why this store or buyer is outside ``audience``, or None."""
    if audience.stores and store_id not in audience.stores:
        return Refusal.WRONG_STORE
    if not audience.needs_member:
        return None
    if member is None:
        return Refusal.MEMBERS_ONLY
    if audience.tiers and member.tier_code not in audience.tiers:
        return Refusal.WRONG_TIER
    if audience.plans and audience.plans.isdisjoint(member.plan_codes):
        return Refusal.NOT_A_PLAN_MEMBER
    if audience.segments and audience.segments.isdisjoint(member.segment_ids):
        return Refusal.NOT_IN_SEGMENT
    if audience.first_purchase_only and member.previous_purchases > 0:
        return Refusal.NOT_FIRST_PURCHASE
    member_days = (today_on - member.joined_on).days
    if audience.min_member_days is not None and member_days < audience.min_member_days:
        return Refusal.MEMBER_TOO_NEW
    if audience.max_member_days is not None and member_days > audience.max_member_days:
        return Refusal.MEMBER_TOO_OLD
    return None


def remaining_budget(limits: Limits, usage: PromotionUsage | None) -> int | None:
    """What the promotion may still give away (None: no budget cap)."""
    if limits.budget_minor is None:
        return None
    spent = usage.budget_spent_minor if usage is not None else limits.budget_minor
    return max(0, limits.budget_minor - spent)


def limits_refusal(limits: Limits, *, usage: PromotionUsage | None,
                   member: MemberFacts | None) -> Refusal | None:
    """Why the usage limits or the budget stop the promotion, or None."""
    if not limits.limited:
        return None
    if limits.per_member is not None and member is None:
        return Refusal.MEMBERS_ONLY  # a per-member limit cannot be counted for a walk-in
    if usage is None:
        return Refusal.USAGE_UNKNOWN
    if limits.per_member is not None and usage.member_uses >= limits.per_member:
        return Refusal.MEMBER_LIMIT
    if limits.total is not None and usage.total_uses >= limits.total:
        return Refusal.TOTAL_LIMIT
    if remaining_budget(limits, usage) == 0:
        return Refusal.BUDGET_SPENT
    return None


def refusal(promotion: Promotion, context: PricingContext,
            local: datetime | None = None) -> Refusal | None:
    """Why ``promotion`` cannot apply to this sale at all, or None when it may.

    Whether the basket meets the promotion's terms is the engine's business; this only
    looks at the moment, the store, the buyer and the counters. ``local`` is
    ``context.local_moment()``, passed in when the caller already has it.
    """
    if local is None:
        local = context.local_moment()
    found = schedule_refusal(promotion.schedule, local=local, holidays=context.holidays)
    if found is None:
        found = audience_refusal(promotion.audience, store_id=context.store_id,
                                 member=context.member, today_on=local.date())
    if found is None:
        config = promotion.config
        if isinstance(config, MemberPriceConfig | CashbackConfig) and context.member is None:
            found = Refusal.MEMBERS_ONLY
        elif isinstance(config, CashbackConfig) and context.member is not None \
                and config.window_days not in context.member.purchases_within_days:
            found = Refusal.PURCHASES_UNKNOWN
    if found is None:
        found = limits_refusal(promotion.limits, usage=context.usage.get(promotion.id),
                               member=context.member)
    return found
