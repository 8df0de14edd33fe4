"""Test data for the offers tests: templates, a small catalogue, baskets."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from patron.auth.principal import Principal
from patron.catalog.models import Category, Product
from patron.core.clock import Clock
from patron.offers import service as offers
from patron.offers.models import CouponTemplate
from patron.offers.rules import QuoteLine
from patron.offers.schemas import CouponTemplateCreate


def make_template(session: Session, clock: Clock, actor: Principal,
                  **overrides: Any) -> CouponTemplate:
    """A "10.00 off, valid 30 days" template unless told otherwise."""
    data: dict[str, Any] = {"name": "10 off", "kind": "fixed", "amount_minor": 1_000,
                            "validity": "days", "valid_days": 30} | overrides
    return offers.create_template(session, clock=clock, actor=actor,
                                  data=CouponTemplateCreate(**data))


def make_category(session: Session, code: str | None = None) -> Category:
    category = Category(code=code or f"C{uuid.uuid4().hex[:6]}", name="Category")
    session.add(category)
    session.flush()
    return category


def make_product(session: Session, category: Category, price_minor: int = 1_000) -> Product:
    product = Product(sku=f"SKU{uuid.uuid4().hex[:8]}", name="Product",
                      category_id=category.id, price_minor=price_minor)
    session.add(product)
    session.flush()
    return product


def line(price_minor: int, quantity: int = 1, product_id: uuid.UUID | None = None,
         category_id: uuid.UUID | None = None) -> QuoteLine:
    return QuoteLine(product_id=product_id or uuid.uuid4(), category_id=category_id,
                     quantity=quantity, unit_price_minor=price_minor)
