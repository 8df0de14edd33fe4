"""``patron daily``: the daily jobs, until the worker runs them on its schedule."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from patron.cli.common import open_db
from patron.core.clock import SystemClock
from patron.jobs.daily import JOBS


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


def worker(
    database_url: Annotated[str | None, typer.Option(
        "--database-url", envvar="PATRON_DATABASE_URL", help="SQLAlchemy URL")] = None,
    once: Annotated[bool, typer.Option(
        "--once", help="One pass (events, due messages, due schedules), then exit")] = False,
    poll: Annotated[float, typer.Option(help="Seconds to wait when there is nothing to do",
                                        min=0.05, max=60)] = 1.0,
) -> None:
    """Deliver messages and run the care rules and daily schedules until stopped (SIGTERM or
    Ctrl-C stop it after the message in flight). Several may run at once on PostgreSQL."""
    import signal
    import threading

    from patron.cli.common import settings_from
    from patron.core.db import Database
    from patron.jobs.build import build_worker

    console = Console()
    settings = settings_from(database_url)
    db = Database.from_url(settings.database_url)
    runner = build_worker(settings, db, poll_s=poll)
    try:
        if once:
            done = runner.run_once()
            console.print(f"events {done['events']}, messages {done['messages']}, "
                          f"schedules {', '.join(done['schedules']) or 'none due'}")
            return
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        console.print(f"patron worker {runner.ctx.worker_id} on "
                      f"{db.engine.dialect.name}; channels: "
                      f"{', '.join(sorted(runner.ctx.channel_kinds)) or 'none'}")
        runner.run(stop)
    finally:
        runner.ctx.channels.close()
        db.dispose()
