"""Visit packages (计次卡): visits consumed one at a time, refused when none are left or
the package expired, unused visits refunded pro rata, expired by the daily job."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.auth.principal import Principal
from patron.cards import service as cards
from patron.cards.enums import PackageStatus, VisitEntryKind
from patron.cards.schemas import PackageProductUpdate
from patron.core.clock import FixedClock
from patron.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from tests.cards.support import Shop, make_package_product, make_sale, make_shop
from tests.factories import World, make_member


@pytest.fixture
def manager(world: World) -> Principal:
    return auth.principal_for_user(world.manager_a)


@pytest.fixture
def cashier(world: World) -> Principal:
    return auth.principal_for_user(world.cashier_a)


@pytest.fixture
def shop(session: Session) -> Shop:
    return make_shop(session)


def test_a_sold_package_is_used_one_visit_at_a_time_until_none_are_left(
    session: Session, clock: FixedClock, world: World, manager: Principal,
    cashier: Principal, shop: Shop
) -> None:
    product = make_package_product(session, clock, manager, shop, visits=3)
    m = make_member(session, clock, world.store_a)
    sale_id = make_sale(session, clock, world.store_a, m.id)
    pkg = cards.sell_package(session, clock=clock, actor=cashier, member_id=m.id,
                             package_product_id=product.id, sale_id=sale_id)
    assert (pkg.visits_left, pkg.store_id, pkg.price_minor) == (3, world.store_a.id, 80_000)
    assert pkg.expires_at == clock.now() + timedelta(days=365)
    for left in (2, 1, 0):
        entry = cards.use_visit(session, clock=clock, actor=cashier, member_id=m.id,
                                package_id=pkg.id, product_id=shop.haircut.id)
        assert (entry.delta, entry.visits_left_after) == (-1, left)
    assert pkg.status == PackageStatus.USED_UP
    with pytest.raises(ValidationFailed) as err:
        cards.use_visit(session, clock=clock, actor=cashier, member_id=m.id,
                        package_id=pkg.id)
    assert (err.value.status, err.value.field, err.value.code) == \
        (422, "package_id", "no_visits_left")
    kinds = [e.kind for e in cards.visit_entries(session, package_id=pkg.id)]
    assert kinds == ["sell", "use", "use", "use"]
    assert cards.verify(session) == []


def test_a_visit_is_refused_for_another_service_or_member_and_after_expiry(
    session: Session, clock: FixedClock, world: World, manager: Principal,
    cashier: Principal, shop: Shop
) -> None:
    product = make_package_product(session, clock, manager, shop, valid_days=30)
    m = make_member(session, clock, world.store_a)
    other = make_member(session, clock, world.store_a)
    pkg = cards.sell_package(session, clock=clock, actor=cashier, member_id=m.id,
                             package_product_id=product.id)
    with pytest.raises(ValidationFailed) as err:
        cards.use_visit(session, clock=clock, actor=cashier, member_id=m.id,
                        package_id=pkg.id, product_id=shop.colour.id)
    assert (err.value.field, err.value.code) == ("product_id", "service_not_covered")
    with pytest.raises(NotFound):
        cards.use_visit(session, clock=clock, actor=cashier, member_id=other.id,
                        package_id=pkg.id)
    clock.advance(timedelta(days=30))
    with pytest.raises(ValidationFailed) as err:
        cards.use_visit(session, clock=clock, actor=cashier, member_id=m.id,
                        package_id=pkg.id)
    assert (err.value.field, err.value.code) == ("package_id", "package_expired")
    assert pkg.visits_left == 10


def test_the_daily_job_expires_packages_and_forfeits_their_visits(
    session: Session, clock: FixedClock, world: World, manager: Principal,
    cashier: Principal, shop: Shop
) -> None:
    product = make_package_product(session, clock, manager, shop, valid_days=30)
    m = make_member(session, clock, world.store_a)
    pkg = cards.sell_package(session, clock=clock, actor=cashier, member_id=m.id,
                             package_product_id=product.id)
    cards.use_visit(session, clock=clock, actor=cashier, member_id=m.id, package_id=pkg.id)
    clock.advance(timedelta(days=29))
    assert cards.expire_packages(session, clock=clock) == 0
    clock.advance(timedelta(days=1))
    assert cards.run_daily(session, clock=clock)["packages_expired"] == 1
    assert (pkg.status, pkg.visits_left) == (PackageStatus.EXPIRED, 0)
    last = cards.visit_entries(session, package_id=pkg.id)[-1]
    assert (last.kind, last.delta, last.visits_left_after) == (VisitEntryKind.EXPIRE, -9, 0)
    with pytest.raises(ValidationFailed) as err:
        cards.refund_package(session, clock=clock, actor=manager, member_id=m.id,
                             package_id=pkg.id)
    assert err.value.code == "package_expired"
    assert cards.expire_packages(session, clock=clock) == 0
    assert cards.verify(session) == []


def test_refund_pays_unused_visits_pro_rata_of_the_price_paid_once(
    session: Session, clock: FixedClock, world: World, manager: Principal,
    cashier: Principal, shop: Shop
) -> None:
    product = make_package_product(session, clock, manager, shop, visits=3)
    m = make_member(session, clock, world.store_a)
    pkg = cards.sell_package(session, clock=clock, actor=cashier, member_id=m.id,
                             package_product_id=product.id, price_minor=10_000)
    cards.use_visit(session, clock=clock, actor=cashier, member_id=m.id, package_id=pkg.id)
    done = cards.refund_package(session, clock=clock, actor=manager, member_id=m.id,
                                package_id=pkg.id, reason="moving away")
    assert (done.refund_minor, done.visits_refunded) == (6_667, 2)  # 10000 x 2/3, half up
    assert (pkg.status, pkg.visits_left, pkg.refunded_minor) == \
        (PackageStatus.REFUNDED, 0, 6_667)
    with pytest.raises(Conflict) as err:
        cards.refund_package(session, clock=clock, actor=manager, member_id=m.id,
                             package_id=pkg.id)
    assert err.value.code == "package_already_refunded"
    with pytest.raises(ValidationFailed) as verr:
        cards.use_visit(session, clock=clock, actor=cashier, member_id=m.id,
                        package_id=pkg.id)
    assert verr.value.code == "package_refunded"
    assert cards.verify(session) == []


def test_a_used_visit_can_be_given_back_once(
    session: Session, clock: FixedClock, world: World, manager: Principal,
    cashier: Principal, shop: Shop
) -> None:
    product = make_package_product(session, clock, manager, shop, visits=1)
    m = make_member(session, clock, world.store_a)
    pkg = cards.sell_package(session, clock=clock, actor=cashier, member_id=m.id,
                             package_product_id=product.id)
    used = cards.use_visit(session, clock=clock, actor=cashier, member_id=m.id,
                           package_id=pkg.id)
    assert pkg.status == PackageStatus.USED_UP
    back = cards.return_visit(session, clock=clock, actor=cashier, entry_id=used.id)
    assert (back.delta, pkg.visits_left, pkg.status) == (1, 1, PackageStatus.ACTIVE)
    with pytest.raises(Conflict):
        cards.return_visit(session, clock=clock, actor=cashier, entry_id=used.id)
    assert cards.verify(session) == []


def test_package_products_are_for_managers_and_their_services_freeze_once_sold(
    session: Session, clock: FixedClock, world: World, manager: Principal,
    cashier: Principal, shop: Shop
) -> None:
    with pytest.raises(PermissionDenied):
        make_package_product(session, clock, cashier, shop)
    with pytest.raises(ValidationFailed) as err:
        make_package_product(session, clock, manager, shop, service_ids=[shop.coffee.id])
    assert err.value.field == "service_ids"
    product = make_package_product(session, clock, manager, shop)
    m = make_member(session, clock, world.store_a)
    cards.sell_package(session, clock=clock, actor=cashier, member_id=m.id,
                       package_product_id=product.id)
    with pytest.raises(Conflict):
        cards.update_package_product(
            session, clock=clock, actor=manager, package_product_id=product.id,
            data=PackageProductUpdate(service_ids=[shop.colour.id]))
    cards.update_package_product(session, clock=clock, actor=manager,
                                 package_product_id=product.id,
                                 data=PackageProductUpdate(price_minor=90_000, active=False))
    with pytest.raises(ValidationFailed) as verr:
        cards.sell_package(session, clock=clock, actor=cashier, member_id=m.id,
                           package_product_id=product.id)
    assert (verr.value.field, verr.value.code) == ("package_product_id", "not_active")
