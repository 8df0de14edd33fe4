"""API shapes of promotions: create, change, read.

``config`` arrives as a plain object and is validated by the pricing engine's own models
(``offers.promotions.parse_promotion``) in the service, so every error names the field the
way people know it (``config.steps.1.spend_minor``), without the kind tag a discriminated
union would add to the path. ``schedule``, ``audience`` and ``limits`` are the engine's
models themselves.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from patron.offers.promotions.schemas import Audience, Limits, Schedule

CONFIG_DOC = (
    "The pricing rule; ``kind`` is one of member_price, nth_item, volume, buy_x_get_y, "
    "bundle, category_discount, spend_discount, spend_gift, cashback (docs/promotions.md "
    "lists each kind's fields).")


class PromotionCreate(BaseModel):
    """A new promotion. Managers must name their own stores in ``audience.stores``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    priority: int = Field(default=100, ge=0, le=1_000_000,
                          description="Smaller runs first within its stage")
    exclusive: bool = False
    stackable_with_coupons: bool = True
    schedule: Schedule = Schedule()
    audience: Audience = Audience()
    limits: Limits = Limits()
    config: dict[str, Any] = Field(description=CONFIG_DOC)
    active: bool = True


class PromotionUpdate(BaseModel):
    """A change: only the fields sent change (``limits`` and the JSON parts are replaced
    whole). Activation has its own endpoints."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    priority: int | None = Field(default=None, ge=0, le=1_000_000)
    exclusive: bool | None = None
    stackable_with_coupons: bool | None = None
    schedule: Schedule | None = None
    audience: Audience | None = None
    limits: Limits | None = None
    config: dict[str, Any] | None = Field(default=None, description=CONFIG_DOC)


class UsageRead(BaseModel):
    """The counters the limits are checked against (kept for limited promotions)."""

    uses: int
    budget_spent_minor: int
    budget_left_minor: int | None


class PromotionRead(BaseModel):
    id: uuid.UUID
    name: str
    kind: str
    priority: int
    exclusive: bool
    stackable_with_coupons: bool
    schedule: dict[str, Any]
    audience: dict[str, Any]
    limits: dict[str, Any]
    config: dict[str, Any]
    active: bool
    version: int
    usage: UsageRead | None
    created_by: str
    created_at: datetime
    updated_at: datetime


class PeriodFigures(BaseModel):
    """Sales in the promotion's stores over one period (net of refunds)."""

    since: datetime
    until: datetime
    sales: int
    net_sales_minor: int
    members: int


class PromotionReport(BaseModel):
    """What a promotion gave and what it may have earned, over ``[since, until)``.

    ``cost_minor`` is what it gave away net of what refunds took back: savings + gift
    value + cashback - discount returned - cashback reclaimed. Incremental sales compare
    the period with the one of the same length just before it and, when the history
    reaches back that far, with the same period a year earlier.
    """

    promotion_id: uuid.UUID
    name: str
    kind: str
    since: datetime
    until: datetime
    redemptions: int
    unique_members: int
    walk_in_redemptions: int
    savings_minor: int
    gift_value_minor: int
    cashback_minor: int
    returned_minor: int
    cashback_unrecovered_minor: int
    cost_minor: int
    promoted_sales_minor: int
    period: PeriodFigures
    previous_period: PeriodFigures
    incremental_sales_minor: int
    last_year: PeriodFigures | None
    incremental_sales_vs_last_year_minor: int | None
    retention_days: int
    retained_members: int
    retention_window_complete: bool
    cost_per_retained_member_minor: int | None
