"""Reads of the catalogue used by other domains (checkout looks products up here)."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from patron.catalog.models import Category, Product


def find_products(session: Session, *, ids: Collection[uuid.UUID] = (),
                  skus: Collection[str] = ()) -> list[Product]:
    """Products by id or SKU in one query (inactive ones included: the caller decides)."""
    conds = []
    if ids:
        conds.append(Product.id.in_(list(ids)))
    if skus:
        conds.append(Product.sku.in_(list(skus)))
    if not conds:
        return []
    return list(session.scalars(select(Product).where(or_(*conds))))


def replenish_days(session: Session, *, product: Product) -> int | None:
    """A product's own replenishment cycle, else its category's."""
    if product.replenish_days is not None:
        return product.replenish_days
    category = session.get(Category, product.category_id)
    return category.replenish_days if category else None
