"""Promotion definitions: what a merchant configures, validated before anything is stored.

A promotion is a ``PromotionSpec`` (name, priority, combination flags, schedule, audience,
limits) plus one ``config`` whose ``kind`` picks the pricing rule. The config is a
discriminated union, so the JSON column that stores it is validated by the same model the
API accepts, and every error names the field at fault (``config.steps.1.spend_minor``, not
"invalid promotion"). Cross-field checks are field validators on the *later* field for the
same reason: pydantic then reports that field's location.

Amounts are integer minor units (``*_minor``), percentages whole numbers 1-100, dates local
to the store (``*_on``), times of day naive local times. Nothing here touches the database.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, time
from enum import StrEnum
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from patron.core.errors import FieldProblem, ValidationFailed

MAX_MINOR = 10_000_000_000
MAX_IDS = 5_000
MAX_QUANTITY = 9_999

Percent = Annotated[int, Field(ge=1, le=100)]
Minor = Annotated[int, Field(ge=0, le=MAX_MINOR)]
PositiveMinor = Annotated[int, Field(gt=0, le=MAX_MINOR)]
Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY)]
TierCode = Annotated[str, Field(min_length=1, max_length=32)]

ANY_TIER = "*"  # member-price key that any identified member gets when their tier has none


class _Model(BaseModel):
    """Frozen and strict about unknown keys: a typo in a stored config is an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# ---------------------------------------------------------------- what a promotion covers


class Selector(_Model):
    """A set of products: listed products, products of listed categories, minus exclusions.

    With neither products nor categories it covers every product (useful for spend
    thresholds and cashback); kinds that need a target say so in their own validation.
    """

    products: frozenset[uuid.UUID] = Field(default=frozenset(), max_length=MAX_IDS)
    categories: frozenset[uuid.UUID] = Field(default=frozenset(), max_length=MAX_IDS)
    exclude_products: frozenset[uuid.UUID] = Field(default=frozenset(), max_length=MAX_IDS)

    @property
    def everything(self) -> bool:
        return not self.products and not self.categories

    def covers(self, product_id: uuid.UUID, category_id: uuid.UUID | None) -> bool:
        if product_id in self.exclude_products:
            return False
        return (self.everything or product_id in self.products
                or (category_id is not None and category_id in self.categories))


def _targeted(selector: Selector) -> Selector:
    if selector.everything:
        raise ValueError("name at least one product or category")
    return selector


Targeted = Annotated[Selector, AfterValidator(_targeted)]


# ---------------------------------------------------------------- when, who, how often


class HolidayRule(StrEnum):
    """How the holiday calendar passed in by the caller restricts a promotion."""

    ANY = "any"  # holidays do not matter
    ONLY = "only"  # only on holidays
    EXCEPT = "except"  # never on holidays


class TimeWindow(_Model):
    """Local time of day from ``start`` (inclusive) to ``end`` (exclusive).

    ``end`` before ``start`` wraps past midnight ("22:00"-"02:00"); the day-of-week and
    holiday checks use the local date of the moment itself.
    """

    start: time
    end: time

    @field_validator("start", "end")
    @classmethod
    def _naive(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("a local time of day without a time zone (the store's is used)")
        return value

    @field_validator("end")
    @classmethod
    def _not_empty(cls, value: time, info: ValidationInfo) -> time:
        if info.data.get("start") == value:
            raise ValueError("end equals start: the window would be empty")
        return value

    def contains(self, moment: time) -> bool:
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


class Schedule(_Model):
    """When a promotion runs, in the store's local calendar and clock (DESIGN rule 7)."""

    starts_on: date | None = None
    ends_on: date | None = Field(default=None, description="Inclusive")
    days_of_week: frozenset[Annotated[int, Field(ge=1, le=7)]] = Field(
        default=frozenset(), description="ISO weekdays, 1 = Monday; empty = every day")
    hours: tuple[TimeWindow, ...] = Field(default=(), max_length=24,
                                          description="Empty = all day")
    holidays: HolidayRule = HolidayRule.ANY

    @field_validator("ends_on")
    @classmethod
    def _ordered(cls, value: date | None, info: ValidationInfo) -> date | None:
        starts_on = info.data.get("starts_on")
        if value is not None and starts_on is not None and value < starts_on:
            raise ValueError("ends_on is before starts_on")
        return value


class Audience(_Model):
    """Who may get a promotion. Empty sets mean "no restriction".

    Any member condition (tiers, plans, segments, first purchase, membership age) implies
    ``members_only``: an anonymous buyer has no tier, segment or history to check.
    """

    stores: frozenset[uuid.UUID] = Field(default=frozenset(), max_length=MAX_IDS)
    tiers: frozenset[TierCode] = Field(default=frozenset(), max_length=100)
    plans: frozenset[TierCode] = Field(
        default=frozenset(), max_length=100,
        description="Codes of paid membership plans: only members with the perks of one of "
                    "them (a running paid period, or a tier that includes the plan)")
    segments: frozenset[uuid.UUID] = Field(
        default=frozenset(), max_length=1_000,
        description="The member must belong to at least one of these segments")
    members_only: bool = False
    first_purchase_only: bool = Field(
        default=False, description="Only on the member's first purchase ever")
    min_member_days: int | None = Field(
        default=None, ge=1, le=36_500,
        description="Only for members who joined at least this many days ago")
    max_member_days: int | None = Field(
        default=None, ge=0, le=36_500,
        description="Only for members who joined at most this many days ago")

    @field_validator("max_member_days")
    @classmethod
    def _age_range(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min_member_days")
        if value is not None and low is not None and value < low:
            raise ValueError("max_member_days is below min_member_days")
        return value

    @property
    def needs_member(self) -> bool:
        return bool(self.members_only or self.tiers or self.plans or self.segments
                    or self.first_purchase_only
                    or self.min_member_days is not None or self.max_member_days is not None)


class Limits(_Model):
    """Usage limits and the budget cap; the caller passes the counters, the engine checks.

    One *use* is one basket the promotion applied to. The budget counts everything the
    promotion gives away: discounts, gift value and cashback.
    """

    per_member: int | None = Field(default=None, ge=1, le=1_000_000)
    total: int | None = Field(default=None, ge=1, le=1_000_000_000)
    budget_minor: PositiveMinor | None = None

    @property
    def limited(self) -> bool:
        return self.per_member is not None or self.total is not None \
            or self.budget_minor is not None


# ---------------------------------------------------------------- the kinds


class MemberPriceRule(_Model):
    """Member prices for some products or categories, per tier code (``"*"``: any member).

    Give fixed unit prices (``prices_minor``) or percentages off (``percent_off``), not
    both. A price above the shelf price is ignored, never charged.
    """

    items: Targeted
    prices_minor: Mapping[TierCode, Minor] | None = None
    percent_off: Mapping[TierCode, Percent] | None = Field(default=None, validate_default=True)

    @field_validator("percent_off")
    @classmethod
    def _one_form(cls, value: Mapping[str, int] | None,
                  info: ValidationInfo) -> Mapping[str, int] | None:
        prices = info.data.get("prices_minor")
        if (value is None) == (prices is None):
            raise ValueError("give exactly one of prices_minor or percent_off")
        if not (value or prices):
            raise ValueError("name at least one tier")
        return value


class MemberPriceConfig(_Model):
    """Member-only prices by tier; the lowest price offered to a line wins."""

    kind: Literal["member_price"] = "member_price"
    rules: tuple[MemberPriceRule, ...] = Field(min_length=1, max_length=1_000)


class NthItemConfig(_Model):
    """"2nd item half price" (nth=2, 50 %), "3 for the price of 2" (nth=3, 100 %).

    Units in scope are sorted by price, dearest first, and cut into groups of ``nth``; the
    last (cheapest) unit of each group gets ``percent_off``. ``per_product`` groups each
    product on its own instead of mixing the whole scope.
    """

    kind: Literal["nth_item"] = "nth_item"
    items: Targeted
    nth: int = Field(ge=2, le=100)
    percent_off: Percent
    per_product: bool = False
    max_applications: int | None = Field(default=None, ge=1, le=MAX_QUANTITY)


class VolumeTier(_Model):
    min_quantity: int = Field(ge=2, le=MAX_QUANTITY)
    percent_off: Percent


class VolumeConfig(_Model):
    """Tiered by quantity: "2+ 5 % off, 5+ 10 % off" on every unit in scope."""

    kind: Literal["volume"] = "volume"
    items: Targeted
    tiers: tuple[VolumeTier, ...] = Field(min_length=1, max_length=20)

    @field_validator("tiers")
    @classmethod
    def _increasing(cls, value: tuple[VolumeTier, ...]) -> tuple[VolumeTier, ...]:
        for low, high in pairwise(value):
            if high.min_quantity <= low.min_quantity or high.percent_off <= low.percent_off:
                raise ValueError("tiers must rise in both min_quantity and percent_off")
        return value


class RewardPick(StrEnum):
    """Which units of one pool become the "get" units of buy X get Y."""

    GROUP = "group"  # dearest first in groups of X+Y, the cheapest Y of each group
    BASKET = "basket"  # the cheapest units of the whole scope


class BuyXGetYConfig(_Model):
    """Buy ``buy_quantity`` of ``buy``, get ``get_quantity`` of ``get`` at ``percent_off``.

    Without ``get`` the reward comes from the same pool ("buy 2 get 1 free"). With a
    separate ``get`` pool the cheapest eligible reward units are discounted.
    """

    kind: Literal["buy_x_get_y"] = "buy_x_get_y"
    buy: Targeted
    buy_quantity: int = Field(ge=1, le=100)
    get: Targeted | None = None
    get_quantity: int = Field(default=1, ge=1, le=100)
    percent_off: Percent = 100
    reward_pick: RewardPick = RewardPick.GROUP
    max_applications: int | None = Field(default=None, ge=1, le=MAX_QUANTITY)



class BundleComponent(_Model):
    items: Targeted
    quantity: Quantity = 1


class BundleConfig(_Model):
    """A fixed price for a set: SKUs A+B+C, or "any 3 from this category".

    The dearest eligible units are bundled first, and a bundle is only formed while it
    saves the customer something.
    """

    kind: Literal["bundle"] = "bundle"
    components: tuple[BundleComponent, ...] = Field(min_length=1, max_length=20)
    price_minor: Minor
    max_applications: int | None = Field(default=None, ge=1, le=MAX_QUANTITY)

    @field_validator("components")
    @classmethod
    def _at_least_two(cls, value: tuple[BundleComponent, ...]) -> tuple[BundleComponent, ...]:
        if sum(c.quantity for c in value) < 2:
            raise ValueError("a bundle needs at least two units")
        return value


class CategoryDiscountConfig(_Model):
    """Percent off, or a fixed amount off each unit, of some categories or products."""

    kind: Literal["category_discount"] = "category_discount"
    items: Targeted
    percent_off: Percent | None = None
    amount_off_minor: PositiveMinor | None = Field(default=None, validate_default=True,
                                                   description="Off each unit")

    @field_validator("amount_off_minor")
    @classmethod
    def _one_form(cls, value: int | None, info: ValidationInfo) -> int | None:
        if (value is None) == (info.data.get("percent_off") is None):
            raise ValueError("give exactly one of percent_off or amount_off_minor")
        return value


class SpendStep(_Model):
    """Spend ``spend_minor`` (on the items in scope) and get an amount or a percent off."""

    spend_minor: PositiveMinor
    amount_off_minor: PositiveMinor | None = None
    percent_off: Percent | None = Field(default=None, validate_default=True)
    cap_minor: PositiveMinor | None = Field(default=None, description="For percent_off")

    @field_validator("percent_off")
    @classmethod
    def _one_form(cls, value: int | None, info: ValidationInfo) -> int | None:
        if (value is None) == (info.data.get("amount_off_minor") is None):
            raise ValueError("give exactly one of amount_off_minor or percent_off")
        return value


class SpendDiscountConfig(_Model):
    """Spend X get Y off; the highest step reached applies.

    ``repeat`` (one fixed-amount step only) gives the amount for every full multiple of
    the spend: "every 100.00 gets 10.00 off".
    """

    kind: Literal["spend_discount"] = "spend_discount"
    items: Selector = Selector()
    steps: tuple[SpendStep, ...] = Field(min_length=1, max_length=20)
    repeat: bool = Field(default=False, validate_default=True)

    @field_validator("steps")
    @classmethod
    def _increasing(cls, value: tuple[SpendStep, ...]) -> tuple[SpendStep, ...]:
        for low, high in pairwise(value):
            if high.spend_minor <= low.spend_minor:
                raise ValueError("steps must rise in spend_minor")
        return value

    @field_validator("repeat")
    @classmethod
    def _repeat_single_amount(cls, value: bool, info: ValidationInfo) -> bool:
        steps = info.data.get("steps")
        if value and steps is not None and (len(steps) != 1 or steps[0].amount_off_minor is None):
            raise ValueError("repeat needs exactly one step with amount_off_minor")
        return value


class SpendGiftConfig(_Model):
    """Spend X, get a gift product: a gift line is added at zero price.

    ``gift_value_minor`` (per gift unit) is what the gift is worth to the customer: it
    ranks exclusive promotions, counts against the budget and is taken back from a refund
    that leaves the basket below the threshold while the gift is kept.
    """

    kind: Literal["spend_gift"] = "spend_gift"
    items: Selector = Selector()
    spend_minor: PositiveMinor
    gift_product_id: uuid.UUID
    gift_quantity: Quantity = 1
    gift_value_minor: Minor = 0


class CashbackMode(StrEnum):
    """Which purchase in the rolling window earns the cashback."""

    NTH = "nth"  # exactly the nth purchase in the window
    EVERY_NTH = "every_nth"  # the nth, 2nth, 3nth, ...
    FROM_NTH = "from_nth"  # the nth and every later one


class CashbackConfig(_Model):
    """"The 5th purchase within 30 days returns 5 % to the wallet".

    The caller passes how many purchases the member made in the last ``window_days``
    before this one; the engine outputs the amount, the wallet credit is the caller's.
    """

    kind: Literal["cashback"] = "cashback"
    items: Selector = Selector()
    purchase_number: int = Field(ge=1, le=1_000)
    window_days: int = Field(ge=1, le=3_660)
    mode: CashbackMode = CashbackMode.NTH
    percent: Percent
    cap_minor: PositiveMinor | None = None


PromotionConfig = Annotated[
    MemberPriceConfig | NthItemConfig | VolumeConfig | BuyXGetYConfig | BundleConfig
    | CategoryDiscountConfig | SpendDiscountConfig | SpendGiftConfig | CashbackConfig,
    Field(discriminator="kind")]

KINDS: tuple[str, ...] = ("member_price", "nth_item", "volume", "buy_x_get_y", "bundle",
                          "category_discount", "spend_discount", "spend_gift", "cashback")


# ---------------------------------------------------------------- the promotion


class PromotionSpec(_Model):
    """Everything a merchant sets on a promotion.

    ``priority``: smaller runs first within its stage and wins ties between exclusive
    promotions that save the customer the same. ``exclusive``: never combined with another
    exclusive promotion in one basket. ``stackable_with_coupons``: when false, a basket
    (or line) this promotion applied to takes no coupon. See docs/promotions.md.
    """

    name: str = Field(min_length=1, max_length=200)
    priority: int = Field(default=100, ge=0, le=1_000_000)
    exclusive: bool = False
    stackable_with_coupons: bool = True
    schedule: Schedule = Schedule()
    audience: Audience = Audience()
    limits: Limits = Limits()
    config: PromotionConfig


class Promotion(PromotionSpec):
    """A stored promotion: the spec and its id (random, DESIGN rule 8)."""

    id: uuid.UUID


config_adapter: TypeAdapter[PromotionConfig] = TypeAdapter(PromotionConfig)


def _field_name(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc]
    # a tagged union adds the tag after the union's field; people know the field, not the tag
    return ".".join(p for i, p in enumerate(parts)
                    if not (p in KINDS and i > 0 and parts[i - 1] == "config")) or "config"


def _problems(exc: ValidationError, prefix: str) -> list[FieldProblem]:
    return [FieldProblem(_field_name((*([prefix] if prefix else []), *e["loc"])),
                         e["msg"].removeprefix("Value error, "), e["type"])
            for e in exc.errors()]


def parse_promotion(data: Mapping[str, Any]) -> Promotion:
    """Validate a stored or submitted promotion; ``ValidationFailed`` names every bad field."""
    try:
        return Promotion.model_validate(data)
    except ValidationError as exc:
        problems = _problems(exc, "")
        raise ValidationFailed(f"Invalid promotion: {problems[0].field}: {problems[0].message}",
                               problems[0].field, problems=problems) from None


def parse_config(data: Mapping[str, Any]) -> PromotionConfig:
    """Validate the JSON ``config`` column alone; fields are named ``config.<path>``."""
    try:
        return config_adapter.validate_python(data)
    except ValidationError as exc:
        problems = _problems(exc, "config")
        raise ValidationFailed(f"Invalid promotion: {problems[0].field}: {problems[0].message}",
                               problems[0].field, problems=problems) from None
