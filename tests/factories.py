"""Small factories for test data: ``make_member(session, clock, **overrides)`` and a world."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.auth.enums import Role
from patron.auth.models import User
from patron.catalog.models import Category, Product
from patron.core.clock import Clock
from patron.core.db import Database
from patron.members import service as members
from patron.members.models import Member, Store
from patron.members.schemas import MemberCreate, StoreCreate

PASSWORD = "correct-horse-battery"
_phones = itertools.count(13800000001)


def next_phone() -> str:
    """A fresh valid mainland mobile number (138xxxxxxxx)."""
    return str(next(_phones))


def make_store(session: Session, clock: Clock, **overrides: Any) -> Store:
    n = uuid.uuid4().hex[:6]
    data = {"code": f"S{n}", "name": f"Store {n}", "address": "1 Main St",
            "timezone": "Asia/Shanghai"} | overrides
    return members.create_store(session, clock=clock, actor=None, data=StoreCreate(**data))


def make_user(session: Session, clock: Clock, role: Role, stores: list[Store] | None = None,
              **overrides: Any) -> User:
    n = uuid.uuid4().hex[:6]
    return auth.create_user(
        session, clock=clock, actor=None, username=overrides.pop("username", f"{role.value}-{n}"),
        display_name=overrides.pop("display_name", f"{role.value.title()} {n}"),
        password=overrides.pop("password", PASSWORD), role=role,
        store_ids=[s.id for s in stores or []], **overrides)


def make_member(session: Session, clock: Clock, store: Store, **overrides: Any) -> Member:
    data = {"name": "Li Lei", "phone": next_phone(), "home_store_id": store.id} | overrides
    return members.enroll_member(session, clock=clock, actor=None, region="CN",
                                 data=MemberCreate(**data))


@dataclass
class World:
    store_a: Store
    store_b: Store
    owner: User
    manager_a: User
    cashier_a: User
    manager_b: User
    key_a: str
    key_b: str


def make_world(db: Database, clock: Clock) -> World:
    with db.write() as s:
        a = make_store(s, clock, code="A", name="Store A")
        b = make_store(s, clock, code="B", name="Store B")
        owner = make_user(s, clock, Role.OWNER, username="owner")
        manager_a = make_user(s, clock, Role.MANAGER, [a], username="manager-a")
        cashier_a = make_user(s, clock, Role.CASHIER, [a], username="cashier-a")
        manager_b = make_user(s, clock, Role.MANAGER, [b], username="manager-b")
        owner_p = auth.principal_for_user(owner)
        _, key_a = auth.create_api_key(s, clock=clock, actor=owner_p, store_id=a.id, name="till A")
        _, key_b = auth.create_api_key(s, clock=clock, actor=owner_p, store_id=b.id, name="till B")
    return World(a, b, owner, manager_a, cashier_a, manager_b, key_a, key_b)


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Sign in through the JSON login endpoint; returns the CSRF token for unsafe calls."""
    response = client.post("/api/v1/session", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["csrf_token"]
    return token


def key_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_product(session: Session, *, price_minor: int = 1000, category_code: str = "GEN",
                 sku: str | None = None, replenish_days: int | None = None) -> Product:
    """A product (and its category, made on first use)."""
    category = session.scalar(select(Category).where(Category.code == category_code))
    if category is None:
        category = Category(code=category_code, name=category_code.title(),
                            replenish_days=replenish_days)
        session.add(category)
        session.flush()
    product = Product(sku=sku or f"SKU-{uuid.uuid4().hex[:8]}", name=f"Product {price_minor}",
                      category_id=category.id, price_minor=price_minor, active=True)
    session.add(product)
    session.flush()
    return product
