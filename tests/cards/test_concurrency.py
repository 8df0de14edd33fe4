"""Concurrent redemptions of one gift card through the service layer, each call in its own
transaction (``db.write()``) from its own thread.

The card holds 10,000; 8 threads x 50 redemptions of 100 race for it. Exactly 100 can
succeed, the balance ends at 0 and the books verify. Then the same run with the lock taken
away -- no ``SELECT ... FOR UPDATE`` on PostgreSQL (lost updates), a deferred ``BEGIN``
on SQLite (writers that fail to upgrade) -- must be caught.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest
from sqlalchemy import Select, func, select

from patron.auth import service as auth
from patron.cards import service as cards
from patron.cards.models import GiftCardEntry
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.errors import InsufficientBalance
from tests.factories import World

FUNDS = 10_000
AMOUNT = 100
THREADS = 8
PER_THREAD = 50
_T = TypeVar("_T")


def _issue(db: Database, clock: FixedClock, world: World) -> tuple[str, str]:
    with db.write() as s:
        manager = auth.principal_for_user(world.manager_a)
        _, (issued,) = cards.issue_gift_cards(s, clock=clock, actor=manager, name="race",
                                              count=1, face_value_minor=FUNDS)
        return issued.card.code, issued.pin


def _race(db: Database, clock: FixedClock, code: str, pin: str) -> Counter[str]:
    start = threading.Barrier(THREADS)

    def worker(_: int) -> list[str]:
        start.wait()
        out = []
        for _j in range(PER_THREAD):
            try:
                with db.write() as s:
                    cards.redeem_gift_card(s, clock=clock, actor=None, code=code, pin=pin,
                                           amount_minor=AMOUNT)
                out.append("ok")
            except InsufficientBalance:
                out.append("refused")
            except Exception as exc:  # a broken lock shows up as any error
                out.append(type(exc).__name__)
        return out

    with ThreadPoolExecutor(THREADS) as pool:
        return Counter(o for outcomes in pool.map(worker, range(THREADS)) for o in outcomes)


def _books(db: Database, code: str, pin: str, clock: FixedClock) -> tuple[int, int, list[str]]:
    with db.read() as s:
        card = cards.gift_card_balance(s, clock=clock, code=code, pin=pin)
        redemptions = s.scalar(select(func.count()).select_from(GiftCardEntry).where(
            GiftCardEntry.card_id == card.id, GiftCardEntry.kind == "redeem")) or 0
        return card.balance_minor, redemptions, cards.verify(s)


def test_concurrent_redemptions_never_overdraw_a_gift_card(
    db: Database, clock: FixedClock, world: World
) -> None:
    code, pin = _issue(db, clock, world)
    outcomes = _race(db, clock, code, pin)
    assert outcomes == Counter({"ok": FUNDS // AMOUNT,
                                "refused": THREADS * PER_THREAD - FUNDS // AMOUNT})
    assert _books(db, code, pin, clock) == (0, FUNDS // AMOUNT, [])


def _no_lock(stmt: Select[_T]) -> Select[_T]:
    return stmt


@pytest.fixture
def unlocked_db(db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
                ) -> Iterator[Database]:
    """The same database with the lock taken away (as tests/support/app_factory.py does)."""
    monkeypatch.setattr(cards, "for_update", _no_lock)
    if db.engine.dialect.name == "postgresql":
        yield db
        return
    broken = Database.from_url(database_url)
    broken._write = broken._read  # a deferred BEGIN: no write lock until the first write
    broken.serialised_writes = False
    try:
        yield broken
    finally:
        broken.dispose()


def test_without_the_lock_the_same_race_is_caught(
    unlocked_db: Database, clock: FixedClock, world: World
) -> None:
    code, pin = _issue(unlocked_db, clock, world)
    outcomes = _race(unlocked_db, clock, code, pin)
    errors = sum(n for outcome, n in outcomes.items() if outcome not in ("ok", "refused"))
    balance, redemptions, problems = _books(unlocked_db, code, pin, clock)
    caught = (outcomes["ok"] != FUNDS // AMOUNT or errors > 0 or problems != []
              or balance != FUNDS - redemptions * AMOUNT)
    assert caught, f"the race could not tell a missing lock: {outcomes}"
