"""``patron analytics``: score every member (``refresh``) and fit the purchase models (``fit``).

``refresh`` computes the dated snapshot of member scores the worker also builds nightly;
``fit`` prints the BG/NBD and Gamma-Gamma parameters of a transaction file (``--data``) or,
without it, of the database's own sales.
"""

from __future__ import annotations

import json
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from patron.analytics import service
from patron.analytics.models import clv
from patron.analytics.models.bgnbd import BGNBDParams
from patron.analytics.models.gamma_gamma import GammaGammaParams
from patron.analytics.models.summary import TimeUnit, read_transactions_csv, summarise
from patron.analytics.scores import ScoreConfig
from patron.cli.common import settings_from
from patron.core import migrate
from patron.core.clock import SystemClock
from patron.core.db import Database
from patron.core.errors import PatronError
from patron.core.money import format_minor

app = typer.Typer(help="Customer-base analytics: member scores, purchase, dropout and spend "
                       "models.", no_args_is_help=True)
console = Console()

DbUrl = Annotated[str | None, typer.Option(
    "--database-url", envvar="PATRON_DATABASE_URL",
    help="SQLAlchemy URL; default from settings (sqlite:///./patron.db)")]
STAGE_TITLES = {"load": "Loading the sales history", "summarise": "Summarising members",
                "fit": "Fitting BG/NBD and Gamma-Gamma", "score": "Scoring members",
                "write": "Writing the snapshot", "done": "Done",
                "warehouse": "Updating the analytics warehouse",
                "sqlite": "Reading the database"}


def _parse_end(text: str | None) -> date | datetime | None:
    if text is None:
        return None
    try:
        return (date.fromisoformat(text) if len(text) == 10
                else datetime.fromisoformat(text))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date (YYYY-MM-DD) or a datetime "
                                 "(YYYY-MM-DDTHH:MM:SS)", param_hint="--calibration-end"
                                 ) from None


def _parse_day(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date (YYYY-MM-DD)",
                                 param_hint=option) from None


@app.command("fit")
def fit(
    data: Annotated[Path | None, typer.Option(
        "--data", exists=True, dir_okay=False, readable=True,
        help="CSV with a header naming customer, date (YYYY-MM-DD or YYYY-MM-DD HH:MM:SS, "
             "store-local) and amount; other columns are ignored. Without it the models are "
             "fitted on the database's sales.")] = None,
    calibration_end: Annotated[str | None, typer.Option(
        "--calibration-end", metavar="DATE",
        help="Use purchases up to and including this day (default: the last date in the "
             "file; for the database, yesterday in the brand's time zone)")] = None,
    unit: Annotated[TimeUnit, typer.Option(
        "--unit", case_sensitive=False,
        help="Time unit of recency, age and alpha")] = TimeUnit.WEEKS,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object instead of a table")] = False,
    database_url: DbUrl = None,
) -> None:
    """Fit BG/NBD and Gamma-Gamma and print their parameters.

    Same-day purchases of a customer are one transaction; times keep the data's resolution.
    """
    started = time.perf_counter()
    if data is None:
        bg, gg, customers, repeaters, through = _fit_database(database_url, calibration_end,
                                                              unit)
    else:
        bg, gg, customers, repeaters, through = _fit_file(data, calibration_end, unit)
    elapsed = time.perf_counter() - started
    unsettled = [f"BG/NBD {n}" for n in bg.unsettled()] + [f"Gamma-Gamma {n}"
                                                           for n in gg.unsettled()]
    if unsettled:
        Console(stderr=True).print(
            f"[yellow]warning: {', '.join(unsettled)} ended at the edge of the search range; "
            "the data are too few or too uniform to fit these models and the numbers are not "
            "meaningful[/]")
    if as_json:
        typer.echo(json.dumps({
            "bgnbd": {"r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b, "loglik": bg.loglik},
            "gamma_gamma": {"p": gg.p, "q": gg.q, "v": gg.v},
            "customers": customers,
        }))
        return
    table = Table("model", "parameter", "value", "meaning",
                  title=f"{customers:,} customers ({repeaters:,} repeat buyers), "
                        f"calibration through {through}, time in {unit}")
    table.add_row("BG/NBD", "r", f"{bg.r:.4g}", "shape of the purchase-rate distribution")
    table.add_row("", "alpha", f"{bg.alpha:.4g}",
                  f"its scale ({unit}); mean rate r/alpha = {bg.r / bg.alpha:.3g} per "
                  f"{unit.removesuffix('s')}")
    table.add_row("", "a", f"{bg.a:.4g}", "dropout-probability Beta(a, b)")
    table.add_row("", "b", f"{bg.b:.4g}",
                  f"mean dropout chance after a repeat purchase {bg.a / (bg.a + bg.b):.3g}")
    table.add_row("", "log-likelihood", f"{bg.loglik:.1f}", "")
    table.add_row("Gamma-Gamma", "p", f"{gg.p:.4g}", "shape of a customer's transaction values")
    table.add_row("", "q", f"{gg.q:.4g}", "shape of spend levels across customers")
    table.add_row("", "v", f"{gg.v:.4g}",
                  f"their scale; mean transaction value {gg.mean_spend:.4g}")
    console.print(table)
    console.print(f"fitted in {elapsed:.2f} s")


def _fit_file(data: Path, calibration_end: str | None, unit: TimeUnit
              ) -> tuple[BGNBDParams, GammaGammaParams, int, int, str]:
    end = _parse_end(calibration_end)
    try:
        tx = read_transactions_csv(data)
        if len(tx) == 0:
            raise typer.BadParameter(f"{data.name} has no rows", param_hint="--data")
        summary = summarise(tx, calibration_end=end if end is not None else tx.at.max(),
                            unit=unit)
        model = clv.fit_models(summary)
    except PatronError as exc:
        hint = "--calibration-end" if exc.field == "calibration_end" else "--data"
        where = f"column {exc.field!r}: " if exc.field in ("customer", "date", "amount") else ""
        raise typer.BadParameter(f"{where}{exc.message}", param_hint=hint) from exc
    repeaters = int(np.count_nonzero(summary.frequency))
    return (model.bgnbd, model.gamma_gamma, len(summary), repeaters,
            str(summary.calibration_end))


def _fit_database(database_url: str | None, calibration_end: str | None, unit: TimeUnit
                  ) -> tuple[BGNBDParams, GammaGammaParams, int, int, str]:
    as_of = _parse_day(calibration_end, "--calibration-end")
    settings = settings_from(database_url)
    db = Database.from_url(settings.database_url)
    try:
        day, fitted = service.fit_database(db, SystemClock(), timezone=settings.default_timezone,
                                           as_of=as_of, unit=unit,
                                           warehouse=settings.analytics_warehouse_path())
    except PatronError as exc:
        raise typer.BadParameter(exc.message, param_hint="--database-url") from exc
    finally:
        db.dispose()
    if fitted.model is None:
        raise typer.BadParameter(f"the sales through {day} cannot be fitted: "
                                 f"{fitted.params.get('error', 'no data')}",
                                 param_hint="--calibration-end")
    return (fitted.model.bgnbd, fitted.model.gamma_gamma, int(fitted.params["customers"]),
            int(fitted.params["repeat_buyers"]), f"{day} (the database)")


@app.command("refresh")
def refresh(
    database_url: DbUrl = None,
    as_of: Annotated[str | None, typer.Option(
        "--as-of", metavar="DATE",
        help="Score the history through this local day (default: yesterday)")] = None,
    keep: Annotated[int, typer.Option(min=1, help="Snapshots (days) to keep")] = 3,
    months: Annotated[int, typer.Option(min=1, max=120, help="CLV horizon in months")] = 12,
    margin: Annotated[float, typer.Option(min=0.0, max=1.0,
                                          help="Share of spend kept as profit, for CLV")] = 0.3,
    discount: Annotated[float, typer.Option(min=0.0, max=1.0,
                                            help="Monthly discount rate for CLV")] = 0.01,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    engine: Annotated[str | None, typer.Option(
        "--engine", metavar="duckdb|spark",
        help="Where the member summaries run (default: PATRON_ANALYTICS_ENGINE or duckdb)"
    )] = None,
    rebuild: Annotated[bool, typer.Option(
        "--rebuild", help="Build the analytics warehouse (the kept sales history) from "
                          "scratch instead of reading only what changed")] = False,
) -> None:
    """Score every member as of a day (RFM, P(alive), CLV, lifecycle, loyalty, bonds) and
    store the snapshot; prints the time each stage took."""
    day = _parse_day(as_of, "--as-of")
    settings = settings_from(database_url)
    db = Database.from_url(settings.database_url)
    config = ScoreConfig(clv_months=months, margin=margin, monthly_discount=discount)
    try:
        migrate.upgrade(db.engine)
        if as_json:
            result = service.refresh(db, SystemClock(), timezone=settings.default_timezone,
                                     as_of=day, config=config, keep=keep,
                                     engine=engine or settings.analytics_engine,
                                     warehouse=settings.analytics_warehouse_path(),
                                     rebuild=rebuild)
        else:
            result = _refresh_with_bar(db, settings.default_timezone, day, config, keep,
                                       engine or settings.analytics_engine,
                                       settings.analytics_warehouse_path(), rebuild)
        with db.read() as session:
            report = service.segment_counts(session, as_of=result.as_of)
    except PatronError as exc:
        hint = "--as-of" if exc.field in ("as_of", "timezone") else "--database-url"
        hint = "--engine" if exc.field == "analytics_engine" else hint
        raise typer.BadParameter(exc.message, param_hint=hint) from exc
    finally:
        db.dispose()
    if as_json:
        typer.echo(json.dumps({"as_of": result.as_of.isoformat(), "members": result.members,
                               "category_cycles": result.category_cycles,
                               "stages": result.stages, "params": result.params,
                               "pruned": [d.isoformat() for d in result.pruned]}))
        return
    console.print(_stage_table(result))
    if kept := result.params.get("warehouse"):
        how = (f"{kept['changed_sales']:,} changed sales read" if kept["mode"] == "incremental"
               else f"built in full ({kept['reason']})")
        console.print(f"Analytics warehouse: {how} in {kept['seconds'].get('total', 0):.2f} s")
    if line := _model_line(result.params):
        console.print(line)
    if report is not None:
        console.print(_segment_table(report, settings.currency, months))
    if result.pruned:
        console.print(f"Deleted older snapshots: {', '.join(map(str, result.pruned))}")
    if result.params.get("unsettled"):
        console.print(f"[yellow]warning: {', '.join(result.params['unsettled'])} ended at the "
                      "edge of the search range: too few or too uniform purchases to fit the "
                      "models; predictions that could not be computed are left empty.[/]")
    if "error" in result.params:
        console.print(f"[yellow]The models could not be fitted ({result.params['error']}); "
                      "P(alive), expected purchases and CLV are empty.[/]")


@app.command("warehouse")
def warehouse_status(database_url: DbUrl = None) -> None:
    """Show the analytics warehouse: the file that keeps the sales history between nightly
    refreshes (PATRON_ANALYTICS_WAREHOUSE), the day it is up to date with, its last full
    build and what it holds."""
    from patron.analytics import warehouse

    settings = settings_from(database_url)
    path = settings.analytics_warehouse_path()
    if path is None:
        console.print("No analytics warehouse: every refresh loads the whole history "
                      "(set PATRON_ANALYTICS_WAREHOUSE to a path to keep one).")
        return
    summary = warehouse.describe(path)
    if summary is None:
        console.print(f"{path}: not built yet (the next refresh builds it).")
        return
    zone = ZoneInfo(settings.default_timezone)

    def day(cutoff: datetime) -> str:  # a cutoff is the local midnight after its day
        return f"{(cutoff.astimezone(zone) - timedelta(microseconds=1)).date()} (whole day)"

    table = Table("", "", title="Analytics warehouse", show_header=False)
    table.add_row("file", str(path))
    table.add_row("up to", day(summary.cutoff))
    table.add_row("last full build", day(summary.built_cutoff))
    table.add_row("sales", f"{summary.sales:,}")
    table.add_row("lines", f"{summary.lines:,}")
    table.add_row("size", f"{summary.size_bytes / 1e6:,.1f} MB")
    console.print(table)


def _refresh_with_bar(db: Database, timezone: str, day: date | None, config: ScoreConfig,
                      keep: int, engine: str, warehouse: Path | None,
                      rebuild: bool) -> service.RefreshResult:
    with Progress(SpinnerColumn(), TextColumn("{task.description:<34}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console) as bars:
        task = bars.add_task(STAGE_TITLES["load"], total=len(service.STAGES))

        def progress(stage: str, index: int, total: int) -> None:
            bars.update(task, completed=index, description=STAGE_TITLES.get(stage, stage))

        return service.refresh(db, SystemClock(), timezone=timezone, as_of=day, config=config,
                               keep=keep, progress=progress, engine=engine,
                               warehouse=warehouse, rebuild=rebuild)


def _stage_table(result: service.RefreshResult) -> Table:
    table = Table("stage", "seconds", title=f"Scores as of {result.as_of}: "
                  f"{result.members:,} members, {result.category_cycles:,} category cycles")
    for name in service.STAGES:
        table.add_row(name, f"{result.stages.get(name, 0.0):.2f}")
    table.add_row("total", f"{sum(result.stages.values()):.2f}", style="bold")
    return table


def _model_line(params: dict[str, Any]) -> str:
    if "r" not in params:
        return ""
    return (f"BG/NBD r={params['r']:.3g} alpha={params['alpha']:.3g} days "
            f"a={params['a']:.3g} b={params['b']:.3g}; Gamma-Gamma p={params['p']:.3g} "
            f"q={params['q']:.3g} v={params['v']:.4g}; fitted on {params['customers']:,} "
            f"buyers ({params['repeat_buyers']:,} repeat)")


def _segment_table(report: service.SegmentReport, currency: str, months: int) -> Table:
    table = Table("RFM segment", "members", "revenue (365 d)", f"{months}-month CLV",
                  "mean P(alive)", title=f"Segments as of {report.as_of}")
    for g in report.segments:
        table.add_row(g.name or "(no purchase)", f"{g.members:,}",
                      format_minor(g.revenue_365_minor, currency),
                      format_minor(g.clv_minor, currency),
                      "" if g.mean_p_alive is None else f"{g.mean_p_alive:.2f}")
    return table
