"""Sale and sale-line tables. Amounts are integer minor units and add up (CHECKs below).

``occurred_at`` is when the customer paid (an offline till may report it late);
``recorded_at`` is when patron learned of it.

Promotions: a sale line keeps the product's category as it was at the sale (promotions
select by category, and a refund reprices with the categories of the sale), and a gift a
promotion added is a line at zero price that names its promotion (``gift_promotion_id``).
``sale_promotions`` keeps, per promotion that applied, the definition it was priced with,
what it took off each line and what it gave (saving, gift value, cashback), and what
refunds have since given back to its budget.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from patron.core.models import Base, BigInt, JSONType, uuid_pk


class Sale(Base):
    __tablename__ = "sales"

    id: Mapped[uuid.UUID] = uuid_pk()
    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id"))
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"))
    cashier_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    receipt_no: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(16), default="pos")  # pos, web, import
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    subtotal_minor: Mapped[int] = mapped_column(BigInt)
    discount_minor: Mapped[int] = mapped_column(BigInt, default=0)
    total_minor: Mapped[int] = mapped_column(BigInt)
    refunded_minor: Mapped[int] = mapped_column(BigInt, default=0)
    points_earned: Mapped[int] = mapped_column(BigInt, default=0)
    points_redeemed: Mapped[int] = mapped_column(BigInt, default=0)
    tier_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tiers.id"))
    status: Mapped[str] = mapped_column(String(20), default="completed")

    lines: Mapped[list[SaleLine]] = relationship(
        cascade="all, delete-orphan", order_by="SaleLine.line_no", lazy="selectin"
    )
    payments: Mapped[list[SalePayment]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )
    discounts: Mapped[list[SaleDiscount]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )
    applied_promotions: Mapped[list[SalePromotion]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="SalePromotion.position"
    )

    __table_args__ = (
        UniqueConstraint("store_id", "receipt_no"),
        # Covering for the daily care selection (repurchase cycles, win-back): a member's
        # sales in time order with their totals, read from the index alone
        # (bench/care_jobs.py: the replenishment scan at 1 M members).
        Index("ix_sales_member_occurred", "member_id", "occurred_at", "id", "total_minor",
              "refunded_minor"),
        Index("ix_sales_store_occurred", "store_id", "occurred_at"),
        # The analytics warehouse's nightly catch-up: sales patron learned of since the
        # last sync, whatever day they happened (an offline till's, an import's).
        Index("ix_sales_recorded_at", "recorded_at"),
        CheckConstraint("subtotal_minor >= 0 AND discount_minor >= 0", name="non_negative"),
        CheckConstraint("total_minor = subtotal_minor - discount_minor", name="total_adds_up"),
        CheckConstraint("refunded_minor >= 0 AND refunded_minor <= total_minor",
                        name="refund_within_total"),
    )


class SaleLine(Base):
    __tablename__ = "sale_lines"

    id: Mapped[uuid.UUID] = uuid_pk()
    sale_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sales.id"))
    line_no: Mapped[int]
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id"), index=True)
    quantity: Mapped[int]
    unit_price_minor: Mapped[int] = mapped_column(BigInt)
    discount_minor: Mapped[int] = mapped_column(BigInt, default=0)
    total_minor: Mapped[int] = mapped_column(BigInt)
    refunded_quantity: Mapped[int] = mapped_column(default=0)
    category_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("categories.id"))
    gift_promotion_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("promotions.id"))

    __table_args__ = (
        UniqueConstraint("sale_id", "line_no"),
        # Covering for the care selection: what a sale's lines bought, without the table.
        Index("ix_sale_lines_sale_id", "sale_id", "quantity", "refunded_quantity",
              "product_id"),
        CheckConstraint("refunded_quantity >= 0 AND refunded_quantity <= quantity",
                        name="refund_within_quantity"),
        CheckConstraint("quantity > 0", name="quantity"),
        CheckConstraint("unit_price_minor >= 0 AND discount_minor >= 0", name="non_negative"),
        CheckConstraint("total_minor = quantity * unit_price_minor - discount_minor",
                        name="total_adds_up"),
    )


class SalePayment(Base):
    """How the customer paid: cash, card, wallet or points (their value in minor units)."""

    __tablename__ = "sale_payments"

    id: Mapped[uuid.UUID] = uuid_pk()
    sale_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sales.id"), index=True)
    method: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int] = mapped_column(BigInt)
    refunded_minor: Mapped[int] = mapped_column(BigInt, default=0)
    reference: Mapped[str | None] = mapped_column(String(64))  # wallet entry id, card ref

    __table_args__ = (
        CheckConstraint("method IN ('cash','card','wallet','points','gift_card','other')",
                        name="method"),
        CheckConstraint("amount_minor > 0 AND refunded_minor >= 0 "
                        "AND refunded_minor <= amount_minor", name="amounts"),
    )


class SaleDiscount(Base):
    """One reduction of a sale's price and why: a tier discount, a coupon, a promotion."""

    __tablename__ = "sale_discounts"

    id: Mapped[uuid.UUID] = uuid_pk()
    sale_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sales.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str | None] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200))
    amount_minor: Mapped[int] = mapped_column(BigInt)

    __table_args__ = (CheckConstraint("amount_minor > 0", name="amount"),)


class SalePromotion(Base):
    """One promotion that applied to a sale, as it was applied.

    ``definition`` is the engine's ``Promotion`` (JSON) at the sale and ``tier_code`` the
    tier the basket was priced for: a refund reprices the kept units with them.
    ``allocation`` lists ``[line_no, amount]`` pairs that add up to ``saving_minor``.
    ``value_minor`` (saving + gift value + cashback) is what the promotion gave away and
    what its budget counter grew by; ``discount_returned_minor`` and
    ``cashback_reclaimed_minor`` are what refunds have taken back from the customer (and
    given back to the budget), ``cashback_unrecovered_minor`` the cashback a refund could
    not take back because the wallet no longer held it.
    """

    __tablename__ = "sale_promotions"

    id: Mapped[uuid.UUID] = uuid_pk()
    sale_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sales.id"), index=True)
    promotion_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("promotions.id"), index=True)
    position: Mapped[int]  # the order the engine applied them in
    promotion_version: Mapped[int]
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(24))
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    tier_code: Mapped[str | None] = mapped_column(String(32))
    applications: Mapped[int] = mapped_column(default=1)
    saving_minor: Mapped[int] = mapped_column(BigInt, default=0)
    gift_value_minor: Mapped[int] = mapped_column(BigInt, default=0)
    cashback_minor: Mapped[int] = mapped_column(BigInt, default=0)
    value_minor: Mapped[int] = mapped_column(BigInt, default=0)
    allocation: Mapped[list[list[int]]] = mapped_column(JSONType)
    discount_returned_minor: Mapped[int] = mapped_column(BigInt, default=0)
    cashback_reclaimed_minor: Mapped[int] = mapped_column(BigInt, default=0)
    cashback_unrecovered_minor: Mapped[int] = mapped_column(BigInt, default=0)

    __table_args__ = (
        UniqueConstraint("sale_id", "promotion_id"),
        CheckConstraint("saving_minor >= 0 AND gift_value_minor >= 0 AND cashback_minor >= 0",
                        name="non_negative"),
        CheckConstraint("value_minor = saving_minor + gift_value_minor + cashback_minor",
                        name="value_adds_up"),
        CheckConstraint("discount_returned_minor >= 0 "
                        "AND discount_returned_minor <= saving_minor + gift_value_minor",
                        name="returned_within_discount"),
        CheckConstraint("cashback_reclaimed_minor >= 0 AND cashback_unrecovered_minor >= 0 "
                        "AND cashback_reclaimed_minor + cashback_unrecovered_minor "
                        "<= cashback_minor", name="cashback_within_award"),
    )


class Refund(Base):
    __tablename__ = "refunds"

    id: Mapped[uuid.UUID] = uuid_pk()
    sale_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sales.id"), index=True)
    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id"))
    amount_minor: Mapped[int] = mapped_column(BigInt)
    points_clawed_back: Mapped[int] = mapped_column(BigInt, default=0)
    points_debt: Mapped[int] = mapped_column(BigInt, default=0)
    points_returned: Mapped[int] = mapped_column(BigInt, default=0)
    wallet_returned_minor: Mapped[int] = mapped_column(BigInt, default=0)
    cashback_reclaimed_minor: Mapped[int] = mapped_column(BigInt, default=0)
    cashback_unrecovered_minor: Mapped[int] = mapped_column(BigInt, default=0)
    reason: Mapped[str] = mapped_column(String(500), default="")
    actor_label: Mapped[str] = mapped_column(String(200))
    occurred_at: Mapped[datetime]

    lines: Mapped[list[RefundLine]] = relationship(cascade="all, delete-orphan",
                                                   lazy="selectin")

    __table_args__ = (CheckConstraint("amount_minor >= 0", name="amount"),)


class RefundLine(Base):
    __tablename__ = "refund_lines"

    id: Mapped[uuid.UUID] = uuid_pk()
    refund_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("refunds.id"), index=True)
    sale_line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sale_lines.id"))
    quantity: Mapped[int]
    amount_minor: Mapped[int] = mapped_column(BigInt)

    __table_args__ = (CheckConstraint("quantity > 0 AND amount_minor >= 0", name="amounts"),)
