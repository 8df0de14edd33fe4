"""Automatic member tags in the words shop owners use (高价值, 潜力, 沉睡, 羊毛党, 新手爸妈 …).

Design overview
---------------
Each tag is a :class:`Tag`: a code, its names in English and Chinese, a one-sentence
definition, and a rule that evaluates that definition for every member at once (NumPy over
:class:`Facts`, never a loop over members). The definition is written once, here, with
the thresholds of :class:`TagConfig` filled in, and docs/portraits.md prints the same
table; tests/analytics/test_profile.py checks each rule against hand-built members on both
sides of every threshold.

Tags are stored as bits of ``member_profiles.tag_bits``: bit *i* is ``TAGS[i]``. The order
of ``TAGS`` is therefore permanent: a new tag is appended, a retired one keeps its place.

Inputs are the member's profile (``profile``) and scores (``scores``) of the same
snapshot. "Purchases" means the member's sales with a positive net (``sales``) except
where a definition says purchase days (``MemberScore.purchases``). Shares are of net
spend unless said otherwise. "Top x %" is rank-based with ties kept together: a member is
in the top 20 % of a group when fewer than 20 % of the group have a strictly larger value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import NDArray

from patron.core.errors import ValidationFailed

Bools = NDArray[np.bool_]
Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


@dataclass(frozen=True)
class TagConfig:
    """Thresholds of the tags (the defaults are the ones documented)."""

    high_value_top: float = 0.2
    potential_top: float = 0.2
    potential_recency_days: int = 90
    new_customer_days: int = 30
    regular_sales_365: int = 12
    regular_recency_days: int = 60
    at_risk_p_alive: float = 0.5
    dormant_days: int = 180
    min_sales: int = 3  # for the tags that are shares of a member's sales or spend
    discount_hunter_share: float = 0.6
    full_price_share: float = 0.1
    family_share: float = 0.2
    new_parent_days: int = 180
    new_parent_baby_days: int = 2
    weekend_share: float = 0.7
    evening_share: float = 0.7
    multi_store_stores: int = 2
    responsive_messages: int = 3
    responsive_rate: float = 0.5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value < 0 or (isinstance(value, float) and value > 1):
                raise ValidationFailed(f"{f.name} is out of range", f.name)


@dataclass(frozen=True)
class Facts:
    """What the tags read, one entry per member (NaN where not known)."""

    sales: Ints  # sales with a positive net, whole history
    sales_365: Ints
    promo_share: Floats  # of net spend, with a coupon or a promotion
    weekend_share: Floats  # of sales
    evening_share: Floats  # of sales
    stores: Ints
    family_share: Floats  # of category spend
    baby_first_days: Floats  # days from the first baby-category purchase to as_of
    baby_days: Ints
    messages: Ints  # marketing messages with an ended response window
    acted: Ints
    purchase_days: Ints  # MemberScore.purchases
    recency_days: Floats  # MemberScore.recency_days
    tenure_days: Floats  # MemberScore.tenure_days: since the first purchase
    net_365: Ints  # MemberScore.net_365_minor
    clv: Floats  # MemberScore.clv_minor
    p_alive: Floats  # MemberScore.p_alive

    def __len__(self) -> int:
        return int(self.sales.shape[0])


def top_share(values: Floats, eligible: Bools, share: float) -> Bools:
    """Eligible members of whom fewer than ``share`` of the eligible have a strictly larger
    value (the top ``share``, ties kept together)."""
    pool = np.sort(values[eligible])
    larger = pool.shape[0] - np.searchsorted(pool, np.where(eligible, values, 0.0),
                                             side="right")
    return np.asarray(eligible & (larger < share * pool.shape[0]), dtype=bool)


def _ge(values: Floats, threshold: float) -> Bools:
    with np.errstate(invalid="ignore"):
        return np.asarray(~np.isnan(values) & (values >= threshold))


def _le(values: Floats, threshold: float) -> Bools:
    with np.errstate(invalid="ignore"):
        return np.asarray(~np.isnan(values) & (values <= threshold))


def _high_value(f: Facts, c: TagConfig) -> Bools:
    return top_share(f.net_365.astype(np.float64), f.net_365 > 0, c.high_value_top)


def _potential(f: Facts, c: TagConfig) -> Bools:
    top_clv = top_share(np.nan_to_num(f.clv), ~np.isnan(f.clv), c.potential_top)
    return ~_high_value(f, c) & top_clv & _le(f.recency_days, c.potential_recency_days)


def _new_customer(f: Facts, c: TagConfig) -> Bools:
    return _le(f.tenure_days, c.new_customer_days - 1)


def _regular(f: Facts, c: TagConfig) -> Bools:
    return (f.sales_365 >= c.regular_sales_365) & _le(f.recency_days, c.regular_recency_days)


def _at_risk(f: Facts, c: TagConfig) -> Bools:
    with np.errstate(invalid="ignore"):
        risky = ~np.isnan(f.p_alive) & (f.p_alive < c.at_risk_p_alive)
    return (f.purchase_days >= 2) & ~_dormant(f, c) & risky


def _dormant(f: Facts, c: TagConfig) -> Bools:
    with np.errstate(invalid="ignore"):
        return np.asarray(~np.isnan(f.recency_days) & (f.recency_days > c.dormant_days))


def _enough(f: Facts, c: TagConfig) -> Bools:
    return np.asarray(f.sales >= c.min_sales)


def _discount_hunter(f: Facts, c: TagConfig) -> Bools:
    return _enough(f, c) & _ge(f.promo_share, c.discount_hunter_share)


def _full_price(f: Facts, c: TagConfig) -> Bools:
    return _enough(f, c) & _le(f.promo_share, c.full_price_share)


def _family(f: Facts, c: TagConfig) -> Bools:
    return _ge(f.family_share, c.family_share)


def _new_parent(f: Facts, c: TagConfig) -> Bools:
    return _le(f.baby_first_days, c.new_parent_days - 1) & (f.baby_days >= c.new_parent_baby_days)


def _weekend(f: Facts, c: TagConfig) -> Bools:
    return _enough(f, c) & _ge(f.weekend_share, c.weekend_share)


def _evening(f: Facts, c: TagConfig) -> Bools:
    return _enough(f, c) & _ge(f.evening_share, c.evening_share)


def _multi_store(f: Facts, c: TagConfig) -> Bools:
    return np.asarray(f.stores >= c.multi_store_stores)


def _responsive(f: Facts, c: TagConfig) -> Bools:
    enough = f.messages >= c.responsive_messages
    rate = f.acted / np.maximum(f.messages, 1)
    return np.asarray(enough & (rate >= c.responsive_rate))


@dataclass(frozen=True)
class Tag:
    code: str
    name_en: str
    name_zh: str
    definition: str  # a format string over TagConfig's fields
    rule: Callable[[Facts, TagConfig], Bools]

    def describe(self, config: TagConfig | None = None) -> str:
        return self.definition.format(c=config or TagConfig(), pct=_Percent(config))


class _Percent:
    """``{pct.high_value_top}`` -> ``20 %`` in the definitions."""

    def __init__(self, config: TagConfig | None) -> None:
        self._config = config or TagConfig()

    def __getattr__(self, name: str) -> str:
        return f"{getattr(self._config, name) * 100:g} %"


#: Every tag, in bit order (permanent: append new tags at the end).
TAGS: tuple[Tag, ...] = (
    Tag("high_value", "High value", "高价值",
        "Spent something in the last 365 days and is in the top {pct.high_value_top} of "
        "those members by net spend in that time (fewer than {pct.high_value_top} of them "
        "spent strictly more).", _high_value),
    Tag("potential", "Potential", "潜力客户",
        "Not high value, last purchase at most {c.potential_recency_days} days before the "
        "snapshot day, and predicted 12-month value (CLV) in the top {pct.potential_top} "
        "of members with a CLV.", _potential),
    Tag("new_customer", "New customer", "新客",
        "First purchase less than {c.new_customer_days} days before the snapshot day.",
        _new_customer),
    Tag("regular", "Regular", "常客",
        "At least {c.regular_sales_365} purchases in the last 365 days and the last one at "
        "most {c.regular_recency_days} days before the snapshot day.", _regular),
    Tag("at_risk", "At risk", "流失预警",
        "Purchases on at least 2 days, not dormant, and P(alive) below {c.at_risk_p_alive} "
        "(the BG/NBD model's probability that they are still a customer).", _at_risk),
    Tag("dormant", "Dormant", "沉睡客户",
        "Has bought, but the last purchase was more than {c.dormant_days} days before the "
        "snapshot day.", _dormant),
    Tag("discount_hunter", "Discount hunter", "羊毛党",
        "At least {c.min_sales} purchases and at least {pct.discount_hunter_share} of net "
        "spend on sales reduced by a coupon or a promotion.", _discount_hunter),
    Tag("full_price", "Full-price buyer", "不看折扣",
        "At least {c.min_sales} purchases and at most {pct.full_price_share} of net spend "
        "on sales reduced by a coupon or a promotion.", _full_price),
    Tag("family", "Family shopper", "家庭客",
        "At least {pct.family_share} of category spend in categories with a family signal "
        "(baby, kids, pet, … by name or code keywords).", _family),
    Tag("new_parent", "New parent", "新手爸妈",
        "First bought a baby category less than {c.new_parent_days} days before the "
        "snapshot day, and bought baby categories on at least {c.new_parent_baby_days} "
        "different days.", _new_parent),
    Tag("weekend_shopper", "Weekend shopper", "周末客",
        "At least {c.min_sales} purchases and at least {pct.weekend_share} of them on a "
        "Saturday or Sunday (the store's local day).", _weekend),
    Tag("evening_shopper", "Evening shopper", "下班族",
        "At least {c.min_sales} purchases and at least {pct.evening_share} of them at or "
        "after the evening hour (17:00 by default, the store's local time).", _evening),
    Tag("multi_store", "Shops at several stores", "跨店客",
        "Bought in at least {c.multi_store_stores} different stores.", _multi_store),
    Tag("message_responsive", "Responds to messages", "营销响应",
        "Received at least {c.responsive_messages} marketing messages (with an ended "
        "response window) and bought within the response window after at least "
        "{pct.responsive_rate} of them.", _responsive),
)
TAG_CODES: tuple[str, ...] = tuple(t.code for t in TAGS)
BY_CODE: dict[str, Tag] = {t.code: t for t in TAGS}


def assign(facts: Facts, config: TagConfig | None = None) -> Ints:
    """Every member's tag bits."""
    config = config or TagConfig()
    bits = np.zeros(len(facts), dtype=np.int64)
    for i, tag in enumerate(TAGS):
        bits |= tag.rule(facts, config).astype(np.int64) << i
    return bits


def mask(codes: Iterable[str]) -> int:
    """The bits of these tag codes (unknown codes raise KeyError)."""
    out = 0
    for code in codes:
        if code not in BY_CODE:
            raise KeyError(code)
        out |= 1 << TAG_CODES.index(code)
    return out


def decode(bits: int) -> list[str]:
    """The tag codes set in ``bits``, in tag order."""
    return [code for i, code in enumerate(TAG_CODES) if bits >> i & 1]


def table(config: TagConfig | None = None) -> list[dict[str, Any]]:
    """Every tag with its names and written definition (the docs table, the API)."""
    return [{"code": t.code, "bit": i, "name_en": t.name_en, "name_zh": t.name_zh,
             "definition": t.describe(config)} for i, t in enumerate(TAGS)]
