"""API shapes of coupons and referrals."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from patron.offers.enums import (
    CouponKind,
    CouponScope,
    CouponSource,
    CouponStatus,
    ReferralOutcome,
    Validity,
)

MAX_MINOR = 10_000_000_000
MAX_ISSUE = 1_000


class CouponTemplateCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=1000)
    kind: CouponKind
    amount_minor: int | None = Field(default=None, gt=0, le=MAX_MINOR,
                                     description="For 'fixed': minor units off")
    percent: int | None = Field(default=None, ge=1, le=100, description="For 'percent'")
    cap_minor: int | None = Field(default=None, gt=0, le=MAX_MINOR,
                                  description="For 'percent': at most this much off")
    min_spend_minor: int = Field(default=0, ge=0, le=MAX_MINOR,
                                 description="Spend needed on the items in scope")
    scope: CouponScope = CouponScope.ALL
    target_ids: list[uuid.UUID] = Field(
        default_factory=list, max_length=1000,
        description="Category ids (scope 'categories') or product ids (scope 'products')")
    validity: Validity
    starts_at: datetime | None = Field(default=None, description="For 'fixed'")
    ends_at: datetime | None = Field(default=None, description="For 'fixed' (exclusive)")
    valid_days: int | None = Field(default=None, ge=1, le=3650, description="For 'days'")
    per_member_limit: int | None = Field(default=None, ge=1, le=1_000_000)
    total_limit: int | None = Field(default=None, ge=1, le=100_000_000)
    restore_on_refund: bool = Field(
        default=False, description="Give a replacement coupon when the sale is refunded")


class CouponTemplateUpdate(BaseModel):
    """Fields to change. The discount terms are frozen once a coupon has been issued."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=1000)
    kind: CouponKind | None = None
    amount_minor: int | None = Field(default=None, gt=0, le=MAX_MINOR)
    percent: int | None = Field(default=None, ge=1, le=100)
    cap_minor: int | None = Field(default=None, gt=0, le=MAX_MINOR)
    min_spend_minor: int | None = Field(default=None, ge=0, le=MAX_MINOR)
    scope: CouponScope | None = None
    target_ids: list[uuid.UUID] | None = Field(default=None, max_length=1000)
    validity: Validity | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    valid_days: int | None = Field(default=None, ge=1, le=3650)
    per_member_limit: int | None = Field(default=None, ge=1, le=1_000_000)
    total_limit: int | None = Field(default=None, ge=1, le=100_000_000)
    restore_on_refund: bool | None = None
    active: bool | None = None


class CouponTemplateRead(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    kind: CouponKind
    amount_minor: int | None
    percent: int | None
    cap_minor: int | None
    min_spend_minor: int
    scope: CouponScope
    target_ids: list[uuid.UUID]
    validity: Validity
    starts_at: datetime | None
    ends_at: datetime | None
    valid_days: int | None
    per_member_limit: int | None
    total_limit: int | None
    restore_on_refund: bool
    active: bool
    issued_count: int
    created_at: datetime
    updated_at: datetime


class IssueRequest(BaseModel):
    member_id: uuid.UUID | None = Field(default=None,
                                        description="Omit for bearer coupons")
    count: int = Field(default=1, ge=1, le=MAX_ISSUE)
    source: CouponSource = CouponSource.MANUAL
    source_ref: str | None = Field(default=None, max_length=64)


class RedemptionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    coupon_id: uuid.UUID
    member_id: uuid.UUID | None
    store_id: uuid.UUID
    sale_id: uuid.UUID | None
    reference: str | None
    eligible_minor: int
    discount_minor: int
    actor_label: str
    redeemed_at: datetime


class CouponRead(BaseModel):
    id: uuid.UUID
    code: str
    display_code: str
    template_id: uuid.UUID
    template_name: str
    member_id: uuid.UUID | None
    status: CouponStatus
    usable_now: bool
    source: CouponSource
    source_ref: str | None
    issued_at: datetime
    issued_by: str
    valid_from: datetime
    valid_until: datetime
    replaces_coupon_id: uuid.UUID | None
    voided_at: datetime | None
    void_reason: str
    redemption: RedemptionRead | None


class IssueResult(BaseModel):
    template_id: uuid.UUID
    coupons: list[CouponRead]


class QuoteLineIn(BaseModel):
    product_id: uuid.UUID
    category_id: uuid.UUID | None = None
    quantity: int = Field(gt=0, le=9_999)
    unit_price_minor: int = Field(ge=0, le=MAX_MINOR)


class QuoteRequest(BaseModel):
    member_id: uuid.UUID | None = None
    store_id: uuid.UUID | None = Field(default=None, description="Defaults to the key's store")
    lines: list[QuoteLineIn] = Field(min_length=1, max_length=500)


class RedemptionRequest(QuoteRequest):
    reference: str | None = Field(default=None, max_length=64,
                                  description="The till's own receipt number")


class CouponQuoteRead(BaseModel):
    coupon_id: uuid.UUID
    code: str
    label: str
    eligible_minor: int
    discount_minor: int
    line_discounts: list[int]


class RedemptionResult(CouponQuoteRead):
    redemption: RedemptionRead


class VoidRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class RestoreRequest(BaseModel):
    reason: str = Field(default="", max_length=500)


class RestoreResult(BaseModel):
    replacements: list[CouponRead]


class ReferralRuleIn(BaseModel):
    active: bool
    referrer_template_id: uuid.UUID | None = None
    referred_template_id: uuid.UUID | None = None
    min_purchase_minor: int = Field(default=0, ge=0, le=MAX_MINOR)


class ReferralRuleRead(ReferralRuleIn):
    model_config = ConfigDict(from_attributes=True)
    updated_at: datetime | None


class ReferralCodeRead(BaseModel):
    member_id: uuid.UUID
    code: str
    created_at: datetime


class AttributionRequest(BaseModel):
    code: str = Field(min_length=1, max_length=40)


class AttributionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    referred_member_id: uuid.UUID
    referrer_member_id: uuid.UUID
    code: str
    attributed_at: datetime


class ReferralRewardRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    referred_member_id: uuid.UUID
    referrer_member_id: uuid.UUID
    sale_id: uuid.UUID | None
    purchase_minor: int
    outcome: ReferralOutcome
    referrer_coupon_id: uuid.UUID | None
    referred_coupon_id: uuid.UUID | None
    occurred_at: datetime
