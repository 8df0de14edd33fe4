"""The shop the trust tests run against: one store, its POS key, one product, members whose
points are available at once (no return window) so redemptions and transfers have
something to move."""

from __future__ import annotations

from dataclasses import dataclass

from patron.auth import service as auth
from patron.auth.enums import Role
from patron.core.clock import SystemClock
from patron.core.db import Database
from patron.loyalty import service as loyalty
from tests.factories import make_member, make_product, make_store, make_user
from tests.trust.tills import PRICE_MINOR


@dataclass(frozen=True)
class Shop:
    key: str
    sku: str
    members: list[str]
    store_id: str


def open_shop(db: Database, *, members: int, email: bool, sku: str = "TRUST") -> Shop:
    """Runs on real time: the server processes do too."""
    clock = SystemClock()
    with db.write() as s:
        store = make_store(s, clock, code="T")
        owner = auth.principal_for_user(make_user(s, clock, Role.OWNER, username="trust-owner"))
        loyalty.update_program(s, clock=clock, actor=owner, changes={"pending_days": 0})
        _, key = auth.create_api_key(s, clock=clock, actor=owner, store_id=store.id,
                                     name="trust till")
        make_product(s, sku=sku, price_minor=PRICE_MINOR)
        ids = [str(make_member(s, clock, store, **(
            {"email": f"m{n}@example.com"} if email else {})).id) for n in range(members)]
    return Shop(key=key, sku=sku, members=ids, store_id=str(store.id))
