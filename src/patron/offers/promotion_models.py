"""Promotion tables: the definitions merchants keep, and the counters limits are checked on.

Design overview
---------------
``promotions`` holds one row per promotion: the engine's ``PromotionSpec`` split into
columns (name, priority, the combination flags, the limits) and JSON documents (``config``,
``schedule``, ``audience``), each validated by the engine's own models
(``offers.promotions.parse_promotion``) before it is stored, so a stored row always parses.
``version`` grows by one with every change; a sale keeps the definition it was priced with
(``sale_promotions.definition``), so a refund reprices with the promotion as it was.

Counters. ``promotion_usage`` (one row per promotion) and ``promotion_member_usage`` (one
row per promotion and member) count uses and the budget given away. They are kept for
*limited* promotions only: checkout locks the rows of the limited promotions that may
apply (``SELECT ... FOR UPDATE`` on PostgreSQL, in promotion-id order; on SQLite the
write transaction already holds the database lock), prices the basket with what they say
and adds to them in the same transaction. Each row carries a copy of its limit so that the
database itself refuses to count past it (CHECK), whatever the code above does; a change
of limits rewrites the copies (``promotion_service.update_promotion``). Uses are never
given back; budget is, when a refund takes a discount or cashback back.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from patron.core.models import Base, BigInt, JSONType, uuid_pk

KINDS_SQL = ("'member_price','nth_item','volume','buy_x_get_y','bundle','category_discount',"
             "'spend_discount','spend_gift','cashback'")


class PromotionRecord(Base):
    """A stored promotion (the engine's ``Promotion`` is built from it)."""

    __tablename__ = "promotions"

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(24))  # config.kind, for lists and reports
    priority: Mapped[int] = mapped_column(default=100)
    exclusive: Mapped[bool] = mapped_column(default=False)
    stackable_with_coupons: Mapped[bool] = mapped_column(default=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    schedule: Mapped[dict[str, Any]] = mapped_column(JSONType)
    audience: Mapped[dict[str, Any]] = mapped_column(JSONType)  # stores, tiers, segments...
    per_member_limit: Mapped[int | None]
    total_limit: Mapped[int | None]
    budget_minor: Mapped[int | None] = mapped_column(BigInt)
    active: Mapped[bool] = mapped_column(default=True)
    version: Mapped[int] = mapped_column(default=1)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(f"kind IN ({KINDS_SQL})", name="kind"),
        CheckConstraint("priority >= 0", name="priority"),
        CheckConstraint("(per_member_limit IS NULL OR per_member_limit > 0)"
                        " AND (total_limit IS NULL OR total_limit > 0)"
                        " AND (budget_minor IS NULL OR budget_minor > 0)", name="limits"),
        CheckConstraint("version >= 1", name="version"),
        Index("ix_promotions_active", "active"),
    )

    @property
    def limited(self) -> bool:
        return self.per_member_limit is not None or self.total_limit is not None \
            or self.budget_minor is not None


class PromotionUsage(Base):
    """Uses and budget of one promotion so far; its limits copied for the CHECKs."""

    __tablename__ = "promotion_usage"

    promotion_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("promotions.id"),
                                                    primary_key=True)
    uses: Mapped[int] = mapped_column(BigInt, default=0)
    budget_spent_minor: Mapped[int] = mapped_column(BigInt, default=0)
    total_limit: Mapped[int | None]
    budget_minor: Mapped[int | None] = mapped_column(BigInt)

    __table_args__ = (
        CheckConstraint("uses >= 0 AND budget_spent_minor >= 0", name="non_negative"),
        CheckConstraint("total_limit IS NULL OR uses <= total_limit", name="within_total"),
        CheckConstraint("budget_minor IS NULL OR budget_spent_minor <= budget_minor",
                        name="within_budget"),
    )


class PromotionMemberUsage(Base):
    """How many times one member has had one promotion; the per-member limit copied."""

    __tablename__ = "promotion_member_usage"

    promotion_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("promotions.id"),
                                                    primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True,
                                                 index=True)
    uses: Mapped[int] = mapped_column(BigInt, default=0)
    per_member_limit: Mapped[int | None]

    __table_args__ = (
        CheckConstraint("uses >= 0", name="non_negative"),
        CheckConstraint("per_member_limit IS NULL OR uses <= per_member_limit",
                        name="within_limit"),
    )
