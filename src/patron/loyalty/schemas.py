"""API shapes of points and tiers."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from patron.loyalty.enums import ExpiryPolicy, PointsEntryKind, Rounding, TierBasis
from patron.loyalty.rules import CODE_PATTERN


class PointsEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: PointsEntryKind
    available_delta: int
    pending_delta: int
    debt_delta: int
    available_after: int
    pending_after: int
    debt_after: int
    sale_id: uuid.UUID | None
    actor_label: str
    reason: str
    occurred_at: datetime


class PointsRead(BaseModel):
    member_id: uuid.UUID
    available: int
    pending: int
    debt: int
    lifetime_earned: int
    entries: list[PointsEntryRead]


class PointsAdjust(BaseModel):
    points: int = Field(ge=-1_000_000_000, le=1_000_000_000)
    reason: str = Field(min_length=1, max_length=500)


class ProgramRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    points_per_major: int
    rounding: Rounding
    pending_days: int
    expiry_policy: ExpiryPolicy
    expiry_months: int
    expiring_notice_days: int
    points_per_major_redeemed: int
    birthday_multiplier_pct: int
    tier_basis: TierBasis
    downgrade_grace_days: int


class ProgramUpdate(BaseModel):
    points_per_major: int | None = Field(default=None, ge=0, le=1000)
    rounding: Rounding | None = None
    pending_days: int | None = Field(default=None, ge=0, le=365)
    expiry_policy: ExpiryPolicy | None = None
    expiry_months: int | None = Field(default=None, ge=1, le=120)
    expiring_notice_days: int | None = Field(default=None, ge=1, le=365)
    points_per_major_redeemed: int | None = Field(default=None, ge=1, le=100_000)
    birthday_multiplier_pct: int | None = Field(default=None, ge=100, le=1000)
    tier_basis: TierBasis | None = None
    downgrade_grace_days: int | None = Field(default=None, ge=0, le=365)


class TierCreate(BaseModel):
    code: str = Field(min_length=1, max_length=32, pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=100)
    rank: int = Field(ge=0, le=100)
    threshold: int = Field(ge=0, le=10_000_000_000)
    points_multiplier_pct: int = Field(default=100, ge=0, le=10_000)
    discount_pct: int = Field(default=0, ge=0, le=100)


class TierRead(TierCreate):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    birthday_coupon_template_id: uuid.UUID | None = None


class TierPerks(BaseModel):
    """A tier's benefits beyond points and discount (see ``loyalty.perks``)."""

    birthday_coupon_template_id: uuid.UUID | None = Field(
        default=None, description="Coupon the birthday greeting issues to the tier's members "
                                  "instead of the care rule's own")
    plan_ids: list[uuid.UUID] = Field(
        default_factory=list, max_length=50,
        description="Paid membership plans whose perks the tier's members enjoy free")


class MultiplierCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scope: str = Field(pattern=r"^(all|category|product)$")
    target_id: uuid.UUID | None = None
    pct: int = Field(ge=0, le=10_000)
    starts_at: datetime | None = None
    ends_at: datetime | None = None


class MembershipPlanCreate(BaseModel):
    code: str = Field(min_length=1, max_length=32, pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=100)
    product_id: uuid.UUID = Field(description="The catalogue product sold at the till; its "
                                  "price is the fee")
    duration_days: int = Field(ge=1, le=3660)
    tier_id: uuid.UUID | None = None
    benefits: str = Field(default="", max_length=1000)


class MembershipPlanRead(MembershipPlanCreate):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    active: bool


class MembershipRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    plan_id: uuid.UUID
    sale_id: uuid.UUID | None
    starts_at: datetime
    ends_at: datetime
    status: str


class PointsTransferCreate(BaseModel):
    """Give some of the member's available points to another member."""

    to_member_id: uuid.UUID = Field(description="The member who receives the points")
    points: int = Field(ge=1, le=1_000_000_000)
    store_id: uuid.UUID | None = Field(default=None, description="Where it happened; the "
                                       "caller's store when left out")
    note: str = Field(default="", max_length=500)


class PointsTransferRead(BaseModel):
    """A transfer and both members' available points after it."""

    id: uuid.UUID
    from_member_id: uuid.UUID
    to_member_id: uuid.UUID
    points: int
    store_id: uuid.UUID | None
    note: str
    occurred_at: datetime
    from_available: int
    to_available: int
