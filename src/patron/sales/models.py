"""Sale and sale-line tables. Amounts are integer minor units and add up (CHECKs below).

``occurred_at`` is when the customer paid (an offline till may report it late);
``recorded_at`` is when patron learned of it.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from patron.core.models import Base, BigInt, uuid_pk


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

    lines: Mapped[list[SaleLine]] = relationship(
        cascade="all, delete-orphan", order_by="SaleLine.line_no", lazy="selectin"
    )

    __table_args__ = (
        UniqueConstraint("store_id", "receipt_no"),
        Index("ix_sales_member_occurred", "member_id", "occurred_at"),
        Index("ix_sales_store_occurred", "store_id", "occurred_at"),
        CheckConstraint("subtotal_minor >= 0 AND discount_minor >= 0", name="non_negative"),
        CheckConstraint("total_minor = subtotal_minor - discount_minor", name="total_adds_up"),
    )


class SaleLine(Base):
    __tablename__ = "sale_lines"

    id: Mapped[uuid.UUID] = uuid_pk()
    sale_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sales.id"), index=True)
    line_no: Mapped[int]
    product_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("products.id"), index=True)
    quantity: Mapped[int]
    unit_price_minor: Mapped[int] = mapped_column(BigInt)
    discount_minor: Mapped[int] = mapped_column(BigInt, default=0)
    total_minor: Mapped[int] = mapped_column(BigInt)

    __table_args__ = (
        UniqueConstraint("sale_id", "line_no"),
        CheckConstraint("quantity > 0", name="quantity"),
        CheckConstraint("unit_price_minor >= 0 AND discount_minor >= 0", name="non_negative"),
        CheckConstraint("total_minor = quantity * unit_price_minor - discount_minor",
                        name="total_adds_up"),
    )
