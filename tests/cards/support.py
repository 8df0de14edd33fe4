"""Test data for the cards tests: a coffee shop's catalogue, sales, programmes, packages."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from patron.auth.principal import Principal
from patron.cards import service as cards
from patron.cards.models import PackageProduct, StampProgramme
from patron.cards.schemas import PackageProductCreate, StampProgrammeCreate
from patron.catalog.models import Category, Product
from patron.core.clock import Clock
from patron.members.models import Store
from patron.sales.models import Sale


@dataclass
class Shop:
    coffee: Category
    latte: Product
    espresso: Product
    cake: Product
    haircut: Product
    colour: Product


def make_shop(session: Session) -> Shop:
    n = uuid.uuid4().hex[:6]
    coffee = Category(code=f"COF{n}", name="Coffee")
    food = Category(code=f"FOOD{n}", name="Food")
    salon = Category(code=f"SAL{n}", name="Salon")
    session.add_all([coffee, food, salon])
    session.flush()

    def product(name: str, category: Category, price: int) -> Product:
        p = Product(sku=f"{name}-{uuid.uuid4().hex[:8]}", name=name, category_id=category.id,
                    price_minor=price, active=True)
        session.add(p)
        return p

    shop = Shop(coffee, product("latte", coffee, 3_200), product("espresso", coffee, 2_500),
                product("cake", food, 2_800), product("haircut", salon, 8_800),
                product("colour", salon, 30_000))
    session.flush()
    return shop


def make_sale(session: Session, clock: Clock, store: Store,
              member_id: uuid.UUID | None) -> uuid.UUID:
    """A bare sale row: stamps, packages and gift cards point at their sale."""
    sale = Sale(store_id=store.id, member_id=member_id, receipt_no=uuid.uuid4().hex[:20],
                occurred_at=clock.now(), recorded_at=clock.now(), subtotal_minor=0,
                discount_minor=0, total_minor=0)
    session.add(sale)
    session.flush()
    return sale.id


def make_programme(session: Session, clock: Clock, actor: Principal, shop: Shop,
                   **overrides: Any) -> StampProgramme:
    """"Buy 9 coffees, the 10th is free": one stamp per coffee, 9 make a reward."""
    data: dict[str, Any] = {"name": "Coffee card", "basis": "item", "stamps_needed": 9,
                            "reward_kind": "free_item", "valid_days": 30,
                            "category_ids": [shop.coffee.id]} | overrides
    return cards.create_programme(session, clock=clock, actor=actor,
                                  data=StampProgrammeCreate(**data))


def make_package_product(session: Session, clock: Clock, actor: Principal, shop: Shop,
                         **overrides: Any) -> PackageProduct:
    """10 haircuts for 800.00, valid 365 days."""
    data: dict[str, Any] = {"name": "10 haircuts", "visits": 10, "price_minor": 80_000,
                            "valid_days": 365, "service_ids": [shop.haircut.id]} | overrides
    return cards.create_package_product(session, clock=clock, actor=actor,
                                        data=PackageProductCreate(**data))


def coffees(shop: Shop, n: int) -> list[tuple[uuid.UUID, uuid.UUID | None, int]]:
    return [(shop.latte.id, shop.coffee.id, n)]
