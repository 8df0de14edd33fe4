"""Points and tier tables.

Design overview (points): a member's account caches three numbers -- ``available`` points
they can spend, ``pending`` points still inside the return window, and ``debt`` (points a
refund could not take back, settled from future earnings). Every change is a
``PointsEntry`` carrying the signed deltas of all three and the values after it; entries
are append-only, and ``patron doctor`` proves the cached numbers equal their sums. Each
earning is also a ``PointsLot`` with its own ``remaining`` count, when it becomes
available and when it expires: redemption consumes the oldest available lots first, expiry
writes an entry per lot. A transfer between members takes the sender's oldest lots and
gives the receiver new lots that keep their expiry; both sides' entries point at one
``PointsTransfer``. CHECK constraints refuse negative balances and lots.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from patron.core.models import Base, BigInt, uuid_pk


class LoyaltyProgram(Base):
    """The brand's points and tier rules (one row; edited by the owner)."""

    __tablename__ = "loyalty_program"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    points_per_major: Mapped[int] = mapped_column(default=1)  # earn per 1 currency unit
    rounding: Mapped[str] = mapped_column(String(8), default="floor")
    pending_days: Mapped[int] = mapped_column(default=7)
    expiry_policy: Mapped[str] = mapped_column(String(20), default="end_of_next_year")
    expiry_months: Mapped[int] = mapped_column(default=12)
    expiring_notice_days: Mapped[int] = mapped_column(default=30)
    points_per_major_redeemed: Mapped[int] = mapped_column(default=100)  # 100 points = 1 unit
    birthday_multiplier_pct: Mapped[int] = mapped_column(default=200)
    tier_basis: Mapped[str] = mapped_column(String(8), default="spend")
    downgrade_grace_days: Mapped[int] = mapped_column(default=30)
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("points_per_major >= 0 AND points_per_major_redeemed > 0",
                        name="rates"),
        CheckConstraint("pending_days >= 0 AND expiry_months > 0", name="days"),
    )


class PointsMultiplier(Base):
    """Earn more on a product, a category or everything, always or in a period
    (double-points days). ``pct`` 200 = twice the points."""

    __tablename__ = "points_multipliers"

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(10))  # all, category, product
    target_id: Mapped[uuid.UUID | None]
    pct: Mapped[int]
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    active: Mapped[bool] = mapped_column(default=True)

    __table_args__ = (
        CheckConstraint("scope IN ('all','category','product')", name="scope"),
        CheckConstraint("pct >= 0 AND pct <= 10000", name="pct"),
    )


class PointsAccount(Base):
    __tablename__ = "points_accounts"

    id: Mapped[uuid.UUID] = uuid_pk()
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), unique=True)
    available: Mapped[int] = mapped_column(BigInt, default=0)
    pending: Mapped[int] = mapped_column(BigInt, default=0)
    debt: Mapped[int] = mapped_column(BigInt, default=0)
    lifetime_earned: Mapped[int] = mapped_column(BigInt, default=0)
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("available >= 0 AND pending >= 0 AND debt >= 0", name="non_negative"),
    )


class PointsLot(Base):
    __tablename__ = "points_lots"

    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("points_accounts.id"))
    sale_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sales.id"), index=True)
    points: Mapped[int] = mapped_column(BigInt)
    remaining: Mapped[int] = mapped_column(BigInt)
    is_pending: Mapped[bool] = mapped_column(default=False)
    earned_at: Mapped[datetime]
    available_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    expiring_notified_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("remaining >= 0 AND remaining <= points", name="remaining"),
        Index("ix_points_lots_account_open", "account_id", "remaining", "earned_at"),
        Index("ix_points_lots_expires_at", "expires_at"),
        Index("ix_points_lots_available_at", "is_pending", "available_at"),
    )


class PointsEntry(Base):
    __tablename__ = "points_entries"

    seq: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("points_accounts.id"))
    kind: Mapped[str] = mapped_column(String(16))
    available_delta: Mapped[int] = mapped_column(BigInt)
    pending_delta: Mapped[int] = mapped_column(BigInt)
    debt_delta: Mapped[int] = mapped_column(BigInt)
    available_after: Mapped[int] = mapped_column(BigInt)
    pending_after: Mapped[int] = mapped_column(BigInt)
    debt_after: Mapped[int] = mapped_column(BigInt)
    lot_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("points_lots.id"))
    sale_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sales.id"))
    store_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stores.id"))
    #: The transfer both sides of a points transfer belong to (``transfer_out`` on the
    #: sender, ``transfer_in`` per received lot on the receiver).
    transfer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("points_transfers.id"))
    actor_label: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(500), default="")
    occurred_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_points_entries_account_seq", "account_id", "seq"),
        Index("ix_points_entries_sale", "sale_id"),
        Index("ix_points_entries_transfer", "transfer_id"),
        CheckConstraint("available_after >= 0 AND pending_after >= 0 AND debt_after >= 0",
                        name="after_non_negative"),
    )


class PointsTransfer(Base):
    """Points one member gave another (family sharing, a gift): the one reference both
    ledgers' entries point at. Append-only like the entries; a transfer is undone, if ever,
    by a transfer back."""

    __tablename__ = "points_transfers"

    id: Mapped[uuid.UUID] = uuid_pk()
    from_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("points_accounts.id"),
                                                       index=True)
    to_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("points_accounts.id"),
                                                     index=True)
    points: Mapped[int] = mapped_column(BigInt)
    store_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stores.id"))
    actor_label: Mapped[str] = mapped_column(String(200))
    note: Mapped[str] = mapped_column(String(500), default="")
    occurred_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("points > 0", name="points"),
        CheckConstraint("from_account_id <> to_account_id", name="two_accounts"),
    )


class Tier(Base):
    __tablename__ = "tiers"

    id: Mapped[uuid.UUID] = uuid_pk()
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    rank: Mapped[int] = mapped_column(unique=True)  # 0 = entry tier
    threshold: Mapped[int] = mapped_column(BigInt)  # minor units or points, by tier_basis
    points_multiplier_pct: Mapped[int] = mapped_column(default=100)
    discount_pct: Mapped[int] = mapped_column(default=0)
    #: Issued by the birthday greeting to members of this tier, instead of the care rule's
    #: own coupon (gold members get a better birthday present than associates).
    birthday_coupon_template_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("coupon_templates.id"))
    active: Mapped[bool] = mapped_column(default=True)

    __table_args__ = (
        CheckConstraint("threshold >= 0", name="threshold"),
        CheckConstraint("discount_pct BETWEEN 0 AND 100", name="discount_pct"),
        CheckConstraint("points_multiplier_pct BETWEEN 0 AND 10000", name="multiplier"),
    )


class TierPlanPerk(Base):
    """A paid plan whose perks the members of a tier enjoy without paying for it.

    A member "has the perks" of a plan while they hold a running paid period of it or sit in
    a tier listed here for it; promotions limited to a plan's members check exactly that.
    """

    __tablename__ = "tier_plan_perks"

    tier_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tiers.id"), primary_key=True)
    plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("membership_plans.id"),
                                               primary_key=True)


class MemberTier(Base):
    """A member's current tier; ``held_until`` is when a downgrade may first happen."""

    __tablename__ = "member_tiers"

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    tier_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tiers.id"))
    since: Mapped[datetime]
    held_until: Mapped[date | None]
    source: Mapped[str] = mapped_column(String(16), default="earned")  # earned, paid, manual


class TierChange(Base):
    __tablename__ = "tier_changes"

    seq: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    from_tier_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tiers.id"))
    to_tier_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tiers.id"))
    reason: Mapped[str] = mapped_column(String(200))
    qualifying_value: Mapped[int] = mapped_column(BigInt)
    at: Mapped[datetime]


class MembershipPlan(Base):
    """A paid membership (the Sam's Club case): a fee for a period and its benefits.

    It is sold at the till as an ordinary product (``product_id``), so purchases and
    renewals are sale lines and the fee revenue is reportable from the sales history.
    """

    __tablename__ = "membership_plans"

    id: Mapped[uuid.UUID] = uuid_pk()
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id"), unique=True)
    duration_days: Mapped[int]
    tier_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tiers.id"))
    benefits: Mapped[str] = mapped_column(String(1000), default="")
    active: Mapped[bool] = mapped_column(default=True)

    __table_args__ = (CheckConstraint("duration_days BETWEEN 1 AND 3660", name="duration"),)


class Membership(Base):
    """One paid period of a member; a renewal is a new period starting where the last ends."""

    __tablename__ = "memberships"

    id: Mapped[uuid.UUID] = uuid_pk()
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("membership_plans.id"))
    sale_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sales.id"), index=True)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(12), default="active")
    expiring_notified_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="period"),
        CheckConstraint("status IN ('active','expired','cancelled')", name="status"),
        Index("ix_memberships_ends_at", "status", "ends_at"),
    )
