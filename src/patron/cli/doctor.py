"""``patron doctor``: prove the books. Exits non-zero and lists what is wrong."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from patron.cards import service as cards
from patron.cli.common import open_db
from patron.loyalty import service as loyalty
from patron.offers import service as offers
from patron.sales import service as sales
from patron.wallet import service as wallet

CHECKS: list[tuple[str, Callable[[Session], list[str]]]] = [
    ("wallet balances equal the sum of their ledger; none negative", wallet.verify),
    ("points balances equal their ledger and their lots; none negative", loyalty.verify),
    ("every sale's lines, payments and refunds add up", sales.verify),
    ("stamps, package visits and gift-card balances equal their ledgers; none negative",
     cards.verify),
    ("every used coupon has exactly one redemption; issue limits hold", offers.verify),
]


def doctor(
    database_url: Annotated[str | None, typer.Option(
        "--database-url", envvar="PATRON_DATABASE_URL", help="SQLAlchemy URL")] = None,
) -> None:
    """Check every account: balance == sum of its ledger, no negative balances, totals add up."""
    console = Console()
    db = open_db(database_url)
    table = Table("check", "result")
    problems: list[str] = []
    try:
        with db.read() as session:
            for name, check in CHECKS:
                found = check(session)
                problems += found
                table.add_row(name, "[green]ok[/]" if not found else f"[red]{len(found)} wrong[/]")
    finally:
        db.dispose()
    console.print(table)
    for p in problems:
        console.print(f"[red]✗[/] {p}")
    if problems:
        raise typer.Exit(1)
