"""Pure points and tier rules: how many points a basket earns, when they expire, which tier.

Earning: a line earns ``amount_minor / minor_per_major * points_per_major`` points times
its multipliers (product over category, the best active promotion, the member's tier, the
birthday month), all in percent. The whole basket is summed as an exact fraction and
rounded once with the programme's rounding rule, so a basket split into more lines never
earns more or less than the same basket in one line.
"""

from __future__ import annotations

import calendar
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

from patron.loyalty.enums import ExpiryPolicy, Rounding

#: Codes of tiers and paid plans: they go into promotions, segments and URLs as they are.
CODE_PATTERN = r"^[a-z0-9_-]{1,32}$"


@dataclass(frozen=True)
class EarnLine:
    amount_minor: int  # what the customer paid for the line, after discounts
    product_id: uuid.UUID
    category_id: uuid.UUID


@dataclass(frozen=True)
class Multiplier:
    scope: str  # all, category, product
    target_id: uuid.UUID | None
    pct: int
    starts_at: datetime | None = None
    ends_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return (self.starts_at is None or self.starts_at <= now) and (
            self.ends_at is None or now < self.ends_at)


def round_points(value: Fraction, rounding: Rounding) -> int:
    if rounding is Rounding.FLOOR:
        return value.numerator // value.denominator
    if rounding is Rounding.CEIL:
        return -((-value.numerator) // value.denominator)
    return int((value + Fraction(1, 2)).__floor__())


def points_for(lines: Iterable[EarnLine], *, points_per_major: int, minor_per_major: int,
               multipliers: Sequence[Multiplier], tier_pct: int, birthday_pct: int | None,
               now: datetime, rounding: Rounding) -> int:
    """Points a basket earns (see the module docstring)."""
    active = [m for m in multipliers if m.active(now)]
    by_product = {m.target_id: m.pct for m in active if m.scope == "product"}
    by_category = {m.target_id: m.pct for m in active if m.scope == "category"}
    promo = max((m.pct for m in active if m.scope == "all"), default=100)
    total = Fraction(0)
    for line in lines:
        if line.amount_minor <= 0:
            continue
        pct = by_product.get(line.product_id, by_category.get(line.category_id, 100))
        total += Fraction(line.amount_minor * pct, 100)
    factor = Fraction(points_per_major, minor_per_major) * Fraction(promo, 100) \
        * Fraction(tier_pct, 100) * Fraction(birthday_pct or 100, 100)
    return max(0, round_points(total * factor, rounding))


def add_months(at: datetime, months: int) -> datetime:
    month = at.month - 1 + months
    year, month = at.year + month // 12, month % 12 + 1
    day = min(at.day, calendar.monthrange(year, month)[1])
    return at.replace(year=year, month=month, day=day)


def expires_at(earned_at: datetime, *, policy: ExpiryPolicy, months: int,
               tz: str) -> datetime | None:
    """When points earned at ``earned_at`` lapse; "end of next year" is in the brand's zone."""
    if policy is ExpiryPolicy.NEVER:
        return None
    if policy is ExpiryPolicy.MONTHS:
        return add_months(earned_at, months)
    zone = ZoneInfo(tz)
    local_year = earned_at.astimezone(zone).year
    end = datetime.combine(date(local_year + 2, 1, 1), time(0), tzinfo=zone)
    return end.astimezone(earned_at.tzinfo)


def points_value_minor(points: int, *, points_per_major_redeemed: int,
                       minor_per_major: int) -> Fraction:
    """The discount ``points`` are worth, as an exact fraction of minor units."""
    return Fraction(points * minor_per_major, points_per_major_redeemed)


@dataclass(frozen=True)
class TierRule:
    id: uuid.UUID
    rank: int
    threshold: int


def qualifying_tier(value: int, tiers: Sequence[TierRule]) -> TierRule | None:
    """The highest tier whose threshold ``value`` reaches."""
    best = None
    for tier in sorted(tiers, key=lambda t: t.rank):
        if value >= tier.threshold:
            best = tier
    return best


def held_until(now: datetime, *, grace_days: int) -> datetime:
    """A tier reached now is kept for the next 12 months plus the grace period."""
    return add_months(now, 12) + timedelta(days=grace_days)
