"""The per-transaction memo keeps configuration reads for one transaction, no longer."""

from __future__ import annotations

from sqlalchemy.orm import Session

from patron.core.db import Database
from patron.core.memo import forget, memo


def test_memo_survives_flushes_but_not_the_transaction(db: Database) -> None:
    loads: list[int] = []

    def load() -> int:
        loads.append(1)
        return len(loads)

    with db.write() as s:
        assert memo(s, "k", load) == 1
        s.flush()  # a flush opens and ends an internal sub-transaction
        assert memo(s, "k", load) == 1
    with db.write() as s:
        assert memo(s, "k", load) == 2  # a new transaction reads again


def test_rollback_and_savepoints_drop_the_memo(session: Session) -> None:
    counter = iter(range(100))
    assert memo(session, "k", lambda: next(counter)) == 0
    with session.begin_nested():
        pass
    assert memo(session, "k", lambda: next(counter)) == 1
    session.rollback()
    assert memo(session, "k", lambda: next(counter)) == 2


def test_forget_one_key(session: Session) -> None:
    assert memo(session, "a", lambda: 1) == 1
    assert memo(session, "b", lambda: 1) == 1
    forget(session, "a")
    assert memo(session, "a", lambda: 2) == 2
    assert memo(session, "b", lambda: 2) == 1
