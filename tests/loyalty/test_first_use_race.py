"""Two tills opening the same member's points or wallet account at once (PostgreSQL).

Found by bench/checkout.py: two first earns for one member both saw no account, both
inserted, and the loser's sale failed with a 500 on the unique member id. The test makes
the race certain: each thread looks for the account, then waits at a barrier until the
other has looked too, so both go on to open it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.loyalty import service as loyalty
from patron.loyalty.models import PointsAccount
from patron.wallet import service as wallet
from patron.wallet.models import WalletAccount
from tests.factories import make_member, make_store


def _race(db: Database, monkeypatch: pytest.MonkeyPatch, module: Any, lookup: str,
          act: Callable[[Any], object]) -> None:
    barrier = threading.Barrier(2, timeout=20)
    original = getattr(module, lookup)
    seen: set[int] = set()

    def looking(*args: Any, **kwargs: Any) -> Any:
        found = original(*args, **kwargs)
        me = threading.get_ident()
        if found is None and me not in seen:  # the first look of each thread: meet
            seen.add(me)
            barrier.wait()
        return found

    monkeypatch.setattr(module, lookup, looking)

    def one(_: int) -> object:
        with db.write() as s:
            return act(s)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, range(2)))
    assert len(results) == 2


@pytest.fixture
def member_id(db: Database, clock: FixedClock) -> uuid.UUID:
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers with BEGIN IMMEDIATE: the race cannot happen")
    with db.write() as s:
        loyalty.get_program(s, clock=clock)  # made on first use: not the race under test
        return make_member(s, clock, make_store(s, clock)).id


def test_two_first_earns_both_succeed(db: Database, clock: FixedClock, member_id: uuid.UUID,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _race(db, monkeypatch, loyalty, "_locked", lambda s: loyalty.earn(
        s, clock=clock, actor=None, member_id=member_id, points=10, tz="Asia/Shanghai"))
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(PointsAccount)
                        .where(PointsAccount.member_id == member_id)) == 1
        assert loyalty.balance(s, clock=clock, member_id=member_id).pending == 20


def test_two_first_top_ups_both_succeed(db: Database, clock: FixedClock, member_id: uuid.UUID,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _race(db, monkeypatch, wallet, "_locked_account", lambda s: wallet.top_up(
        s, clock=clock, actor=None, member_id=member_id, amount_minor=500))
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(WalletAccount)
                        .where(WalletAccount.member_id == member_id)) == 1
        assert wallet.balance(s, member_id=member_id).total_minor == 1000


def test_a_page_reading_the_programme_while_another_creates_it(db: Database,
                                                               clock: FixedClock) -> None:
    """Two dashboard fragments of a new database both created the default programme; on
    SQLite the later one's read transaction could not write any more ("database is
    locked" at once) and its page failed with a 500 (seen in the browser tests)."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL lets the loser insert and meet the unique key instead")
    with db.read() as reader:
        reader.execute(select(func.count()).select_from(PointsAccount)).scalar()  # snapshot
        with db.write() as other:
            created = loyalty.get_program(other, clock=clock).points_per_major
        program = loyalty.get_program(reader, clock=clock)
        assert program.points_per_major == created
