"""Fixtures of the feedback tests: the world's staff as principals, a member of store A."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.auth.principal import Principal
from patron.core.clock import FixedClock
from patron.members.models import Member
from tests.factories import World, make_member


@pytest.fixture
def owner(world: World) -> Principal:
    return auth.principal_for_user(world.owner)


@pytest.fixture
def manager(world: World) -> Principal:
    return auth.principal_for_user(world.manager_a)


@pytest.fixture
def cashier(world: World) -> Principal:
    return auth.principal_for_user(world.cashier_a)


@pytest.fixture
def manager_b(world: World) -> Principal:
    return auth.principal_for_user(world.manager_b)


@pytest.fixture
def member(session: Session, clock: FixedClock, world: World) -> Member:
    """A member whose home store is A."""
    return make_member(session, clock, world.store_a)
