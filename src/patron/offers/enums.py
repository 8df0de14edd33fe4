from __future__ import annotations

from enum import StrEnum


class CouponKind(StrEnum):
    FIXED = "fixed"  # amount_minor off
    PERCENT = "percent"  # percent off, at most cap_minor


class CouponScope(StrEnum):
    """Which lines of a basket a coupon applies to."""

    ALL = "all"
    CATEGORIES = "categories"
    PRODUCTS = "products"


class Validity(StrEnum):
    """How an issued coupon's window is set: the template's fixed window, or N days."""

    FIXED = "fixed"  # starts_at (optional) .. ends_at
    DAYS = "days"  # issued_at .. issued_at + valid_days


class CouponStatus(StrEnum):
    ISSUED = "issued"
    REDEEMED = "redeemed"
    VOID = "void"
    EXPIRED = "expired"


class CouponSource(StrEnum):
    MANUAL = "manual"
    CAMPAIGN = "campaign"
    REFERRAL = "referral"
    BIRTHDAY = "birthday"
    CARE = "care"
    RESTORE = "restore"  # a replacement for a coupon whose sale was refunded
    IMPORT = "import"


class ReferralOutcome(StrEnum):
    REWARDED = "rewarded"
    BELOW_MINIMUM = "below_minimum"  # the first purchase was too small: never rewarded
