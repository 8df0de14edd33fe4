"""Coupon and referral tables.

Design overview
---------------
A ``CouponTemplate`` holds the terms (fixed amount or percent with a cap, minimum spend,
scope, validity, limits); a ``Coupon`` is one issued instance with its own unguessable
``code`` and its own window (``valid_from`` .. ``valid_until``), copied at issue so a later
edit of the template's window never moves it. The discount terms are read from the
template; they are frozen once the template has issued a coupon (service.update_template).

Invariants, each held by the database and not only by the code:

* a coupon is redeemed at most once, ever: ``coupon_redemptions.coupon_id`` is UNIQUE and
  redemption rows are never updated or deleted;
* a refund that gives a coupon back does not touch the redemption: it appends a
  ``CouponRestoration`` (UNIQUE per redemption, so at most once) that points at a new
  replacement coupon (``coupons.replaces_coupon_id``, also UNIQUE); the original stays
  ``redeemed`` forever;
* a referred member is rewarded (or found not to qualify) at most once:
  ``referral_rewards.referred_member_id`` is UNIQUE; one referral code per member and one
  referrer per referred member, likewise UNIQUE;
* amounts are integer minor units; CHECKs refuse impossible terms (a percent outside
  1-100, a zero discount, a window that ends before it starts).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from patron.core.models import Base, BigInt, uuid_pk

CODE_LENGTH = 16  # room for the 12-character coupon codes and 8-character referral codes


class CouponTemplate(Base):
    __tablename__ = "coupon_templates"

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(1000), default="")
    kind: Mapped[str] = mapped_column(String(8))
    amount_minor: Mapped[int | None] = mapped_column(BigInt)
    percent: Mapped[int | None]
    cap_minor: Mapped[int | None] = mapped_column(BigInt)
    min_spend_minor: Mapped[int] = mapped_column(BigInt, default=0)
    scope: Mapped[str] = mapped_column(String(16), default="all")
    validity: Mapped[str] = mapped_column(String(8))
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    valid_days: Mapped[int | None]
    per_member_limit: Mapped[int | None]
    total_limit: Mapped[int | None]
    active: Mapped[bool] = mapped_column(default=True)
    restore_on_refund: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    targets: Mapped[list[CouponTemplateTarget]] = relationship(
        cascade="all, delete-orphan", lazy="selectin")

    __table_args__ = (
        CheckConstraint("kind IN ('fixed','percent')", name="kind"),
        CheckConstraint(
            "(kind = 'fixed' AND amount_minor > 0 AND percent IS NULL AND cap_minor IS NULL)"
            " OR (kind = 'percent' AND amount_minor IS NULL AND percent BETWEEN 1 AND 100"
            " AND (cap_minor IS NULL OR cap_minor > 0))", name="terms"),
        CheckConstraint("min_spend_minor >= 0", name="min_spend"),
        CheckConstraint("scope IN ('all','categories','products')", name="scope"),
        CheckConstraint(
            "(validity = 'fixed' AND ends_at IS NOT NULL AND valid_days IS NULL"
            " AND (starts_at IS NULL OR starts_at < ends_at))"
            " OR (validity = 'days' AND valid_days > 0 AND starts_at IS NULL"
            " AND ends_at IS NULL)", name="validity"),
        CheckConstraint("(per_member_limit IS NULL OR per_member_limit > 0)"
                        " AND (total_limit IS NULL OR total_limit > 0)", name="limits"),
    )


class CouponTemplateTarget(Base):
    """One category or product a scoped template applies to (exactly one of the two)."""

    __tablename__ = "coupon_template_targets"

    id: Mapped[uuid.UUID] = uuid_pk()
    template_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("coupon_templates.id"))
    category_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("categories.id"))
    product_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("products.id"))

    __table_args__ = (
        CheckConstraint("(category_id IS NULL) <> (product_id IS NULL)", name="one_target"),
        Index("uq_coupon_template_targets_category", "template_id", "category_id",
              unique=True),
        Index("uq_coupon_template_targets_product", "template_id", "product_id", unique=True),
    )


class Coupon(Base):
    """An issued coupon. ``member_id`` is NULL for a bearer coupon (whoever holds the code)."""

    __tablename__ = "coupons"

    id: Mapped[uuid.UUID] = uuid_pk()
    template_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("coupon_templates.id"))
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"))
    code: Mapped[str] = mapped_column(String(CODE_LENGTH), unique=True)
    status: Mapped[str] = mapped_column(String(10), default="issued")
    source: Mapped[str] = mapped_column(String(16))
    source_ref: Mapped[str | None] = mapped_column(String(64))  # campaign id, referral id...
    issued_at: Mapped[datetime]
    issued_by: Mapped[str] = mapped_column(String(200))
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]
    replaces_coupon_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("coupons.id"), unique=True)
    voided_at: Mapped[datetime | None]
    voided_by: Mapped[str | None] = mapped_column(String(200))
    void_reason: Mapped[str] = mapped_column(String(500), default="")

    __table_args__ = (
        CheckConstraint("status IN ('issued','redeemed','void','expired')", name="status"),
        CheckConstraint("valid_until > valid_from", name="window"),
        Index("ix_coupons_member_status", "member_id", "status"),
        Index("ix_coupons_status_valid_until", "status", "valid_until"),
        Index("ix_coupons_template_member", "template_id", "member_id"),
    )


class CouponRedemption(Base):
    """The one use of a coupon. Append-only; UNIQUE(coupon_id) is the last line of defence
    against a double redemption whatever the code above it does."""

    __tablename__ = "coupon_redemptions"

    id: Mapped[uuid.UUID] = uuid_pk()
    coupon_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("coupons.id"), unique=True)
    template_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("coupon_templates.id"))
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"))
    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id"))
    sale_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sales.id"), index=True)
    reference: Mapped[str | None] = mapped_column(String(64))  # a till's own receipt number
    eligible_minor: Mapped[int] = mapped_column(BigInt)  # the in-scope subtotal it applied to
    discount_minor: Mapped[int] = mapped_column(BigInt)
    actor_label: Mapped[str] = mapped_column(String(200))
    redeemed_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("discount_minor > 0 AND discount_minor <= eligible_minor",
                        name="discount"),
        Index("ix_coupon_redemptions_template_member", "template_id", "member_id"),
    )


class CouponRestoration(Base):
    """A refund gave a redeemed coupon's value back as a replacement coupon (at most once)."""

    __tablename__ = "coupon_restorations"

    id: Mapped[uuid.UUID] = uuid_pk()
    redemption_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("coupon_redemptions.id"), unique=True)
    original_coupon_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("coupons.id"))
    replacement_coupon_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("coupons.id"), unique=True)
    refund_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("refunds.id"))
    reason: Mapped[str] = mapped_column(String(500), default="")
    actor_label: Mapped[str] = mapped_column(String(200))
    restored_at: Mapped[datetime]


class ReferralCode(Base):
    """The code a member shares with friends; created on demand, one per member."""

    __tablename__ = "referral_codes"

    id: Mapped[uuid.UUID] = uuid_pk()
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), unique=True)
    code: Mapped[str] = mapped_column(String(CODE_LENGTH), unique=True)
    created_at: Mapped[datetime]


class ReferralAttribution(Base):
    """Who referred a member (one referrer per referred member, set once)."""

    __tablename__ = "referral_attributions"

    id: Mapped[uuid.UUID] = uuid_pk()
    referred_member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"),
                                                          unique=True)
    referrer_member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"),
                                                          index=True)
    code: Mapped[str] = mapped_column(String(CODE_LENGTH))
    actor_label: Mapped[str] = mapped_column(String(200))
    attributed_at: Mapped[datetime]


class ReferralRule(Base):
    """The brand's referral rule: one row (id 1), edited by the owner or a manager."""

    __tablename__ = "referral_rule"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    active: Mapped[bool] = mapped_column(default=False)
    referrer_template_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("coupon_templates.id"))
    referred_template_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("coupon_templates.id"))
    min_purchase_minor: Mapped[int] = mapped_column(BigInt, default=0)
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("id = 1", name="single_row"),
        CheckConstraint("min_purchase_minor >= 0", name="min_purchase"),
    )


class ReferralReward(Base):
    """The outcome of a referred member's first purchase; UNIQUE per referred member, so a
    referral is rewarded once even when two tills report a first purchase at once."""

    __tablename__ = "referral_rewards"

    id: Mapped[uuid.UUID] = uuid_pk()
    referred_member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"),
                                                          unique=True)
    referrer_member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"),
                                                          index=True)
    sale_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sales.id"))
    purchase_minor: Mapped[int] = mapped_column(BigInt)
    outcome: Mapped[str] = mapped_column(String(16))
    referrer_coupon_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("coupons.id"))
    referred_coupon_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("coupons.id"))
    occurred_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("outcome IN ('rewarded','below_minimum')", name="outcome"),
    )
