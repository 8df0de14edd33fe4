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



def replenishment_cycles(session: Session) -> dict[uuid.UUID, tuple[uuid.UUID, int, str]]:
    """Active products that run out: product id -> (category id, cycle days, name).

    A product's own cycle wins over its category's; products with neither are left out.
    """
    rows = session.execute(
        select(Product.id, Product.category_id, Product.name, Product.replenish_days,
               Category.replenish_days)
        .join(Category, Category.id == Product.category_id)
        .where(Product.active.is_(True),
               or_(Product.replenish_days.is_not(None), Category.replenish_days.is_not(None))))
    return {pid: (cid, int(own or cat or 0), name) for pid, cid, name, own, cat in rows}
