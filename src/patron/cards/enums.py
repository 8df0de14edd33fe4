from __future__ import annotations

from enum import StrEnum


class StampBasis(StrEnum):
    """What earns a stamp."""

    ITEM = "item"  # one stamp per qualifying item bought
    VISIT = "visit"  # one stamp per sale with at least one qualifying item


class RewardKind(StrEnum):
    """What a full card gives."""

    PRODUCT = "product"  # one free ``reward_product_id``
    FREE_ITEM = "free_item"  # the till takes 100 % off one qualifying item


class TargetKind(StrEnum):
    PRODUCT = "product"
    CATEGORY = "category"


class StampEntryKind(StrEnum):
    EARN = "earn"  # stamps for a sale
    REWARD = "reward"  # a full card turns ``stamps_needed`` stamps into a reward
    REWARD_REVOKED = "reward_revoked"  # a refund takes back an unused reward: stamps return
    REVERSE = "reverse"  # a refund removes stamps
    DEBT = "debt"  # stamps a refund could not remove (their reward was used or expired)
    DEBT_SETTLE = "debt_settle"  # new stamps pay off the debt first
    MERGE_IN = "merge_in"
    MERGE_OUT = "merge_out"


class RewardStatus(StrEnum):
    AVAILABLE = "available"
    REDEEMED = "redeemed"
    EXPIRED = "expired"
    REVOKED = "revoked"  # taken back by the refund of a sale whose stamps it held


class PackageStatus(StrEnum):
    ACTIVE = "active"
    USED_UP = "used_up"
    EXPIRED = "expired"
    REFUNDED = "refunded"


class VisitEntryKind(StrEnum):
    SELL = "sell"  # +visits when the package is sold
    USE = "use"  # -1
    USE_RETURN = "use_return"  # +1: a use given back (the service's sale was refunded)
    REFUND = "refund"  # -visits left: the unused visits are paid back pro rata
    EXPIRE = "expire"  # -visits left at expiry


class GiftCardStatus(StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"  # its balance moved to another card (transfer)
    VOID = "void"
    EXPIRED = "expired"


class GiftCardEntryKind(StrEnum):
    ISSUE = "issue"
    REDEEM = "redeem"
    REDEEM_REFUND = "redeem_refund"  # a refunded sale gives back what the card paid
    TRANSFER_OUT = "transfer_out"
    TRANSFER_IN = "transfer_in"
    VOID = "void"
    EXPIRE = "expire"
