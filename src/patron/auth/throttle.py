"""Sign-in throttling: lock an account after repeated failures, block an address that
guesses across many accounts (OWASP authentication cheat sheet: account lockout and
per-source limits).

Every attempt is kept (``login_attempts``: who, from where, when, whether it worked), so
the rules are counts over a window and work the same with several API processes:

- an account with ``ACCOUNT_FAILURES`` failures since its last success, the latest within
  ``WINDOW``, is locked until ``WINDOW`` after that latest failure;
- an address with ``ADDRESS_FAILURES`` failures within ``WINDOW`` is refused until the
  oldest of them leaves the window.

A locked account answers the same whether the password given is right or wrong, so the
lock can't be used to confirm a guess.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Index, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from patron.core.clock import Clock
from patron.core.errors import TooManyAttempts
from patron.core.models import Base, BigInt

ACCOUNT_FAILURES = 5
ADDRESS_FAILURES = 30
WINDOW = timedelta(minutes=15)


class LoginAttempt(Base):
    __tablename__ = "login_attempts"

    seq: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(150))
    address: Mapped[str] = mapped_column(String(64))
    ok: Mapped[bool]
    at: Mapped[datetime]

    __table_args__ = (Index("ix_login_attempts_username_at", "username", "at"),
                      Index("ix_login_attempts_address_at", "address", "at"))


def _key(username: str) -> str:
    return username.strip().lower()[:150]


def check(session: Session, *, clock: Clock, username: str, address: str) -> None:
    """Refuse (429) before the password is even checked when the account or address is
    locked out."""
    now = clock.now()
    since = now - WINDOW
    last_ok = session.scalar(select(func.max(LoginAttempt.at)).where(
        LoginAttempt.username == _key(username), LoginAttempt.ok.is_(True)))
    failures = list(session.scalars(
        select(LoginAttempt.at).where(LoginAttempt.username == _key(username),
                                      LoginAttempt.ok.is_(False),
                                      LoginAttempt.at > (last_ok or since - WINDOW))
        .order_by(LoginAttempt.at.desc()).limit(ACCOUNT_FAILURES)))
    if len(failures) >= ACCOUNT_FAILURES and failures[0] > since:
        wait = int((failures[0] + WINDOW - now).total_seconds())
        raise TooManyAttempts("Too many failed sign-ins for this account; try again in "
                              f"{max(1, wait // 60)} minutes", "username", wait)
    by_address = list(session.scalars(
        select(LoginAttempt.at).where(LoginAttempt.address == address[:64],
                                      LoginAttempt.ok.is_(False), LoginAttempt.at > since)
        .order_by(LoginAttempt.at).limit(ADDRESS_FAILURES)))
    if len(by_address) >= ADDRESS_FAILURES:
        wait = int((by_address[0] + WINDOW - now).total_seconds())
        raise TooManyAttempts("Too many failed sign-ins from this address; try again later",
                              "username", wait)


def record(session: Session, *, clock: Clock, username: str, address: str, ok: bool) -> None:
    """Keep one attempt (in the caller's transaction, committed with or without success)."""
    session.add(LoginAttempt(username=_key(username), address=address[:64], ok=ok,
                             at=clock.now()))
    session.flush()
