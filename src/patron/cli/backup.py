"""``patron backup`` and ``patron restore``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from patron.cli.common import settings_from
from patron.core import backup as backups
from patron.core.errors import PatronError

DbUrl = Annotated[str | None, typer.Option("--database-url", envvar="PATRON_DATABASE_URL",
                                           help="SQLAlchemy URL; default sqlite:///./patron.db")]


def backup(
    target: Annotated[Path, typer.Argument(help="Where to write the backup file")],
    database_url: DbUrl = None,
) -> None:
    """Write a consistent backup while patron runs (SQLite online backup; pg_dump)."""
    url = settings_from(database_url).database_url
    try:
        result = backups.backup(url, target)
    except PatronError as exc:
        raise typer.BadParameter(exc.message, param_hint=exc.field or "target") from exc
    Console().print(f"backed up to [bold]{result.path}[/] ({result.kind}, "
                    f"{result.bytes:,} bytes)")


def restore(
    source: Annotated[Path, typer.Argument(help="A file written by patron backup")],
    database_url: DbUrl = None,
    yes: Annotated[bool, typer.Option("--yes", help="Don't ask for confirmation")] = False,
) -> None:
    """Replace the database with a backup. Stop `patron serve` and `patron worker` first;
    run `patron db upgrade` and `patron doctor` after."""
    url = settings_from(database_url).database_url
    if not yes:
        typer.confirm(f"Replace everything in {url} with {source}?", abort=True)
    try:
        backups.restore(source, url)
    except PatronError as exc:
        raise typer.BadParameter(exc.message, param_hint=exc.field or "source") from exc
    Console().print(f"restored [bold]{source}[/] into {url}; now run patron doctor")
