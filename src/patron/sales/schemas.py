"""API shapes of checkout, quotes and refunds."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator

MAX_MINOR = 10_000_000_000


class LineIn(BaseModel):
    product_id: uuid.UUID | None = None
    sku: str | None = Field(default=None, max_length=64)
    quantity: int = Field(gt=0, le=9_999)
    unit_price_minor: int | None = Field(default=None, ge=0, le=MAX_MINOR,
                                         description="Defaults to the catalogue price")

    @model_validator(mode="after")
    def _one_product_ref(self) -> LineIn:
        if (self.product_id is None) == (self.sku is None):
            raise ValueError("give exactly one of product_id or sku")
        return self


class GiftCardPaymentIn(BaseModel):
    """Part of the bill paid with a gift card (礼品卡): its code, PIN and the amount taken."""

    code: str = Field(min_length=4, max_length=40,
                      description="As printed; spaces, dashes and case are ignored")
    pin: str = Field(min_length=1, max_length=12)
    amount_minor: int = Field(gt=0, le=MAX_MINOR)


class PaymentsIn(BaseModel):
    cash_minor: int = Field(default=0, ge=0, le=MAX_MINOR)
    card_minor: int = Field(default=0, ge=0, le=MAX_MINOR)
    wallet_minor: int = Field(default=0, ge=0, le=MAX_MINOR)
    gift_cards: list[GiftCardPaymentIn] = Field(
        default_factory=list, max_length=5,
        description="Gift cards, each partly or wholly spent; a refund returns to the card")

    @property
    def gift_card_minor(self) -> int:
        return sum(g.amount_minor for g in self.gift_cards)


class SaleCreate(BaseModel):
    store_id: uuid.UUID | None = Field(default=None, description="Defaults to the key's store")
    member_id: uuid.UUID | None = None
    card_no: str | None = Field(default=None, max_length=20)
    phone: str | None = Field(default=None, max_length=40)
    lines: list[LineIn] = Field(min_length=1, max_length=500)
    coupon_codes: list[str] = Field(default_factory=list, max_length=5,
                                    description="Coupons to apply, in order")
    points_to_redeem: int = Field(default=0, ge=0, le=1_000_000_000)
    payments: PaymentsIn = Field(default_factory=PaymentsIn)
    occurred_at: datetime | None = Field(
        default=None, description="When the customer paid; an offline till sends it late")
    receipt_no: str | None = Field(default=None, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")


class ReceiptLine(BaseModel):
    id: uuid.UUID
    line_no: int
    product_id: uuid.UUID
    sku: str
    name: str
    quantity: int
    unit_price_minor: int
    discount_minor: int
    total_minor: int
    refunded_quantity: int
    gift_promotion_id: uuid.UUID | None = Field(
        default=None, description="Set on a gift line: the promotion that gave it")


class ReceiptPromotion(BaseModel):
    """A promotion that applied to the sale and what it gave."""

    id: uuid.UUID
    name: str
    kind: str
    saving_minor: int
    gift_value_minor: int = 0
    cashback_minor: int = 0


class ReceiptDiscount(BaseModel):
    kind: str
    label: str
    amount_minor: int


class ReceiptPayment(BaseModel):
    method: str
    amount_minor: int
    refunded_minor: int


class TierInfo(BaseModel):
    code: str
    name: str


class NextTier(TierInfo):
    threshold: int
    remaining: int


class Receipt(BaseModel):
    sale_id: uuid.UUID
    receipt_no: str
    store_id: uuid.UUID
    member_id: uuid.UUID | None
    occurred_at: datetime
    currency: str
    lines: list[ReceiptLine]
    subtotal_minor: int
    discounts: list[ReceiptDiscount]
    promotions: list[ReceiptPromotion] = Field(default_factory=list)
    discount_minor: int
    total_minor: int
    refunded_minor: int
    cashback_minor: int = Field(default=0, description="Credited to the wallet as bonus")
    payments: list[ReceiptPayment]
    points_earned: int
    points_redeemed: int
    points_available: int | None
    points_pending: int | None
    points_debt: int | None
    wallet_balance_minor: int | None
    tier: TierInfo | None
    next_tier: NextTier | None
    status: str


class RefundLineIn(BaseModel):
    line_id: uuid.UUID
    quantity: int = Field(gt=0, le=9_999)


class RefundCreate(BaseModel):
    lines: list[RefundLineIn] | None = Field(
        default=None, max_length=500, description="Omit to refund everything not yet refunded")
    reason: str = Field(default="", max_length=500)


class RefundRead(BaseModel):
    refund_id: uuid.UUID
    sale_id: uuid.UUID
    amount_minor: int
    returned: list[ReceiptPayment]
    points_clawed_back: int
    points_debt: int
    points_returned: int
    wallet_returned_minor: int
    cashback_reclaimed_minor: int = 0
    cashback_unrecovered_minor: int = Field(
        default=0, description="Cashback the wallet no longer held: the shop's loss")
    sale: Receipt


# ---------------------------------------------------------------- quotes


class QuoteLine(BaseModel):
    """A priced line of a quote: what each stage took off it."""

    line_no: int
    product_id: uuid.UUID
    sku: str
    name: str
    quantity: int
    unit_price_minor: int
    promotion_discount_minor: int
    coupon_discount_minor: int
    tier_discount_minor: int
    discount_minor: int
    total_minor: int
    gift_promotion_id: uuid.UUID | None = None


class QuoteCoupon(BaseModel):
    code: str
    label: str
    discount_minor: int


class NearMissRead(BaseModel):
    """A promotion the basket almost reaches: what is missing, with the till's text."""

    promotion_id: uuid.UUID
    name: str
    kind: str
    message_key: str
    missing_quantity: int
    missing_minor: int
    products: list[uuid.UUID]
    categories: list[uuid.UUID]
    params: dict[str, Any]
    texts: dict[str, str] = Field(description="The hint in each language (en, zh_CN)")


class SaleQuote(BaseModel):
    """What the basket would cost if checked out now; nothing is written or reserved.

    ``total_minor`` is what the payments of the sale must add up to (points included at
    their value); limits and coupons are checked again, under locks, at checkout.
    """

    store_id: uuid.UUID
    member_id: uuid.UUID | None
    occurred_at: datetime
    currency: str
    lines: list[QuoteLine]
    subtotal_minor: int
    promotions: list[ReceiptPromotion]
    promotion_discount_minor: int
    coupons_allowed: bool
    coupons: list[QuoteCoupon]
    tier_discount: ReceiptDiscount | None
    discounts: list[ReceiptDiscount]
    discount_minor: int
    total_minor: int
    points_value_minor: int
    cashback_minor: int
    near_misses: list[NearMissRead]
