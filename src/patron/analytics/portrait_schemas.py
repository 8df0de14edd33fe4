"""API shapes of member profiles, tags and portraits (Pydantic v2); docs/portraits.md
defines every field."""

from __future__ import annotations

import uuid
from datetime import date

from pydantic import BaseModel, ConfigDict, Field


class TagRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name_en: str
    name_zh: str
    definition: str = Field(description="The tag's written definition (what the rule checks)")


class PortraitRead(BaseModel):
    """One portrait (behaviour cluster) of the latest snapshot."""

    model_config = ConfigDict(from_attributes=True)

    as_of: date
    code: str = Field(description="Stable across refreshes: P3 stays P3")
    name_en: str
    name_zh: str
    description_en: str
    description_zh: str
    traits: dict[str, float] = Field(description="Feature -> the cluster centre's z-score")
    top_category_id: uuid.UUID | None = Field(
        description="The favourite category most of its members share, if any")
    members: int
    member_share: float = Field(description="Of the members with a portrait in scope")
    revenue_365_minor: int = Field(description="Its members' net spend, last 365 days")
    revenue_share: float = Field(description="Of every member's last-year net in scope")
    retention: float | None = Field(
        description="Of its members who bought in the 90 days before the last 90, the "
                    "share who bought in the last 90")
    mean_p_alive: float | None
    clv_total_minor: int
    clv_mean_minor: int | None
    median_basket_minor: int | None = Field(description="Brand-wide")
    median_interval_days: float | None = Field(description="Brand-wide")


class PortraitList(BaseModel):
    as_of: date | None = Field(description="The snapshot's day; null before the first")
    portraits: list[PortraitRead]


class FavouriteRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str | None
    share: float | None = Field(None, description="Categories: share of category spend")
    quantity: int | None = Field(None, description="Products: units kept")


class MemberProfileRead(BaseModel):
    """A member's inferred profile in the latest snapshot (whole history to its day)."""

    model_config = ConfigDict(from_attributes=True)

    member_id: uuid.UUID
    as_of: date
    sales: int = Field(description="Sales with a positive net")
    sales_365: int
    spend_minor: int
    avg_basket_minor: int | None
    categories: int
    stores: int
    favourite_categories: list[FavouriteRead]
    favourite_products: list[FavouriteRead]
    preferred_store_id: uuid.UUID | None
    preferred_store_name: str | None
    preferred_store_share: float | None
    preferred_weekday: int | None = Field(description="0 Monday … 6 Sunday, store-local")
    preferred_hour: int | None = Field(description="0 … 23, store-local")
    weekend_share: float | None
    evening_share: float | None
    promo_share: float | None = Field(description="Net spend with a coupon or promotion")
    coupon_share: float | None
    discount_rate: float | None
    price_sensitivity: str | None = Field(description="low, medium or high")
    sms_messages: int
    sms_acted: int
    email_messages: int
    email_acted: int
    response_rate: float | None
    best_channel: str | None
    best_template: str | None
    family_signals: list[str]
    family_share: float | None
    baby_first_on: date | None
    baby_days: int
    tags: list[TagRead]
    portrait: PortraitRead | None
