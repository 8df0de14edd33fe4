"""``patron analytics fit``: fit the purchase (BG/NBD) and spend (Gamma-Gamma) models.

The command reads a transaction file for now: reading the sales history straight from the
database needs an export path from ``sales`` (its service, not its tables), which does not
exist yet, so ``--data`` is required.
"""

from __future__ import annotations

import json
import time
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from patron.analytics.models import clv
from patron.analytics.models.summary import TimeUnit, read_transactions_csv, summarise
from patron.core.errors import PatronError

app = typer.Typer(help="Customer-base analytics: purchase, dropout and spend models.",
                  no_args_is_help=True)
console = Console()


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


@app.command("fit")
def fit(
    data: Annotated[Path, typer.Option(
        "--data", exists=True, dir_okay=False, readable=True,
        help="CSV with a header naming customer, date (YYYY-MM-DD or YYYY-MM-DD HH:MM:SS, "
             "store-local) and amount; other columns are ignored. Required for now: fitting "
             "on the database's sales is not available yet.")],
    calibration_end: Annotated[str | None, typer.Option(
        "--calibration-end", metavar="DATE",
        help="Use purchases up to and including this day (default: the last date in the "
             "file)")] = None,
    unit: Annotated[TimeUnit, typer.Option(
        "--unit", case_sensitive=False,
        help="Time unit of recency, age and alpha")] = TimeUnit.WEEKS,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object instead of a table")] = False,
) -> None:
    """Fit BG/NBD and Gamma-Gamma on a transaction file and print their parameters.

    Same-day purchases of a customer are one transaction; times keep the file's resolution.
    """
    end = _parse_end(calibration_end)
    started = time.perf_counter()
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
    elapsed = time.perf_counter() - started
    bg, gg = model.bgnbd, model.gamma_gamma
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
            "customers": len(summary),
        }))
        return
    repeaters = int(np.count_nonzero(summary.frequency))
    table = Table("model", "parameter", "value", "meaning",
                  title=f"{len(summary):,} customers ({repeaters:,} repeat buyers), "
                        f"calibration through {summary.calibration_end}, time in {unit}")
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
