"""``patron daily``: the daily jobs, until the worker runs them on its schedule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from patron.cards import service as cards
from patron.cli.common import open_db
from patron.core.clock import Clock, SystemClock
from patron.loyalty import membership
from patron.loyalty import service as loyalty
from patron.offers import service as offers


def _points(session: Session, clock: Clock) -> dict[str, int]:
    return loyalty.run_daily(session, clock=clock)


def _tiers(session: Session, clock: Clock) -> dict[str, int]:
    return {"reviewed": loyalty.review_tiers(session, clock=clock)}


def _memberships(session: Session, clock: Clock) -> dict[str, int]:
    return membership.run_daily(session, clock=clock)


def _coupons(session: Session, clock: Clock) -> dict[str, int]:
    return {"expired": offers.expire_due(session, clock=clock)}


def _cards(session: Session, clock: Clock) -> dict[str, int]:
    return dict(cards.run_daily(session, clock=clock))


JOBS: list[tuple[str, Callable[[Session, Clock], dict[str, Any]]]] = [
    ("points: release, expiring notices, expiry", _points),
    ("paid memberships: notices, expiry", _memberships),
    ("tiers: end-of-period review", _tiers),
    ("coupons: expiry", _coupons),
    ("stamp rewards, visit packages, gift cards: expiry", _cards),
]


def daily(
    database_url: Annotated[str | None, typer.Option(
        "--database-url", envvar="PATRON_DATABASE_URL", help="SQLAlchemy URL")] = None,
) -> None:
    """Run the daily jobs once (each in its own transaction) and print what they did."""
    console = Console()
    db = open_db(database_url)
    clock = SystemClock()
    table = Table("job", "result")
    try:
        for name, job in JOBS:
            with db.write() as session:
                counts = job(session, clock)
            table.add_row(name, ", ".join(f"{k} {v}" for k, v in counts.items()))
    finally:
        db.dispose()
    console.print(table)
