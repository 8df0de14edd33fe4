"""Per-transaction memo for configuration reads (the programme, tiers, multipliers...).

A checkout reads the same brand configuration several times (pricing, earning, the tier
check, the receipt). Each read is a statement and, with the ORM, a few hundred
microseconds of Python; the rows cannot change inside the transaction except through the
same session, so the first answer is kept in ``session.info`` and dropped when the
transaction ends (commit or rollback). Writers of configuration call :func:`forget` so a
read after a write in the same transaction sees the write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

T = TypeVar("T")
_KEY = "patron.memo"


def memo(session: Session, key: str, load: Callable[[], T]) -> T:
    """``load()`` once per transaction of ``session`` under ``key``."""
    cache: dict[str, Any] = session.info.setdefault(_KEY, {})
    if key not in cache:
        cache[key] = load()
    value: T = cache[key]
    return value


def forget(session: Session, key: str | None = None) -> None:
    """Drop one memoised read (or all of them) after changing what it read."""
    if key is None:
        session.info.pop(_KEY, None)
    else:
        session.info.get(_KEY, {}).pop(key, None)


@event.listens_for(Session, "after_transaction_end")
def _drop_at_end(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction (commit or rollback) or a savepoint; not the internal
    # sub-transaction every flush opens, which would empty the memo at each autoflush.
    if transaction.parent is None or transaction.nested:
        session.info.pop(_KEY, None)
