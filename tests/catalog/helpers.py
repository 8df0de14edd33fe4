"""Small factories for catalogue tests: categories, products, principals and CSV bytes."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.auth.principal import Principal
from patron.catalog import service as catalog
from patron.catalog.models import Category, Product
from patron.catalog.schemas import CategoryCreate, ProductCreate
from patron.core.clock import Clock
from tests.factories import World


def make_category(session: Session, clock: Clock, **overrides: Any) -> Category:
    n = uuid.uuid4().hex[:6]
    data = {"code": f"cat-{n}", "name": f"Category {n}"} | overrides
    return catalog.create_category(session, clock=clock, actor=None, data=CategoryCreate(**data))


def make_product(session: Session, clock: Clock, category: Category,
                 **overrides: Any) -> Product:
    n = uuid.uuid4().hex[:6]
    data = {"sku": f"SKU-{n}", "name": f"Product {n}", "category_id": category.id,
            "price_minor": 1250} | overrides
    return catalog.create_product(session, clock=clock, actor=None, data=ProductCreate(**data))


def manager(world: World) -> Principal:
    return auth.principal_for_user(world.manager_a)


def owner(world: World) -> Principal:
    return auth.principal_for_user(world.owner)


def cashier(world: World) -> Principal:
    return auth.principal_for_user(world.cashier_a)


def pos_key(session: Session, clock: Clock, world: World) -> Principal:
    principal = auth.principal_for_api_key(session, clock=clock, token=world.key_a)
    assert principal is not None
    return principal


def csv_bytes(headers: list[str], rows: list[list[str]], *, encoding: str = "utf-8",
              delimiter: str = ",") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter)
    writer.writerow(headers)
    writer.writerows(rows)
    return out.getvalue().encode(encoding)
