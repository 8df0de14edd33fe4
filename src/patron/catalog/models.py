"""Catalogue tables. Prices are integer minor units.

``replenish_days`` is how long a typical purchase lasts (baby formula about 21 days, coffee
beans about 30): the care and analytics domains time reminders and repurchase expectations
from it. A product's own value overrides its category's.
"""

from __future__ import annotations

import uuid

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from patron.core.models import Base, BigInt, uuid_pk


class Category(Base):
    __tablename__ = "categories"

    id: Mapped[uuid.UUID] = uuid_pk()
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    replenish_days: Mapped[int | None]

    __table_args__ = (
        CheckConstraint("replenish_days IS NULL OR replenish_days > 0", name="replenish_days"),
    )


class Product(Base):
    __tablename__ = "products"

    id: Mapped[uuid.UUID] = uuid_pk()
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    category_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("categories.id"), index=True)
    price_minor: Mapped[int] = mapped_column(BigInt)
    replenish_days: Mapped[int | None]
    active: Mapped[bool] = mapped_column(default=True)

    __table_args__ = (
        CheckConstraint("price_minor >= 0", name="price_minor"),
        CheckConstraint("replenish_days IS NULL OR replenish_days > 0", name="replenish_days"),
    )
