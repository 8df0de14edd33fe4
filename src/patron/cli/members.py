"""``patron members import|export``: move member lists in and out with a progress bar.

The commands run as the operator (no staff user), so every store is in reach; the audit
log records them as ``system``.
"""

from __future__ import annotations

import csv
import time
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table as RichTable
from sqlalchemy.orm import Session

from patron.cli.common import open_db, settings_from
from patron.core.clock import SystemClock
from patron.core.errors import PatronError
from patron.members import importer
from patron.members import service as members

app = typer.Typer(help="Import and export members.", no_args_is_help=True)
console = Console()

DbUrl = Annotated[str | None, typer.Option("--database-url", envvar="PATRON_DATABASE_URL",
                                           help="SQLAlchemy URL; default sqlite:///./patron.db")]
SHOWN_ERRORS = 20


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console)


def _parse_map(pairs: list[str]) -> dict[str, str]:
    """``["phone=手机号", "email="]`` -> overrides; an empty header drops a guess."""
    out: dict[str, str] = {}
    for pair in pairs:
        target, sep, header = pair.partition("=")
        if not sep or not target.strip():
            raise typer.BadParameter(f"expected target=Header, got {pair!r}", param_hint="--map")
        if target.strip() not in importer.FIELDS:
            raise typer.BadParameter(
                f"unknown field {target.strip()!r}; fields: {', '.join(importer.FIELDS)}",
                param_hint="--map")
        out[target.strip()] = header.strip()
    return out


def _store_id(session: Session, code: str | None) -> uuid.UUID | None:
    if code is None:
        return None
    by_code = {s.code: s.id for s in members.list_stores(session, include_inactive=True)}
    if code not in by_code:
        raise typer.BadParameter(f"unknown store code {code!r}", param_hint="--store")
    return by_code[code]


def _fail(exc: PatronError) -> typer.Exit:
    console.print(f"[red]{exc.field or 'error'}: {exc.message}[/]")
    return typer.Exit(2)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="A .csv (UTF-8 or GBK; , ; or tab) or .xlsx file")],
    map_: Annotated[list[str] | None, typer.Option(
        "--map", metavar="FIELD=Header",
        help="Which column holds a field, e.g. --map phone=手机号 (repeatable); "
             "columns are otherwise guessed from the headers. FIELD= ignores a guess.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Validate every row (database checks included), write nothing")] = False,
    store: Annotated[str | None, typer.Option(
        "--store", metavar="CODE",
        help="Home store of rows that name none (not needed with a single store)")] = None,
    errors: Annotated[Path | None, typer.Option(
        "--errors", metavar="REPORT.csv", help="Write every rejected row to this CSV")] = None,
    database_url: DbUrl = None,
) -> None:
    """Import members from a spreadsheet: good rows are kept, bad rows reported.

    Exit code 0 when at least one row was imported (or would be, with --dry-run),
    1 when every row was rejected, 2 when the file or options are unusable.
    """
    settings = settings_from(database_url)
    try:
        table = importer.read_table(file.read_bytes(), file.name)
    except PatronError as exc:
        raise _fail(exc) from exc
    mapping = importer.suggest_mapping(table.headers) | _parse_map(map_ or [])
    mapping = {t: h for t, h in mapping.items() if h}
    _print_mapping(table.headers, mapping)

    db = open_db(database_url)
    started = time.perf_counter()
    try:
        # A dry run reads only (and so never holds SQLite's write lock); a real run commits
        # when the block ends.
        unit = db.read() if dry_run else db.write()
        with unit as session, _progress() as bar:
            store_id = _store_id(session, store)
            if store_id is None:
                stores = members.list_stores(session)
                if len(stores) == 1:  # one shop: no need to say which
                    store_id = stores[0].id
            tasks: list[TaskID] = []

            def advance(done: int, total: int) -> None:
                # the bar appears once the checks of the file and mapping have passed
                if not tasks:
                    tasks.append(bar.add_task("validating" if dry_run else "importing",
                                              total=total))
                bar.update(tasks[0], completed=done, total=total)

            report = importer.import_members(
                session, clock=SystemClock(), actor=None, region=settings.default_region,
                table=table, mapping=mapping, dry_run=dry_run, default_store_id=store_id,
                progress=advance, filename=file.name)
    except PatronError as exc:
        raise _fail(exc) from exc
    finally:
        db.dispose()
    seconds = time.perf_counter() - started

    _print_summary(report, seconds)
    if errors is not None:
        _write_errors(errors, report.errors)
        console.print(f"all {len(report.errors):,} problems written to [bold]{errors}[/]")
    if report.imported == 0:
        raise typer.Exit(1)


def _print_mapping(headers: list[str], mapping: dict[str, str]) -> None:
    table = RichTable(title="Columns", title_justify="left")
    table.add_column("field")
    table.add_column("column in the file")
    for target in importer.FIELDS:
        table.add_row(target, mapping.get(target, "[dim]-[/]"))
    console.print(table)
    unused = [h for h in headers if h and h not in mapping.values()]
    if unused:
        console.print(f"[dim]not imported: {', '.join(unused)}[/]")


def _print_summary(report: importer.ImportReport, seconds: float) -> None:
    summary = RichTable(title="Dry run (nothing written)" if report.dry_run else "Import",
                        title_justify="left")
    for name in ("rows", "valid" if report.dry_run else "imported", "rejected", "seconds"):
        summary.add_column(name, justify="right")
    summary.add_row(f"{report.total:,}", f"{report.imported:,}", f"{report.rejected:,}",
                    f"{seconds:.1f}")
    console.print(summary)
    if not report.errors:
        return
    shown = RichTable(title=f"Problems (first {SHOWN_ERRORS} of {len(report.errors):,})"
                      if len(report.errors) > SHOWN_ERRORS else "Problems",
                      title_justify="left")
    for name in ("row", "field", "message", "value"):
        shown.add_column(name, overflow="fold")
    for e in report.errors[:SHOWN_ERRORS]:
        shown.add_row(str(e.row), e.field, e.message, e.value or "")
    console.print(shown)


def _write_errors(path: Path, errors: list[importer.RowError]) -> None:
    """All problems as CSV (UTF-8 with BOM, so Excel shows Chinese values correctly)."""
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["row", "field", "message", "value"])
        for e in errors:
            writer.writerow([e.row, e.field, e.message, e.value or ""])


@app.command("export")
def export(
    file: Annotated[Path, typer.Argument(dir_okay=False, writable=True,
                                         help="CSV file to write (UTF-8 with BOM for Excel)")],
    store: Annotated[str | None, typer.Option(
        "--store", metavar="CODE", help="Only members whose home store this is")] = None,
    database_url: DbUrl = None,
) -> None:
    """Export active members to CSV with full phone numbers; the file imports back as is."""
    db = open_db(database_url)
    started = time.perf_counter()
    try:
        with db.write() as session, _progress() as bar:  # write: the audit entry
            store_id = _store_id(session, store)
            task = bar.add_task("exporting", total=None)

            def advance(done: int, total: int, task: TaskID = task) -> None:
                bar.update(task, completed=done, total=total)

            with file.open("w", encoding="utf-8", newline="") as out:
                count = importer.export_members(session, out=out, viewer=None,
                                                home_store_id=store_id, progress=advance,
                                                clock=SystemClock())
    except PatronError as exc:
        raise _fail(exc) from exc
    finally:
        db.dispose()
    console.print(f"exported [bold]{count:,}[/] members to [bold]{file}[/] "
                  f"in {time.perf_counter() - started:.1f} s")
