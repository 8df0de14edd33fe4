"""Reads of the catalogue used by other domains (checkout looks products up here)."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from patron.catalog.models import Product


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

