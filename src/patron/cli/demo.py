"""``patron demo``: load a realistic, reproducible demo chain (``make demo`` runs it).

The command only parses options, opens the database and owns the transactions; what is
generated and how lives in ``patron.demo``. It is safe to re-run: when members are already
there it says so, prints the logins and exits 0 (``--reset`` wipes and rebuilds).
"""

from __future__ import annotations

import functools
import time
from datetime import date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from patron.cli.common import settings_from
from patron.core import migrate
from patron.core.clock import SystemClock, local_today
from patron.core.db import Database
from patron.core.money import format_minor
from patron.demo import (
    DEMO_PASSWORD,
    LOGINS,
    DemoConfig,
    DemoSummary,
    build_demo,
    holds_data,
    member_count,
    wipe,
)
from patron.wallet.enums import SpendOrder

console = Console()


class RichStages:
    """A Rich progress bar per stage of the build (``patron.demo.Progress``)."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None
        self._total = 0

    def stage(self, description: str, total: int) -> None:
        self._finish()
        self._total = max(total, 1)
        self._task = self._progress.add_task(description, total=self._total)

    def advance(self, amount: int = 1) -> None:
        if self._task is not None:
            self._progress.advance(self._task, amount)

    def _finish(self) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=self._total)

    def close(self) -> None:
        self._finish()


def _logins_table() -> Table:
    table = Table("login", "password", "role", "store", "name", title="Demo logins")
    for login in LOGINS:
        table.add_row(login.username, DEMO_PASSWORD, login.role.value,
                      login.store_code or "all stores", login.display_name)
    return table


def _share(part: int, whole: int) -> str:
    return f"{part:,} ({100 * part / whole:.1f} %)" if whole else f"{part:,}"


def _summary_table(summary: DemoSummary, currency: str, timezone: str,
                   seconds: float) -> Table:
    table = Table("", "", title=f"Demo data (built in {seconds:.1f} s)")
    sales = summary.member_sales + summary.walk_in_sales
    rows = [
        ("stores", f"{summary.stores}"),
        ("staff users", f"{summary.staff}"),
        ("products", f"{summary.products} in {summary.categories} categories"),
        ("members", f"{summary.members:,}"),
        ("birthdays", _share(summary.birthdays, summary.members)),
        ("lunar birthdays", f"{_share(summary.lunar_birthdays, summary.birthdays)}, "
                            f"{summary.leap_month_birthdays} in a leap month"),
        ("SMS consent", _share(summary.sms_consents, summary.members)),
        ("e-mail consent", _share(summary.email_consents, summary.members)),
        ("consent events", f"{summary.consent_events:,}"),
        ("sales", f"{sales:,} ({summary.member_sales:,} by members, "
                  f"{summary.walk_in_sales:,} walk-in)"),
        ("sale lines", f"{summary.sale_lines:,}"),
        ("revenue", format_minor(summary.revenue_minor, currency)),
    ]
    if summary.first_sale_at and summary.last_sale_at:
        first, last = (at.astimezone(ZoneInfo(timezone)) for at in (summary.first_sale_at,
                                                                     summary.last_sale_at))
        rows.append(("sales from", f"{first:%Y-%m-%d} to {last:%Y-%m-%d}"))
    rows += _programme_rows(summary, currency)
    for label, value in rows:
        table.add_row(label, value)
    return table


def _programme_rows(summary: DemoSummary, currency: str) -> list[tuple[str, str]]:
    """The loyalty programme's figures: what an owner sees first in the admin."""
    if not summary.tiers:
        return []
    money = functools.partial(format_minor, currency=currency)
    ranked = sum(n for _, n in summary.tiers)
    rows = [(f"tier {name}", _share(n, ranked)) for name, n in summary.tiers]
    rows += [
        ("paid members (Plus)", f"{summary.paid_members:,} "
                                f"({summary.paid_expiring:,} ending within 30 days)"),
        ("points outstanding", f"{summary.points_outstanding:,} "
                               f"({summary.points_pending:,} pending), worth "
                               f"{money(summary.points_value_minor)}"),
        ("stored value", f"{money(summary.wallet_principal_minor + summary.wallet_bonus_minor)}"
                         f" in {summary.wallets:,} accounts (paid in "
                         f"{money(summary.wallet_principal_minor)}, bonus "
                         f"{money(summary.wallet_bonus_minor)})"),
        ("coupons", f"{summary.coupons_issued:,} issued, {summary.coupons_redeemed:,} "
                    "redeemed"),
        ("stamp cards, packages", f"{summary.stamp_cards:,} coffee cards, "
                                  f"{summary.packages:,} grooming packages"),
        ("gift cards", f"{money(summary.gift_card_balance_minor)} left on them"),
        ("complaints", f"{summary.complaints:,} ({summary.complaints_open:,} open)"),
        ("callback tasks open", f"{summary.callbacks_open:,}"),
        ("survey responses", f"{summary.survey_responses:,} of "
                             f"{summary.survey_invitations:,} invitations"
                             + (f", NPS {summary.nps:+.0f}" if summary.nps is not None
                                else "")),
    ]
    return rows


def demo(
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same data")] = 42,
    members: Annotated[int, typer.Option(min=1, help="How many members")] = 20_000,
    years: Annotated[float, typer.Option(min=0.05, max=10.0,
                                         help="Years of purchase history")] = 2.0,
    database_url: Annotated[str | None, typer.Option(
        "--database-url", envvar="PATRON_DATABASE_URL",
        help="SQLAlchemy URL; default from settings (sqlite:///./patron.db)")] = None,
    reset: Annotated[bool, typer.Option(
        "--reset", help="Delete all data in patron's tables first")] = False,
    end_date: Annotated[datetime | None, typer.Option(
        formats=["%Y-%m-%d"],
        help="History ends at the start of this day (default: today)")] = None,
) -> None:
    """Load a demo chain: 3 stores, staff, a catalogue, members, their purchases and the
    loyalty programme they lived through (tiers, points, stored value, coupons, care)."""
    settings = settings_from(database_url)
    end_on: date = end_date.date() if end_date else local_today(SystemClock(),
                                                                 settings.default_timezone)
    config = DemoConfig(end_on=end_on, seed=seed, members=members, years=years,
                        spend_order=SpendOrder(settings.wallet_spend_order))
    db = Database.from_url(settings.database_url)
    try:
        migrate.upgrade(db.engine)
        with db.read() as session:
            existing = member_count(session)
            occupied = holds_data(session)
        if existing and not reset:
            console.print(f"Demo data is already there ({existing:,} members); "
                          "use --reset to rebuild it.")
            console.print(_logins_table())
            console.print(f"Log in as [bold]owner[/] / [bold]{DEMO_PASSWORD}[/].")
            return
        if occupied and not reset:
            console.print("[red]The database already holds stores, users or products but no "
                          "members; run with --reset to replace them with demo data.[/]")
            raise typer.Exit(1)
        if reset:
            with db.write() as session:
                wipe(session)
        started = time.perf_counter()
        with Progress(SpinnerColumn(), TextColumn("{task.description:<30}"), BarColumn(),
                      MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bars:
            stages = RichStages(bars)
            with db.write() as session:
                summary = build_demo(session, config=config, progress=stages)
                stages.stage("Committing", 1)
            stages.close()
        console.print(_summary_table(summary, settings.currency, settings.default_timezone,
                                     time.perf_counter() - started))
        console.print(_logins_table())
        console.print(f"Log in as [bold]owner[/] / [bold]{DEMO_PASSWORD}[/].")
    finally:
        db.dispose()
