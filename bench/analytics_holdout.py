"""BG/NBD and Gamma-Gamma on CDNOW: calibration fit, holdout validation, tracking chart;
then fit time on a large simulated customer base.

    .venv/bin/python bench/analytics_holdout.py                  # everything, 1,000,000 simulated
    .venv/bin/python bench/analytics_holdout.py --customers 0    # CDNOW only

CDNOW (tests/data/cdnow/CDNOW_sample.txt) with the paper's conventions: weeks, calibration
from each customer's first purchase through 1997-09-30, holdout 1997-10-01..1998-06-30
(39 weeks), several purchases on one day are one transaction. It prints

* the calibration fit next to the published estimates,
* predicted vs actual holdout repeat transactions per customer, grouped by calibration
  frequency 0..7+ (the paper's Figure 4), and in total,
* predicted vs actual holdout spend (BG/NBD purchases × Gamma-Gamma spend),
* cumulative repeat transactions by week, actual vs predicted (the paper's Figure 3),
  written as a hand-made SVG to ``--svg`` (docs/analytics-tracking.svg by default).

The scale part times, best of ``--repeat`` runs: encoding and summarising 4 random
transactions per customer for ``--customers`` customers; then, on customers drawn from
CDNOW-like parameters at day resolution (first purchases spread over a year, observed to
its end), the compression, both fits and a 12-month CLV for everyone.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from patron.analytics.models import bgnbd, clv, gamma_gamma  # noqa: E402
from patron.analytics.models.simulate import simulate_bgnbd, simulate_spend  # noqa: E402
from patron.analytics.models.summary import (  # noqa: E402
    TimeUnit,
    Transactions,
    collapse_same_day,
    compress,
    summarise,
)

CDNOW = ROOT / "tests" / "data" / "cdnow" / "CDNOW_sample.txt"
COHORT_START = np.datetime64("1997-01-01")
CALIBRATION_END = np.datetime64("1997-09-30")
HOLDOUT_END = np.datetime64("1998-06-30")
HOLDOUT_WEEKS = (HOLDOUT_END - CALIBRATION_END).astype(int) / 7  # 39.0
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "loglik": -9582.4,
             "p": 6.25, "q": 3.74, "v": 15.44}
console = Console()


def load_cdnow() -> Transactions:
    raw = np.loadtxt(CDNOW, dtype=str)
    days = np.array([f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in raw[:, 2]], dtype="datetime64[D]")
    return Transactions.from_arrays(raw[:, 0], days, raw[:, 4].astype(float))


def per_customer(values: np.ndarray, codes: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(codes, weights=values, minlength=n)


# --- a small SVG line chart (matplotlib is not a dependency) ------------------------------

def nice_step(span: float, target: int = 6) -> float:
    raw = span / target
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def svg_line_chart(series: Sequence[tuple[str, Sequence[float], Sequence[float], str, str]],
                   *, title: str, x_label: str, y_label: str, vline: tuple[float, str] | None,
                   width: int = 760, height: int = 440) -> str:
    """Lines (label, xs, ys, colour, dash) on shared axes, with an optional marked x."""
    left, right, top, bottom = 72, 24, 48, 56
    x_max = max(max(xs) for _, xs, _, _, _ in series)
    y_max = max(max(ys) for _, _, ys, _, _ in series)
    x_step, y_step = nice_step(x_max), nice_step(y_max)
    x_top, y_top = math.ceil(x_max / x_step) * x_step, math.ceil(y_max / y_step) * y_step
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + x / x_top * plot_w

    def py(y: float) -> float:
        return top + plot_h - y / y_top * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" '
           f'font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="24" text-anchor="middle" font-size="15" '
           f'font-weight="bold">{title}</text>']
    for i in range(round(y_top / y_step) + 1):
        y = i * y_step
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
                   f'stroke="#e5e5e5"/>')
        out.append(f'<text x="{left - 8}" y="{py(y) + 4:.1f}" text-anchor="end">{y:,.0f}</text>')
    for i in range(round(x_top / x_step) + 1):
        x = i * x_step
        out.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{top + plot_h}" '
                   f'y2="{top + plot_h + 5}" stroke="#333"/>')
        out.append(f'<text x="{px(x):.1f}" y="{top + plot_h + 19}" '
                   f'text-anchor="middle">{x:g}</text>')
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" '
               f'y2="{top + plot_h}" stroke="#333"/>')
    out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" stroke="#333"/>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 14}" '
               f'text-anchor="middle">{x_label}</text>')
    out.append(f'<text transform="translate(18 {top + plot_h / 2}) rotate(-90)" '
               f'text-anchor="middle">{y_label}</text>')
    if vline is not None:
        x, label = vline
        out.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{top}" y2="{top + plot_h}" '
                   f'stroke="#999" stroke-dasharray="2 3"/>')
        out.append(f'<text x="{px(x) + 6:.1f}" y="{top + 14}" fill="#666">{label}</text>')
    for i, (label, xs, ys, colour, dash) in enumerate(series):
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=True))
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<polyline points="{points}" fill="none" stroke="{colour}" '
                   f'stroke-width="2"{dash_attr}/>')
        ly = top + 14 + 18 * i
        out.append(f'<line x1="{left + 16}" x2="{left + 46}" y1="{ly - 4}" y2="{ly - 4}" '
                   f'stroke="{colour}" stroke-width="2"{dash_attr}/>')
        out.append(f'<text x="{left + 54}" y="{ly}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# --- CDNOW ---------------------------------------------------------------------------------

def cdnow(svg_path: Path) -> None:
    tx = load_cdnow()
    started = time.perf_counter()
    summary = summarise(tx, calibration_end=CALIBRATION_END, unit=TimeUnit.WEEKS)
    rows = summary.compress()
    t_summary = time.perf_counter() - started
    started = time.perf_counter()
    bg = bgnbd.fit(rows)
    t_bg = time.perf_counter() - started
    started = time.perf_counter()
    gg = gamma_gamma.fit(summary.frequency, summary.monetary)
    t_gg = time.perf_counter() - started

    fit_table = Table("parameter", "published", "patron", title=(
        f"CDNOW calibration fit: {len(summary):,} customers in {len(rows):,} rows; "
        f"summary {t_summary * 1000:.0f} ms, BG/NBD {t_bg * 1000:.0f} ms, "
        f"Gamma-Gamma {t_gg * 1000:.0f} ms"))
    ours = {"r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b, "loglik": bg.loglik,
            "p": gg.p, "q": gg.q, "v": gg.v}
    for name, value in ours.items():
        fit_table.add_row(name, f"{PUBLISHED[name]:g}",
                          f"{value:.1f}" if name == "loglik" else f"{value:.4f}")
    console.print(fit_table)

    # Holdout: distinct purchase days after the calibration end, per calibration customer.
    daily = collapse_same_day(tx)
    n_ids = daily.customer_ids.shape[0]
    in_holdout = (daily.at > CALIBRATION_END) & (daily.at <= HOLDOUT_END)
    actual_by_id = per_customer(in_holdout.astype(float), daily.customer_code, n_ids)
    spend_by_id = per_customer(np.where(in_holdout, daily.amount, 0.0), daily.customer_code,
                               n_ids)
    code_of = np.searchsorted(daily.customer_ids, summary.customer)
    actual = actual_by_id[code_of]
    actual_spend = spend_by_id[code_of]
    predicted = bgnbd.conditional_expected_purchases(bg, HOLDOUT_WEEKS, summary.frequency,
                                                     summary.recency, summary.age)
    spend = gamma_gamma.conditional_expected_spend(gg, summary.frequency, summary.monetary)

    group_table = Table("calibration x", "customers", "actual per customer",
                        "predicted per customer", "actual total", "predicted total",
                        title="Holdout repeat transactions (weeks 40-78) by calibration "
                              "frequency")
    groups = [*((str(k), summary.frequency == k) for k in range(7)),
              ("7+", summary.frequency >= 7)]
    for label, mask in groups:
        group_table.add_row(label, f"{int(mask.sum()):,}", f"{actual[mask].mean():.3f}",
                            f"{predicted[mask].mean():.3f}", f"{actual[mask].sum():,.0f}",
                            f"{predicted[mask].sum():,.1f}")
    group_table.add_row("all", f"{len(summary):,}", f"{actual.mean():.3f}",
                        f"{predicted.mean():.3f}", f"{actual.sum():,.0f}",
                        f"{predicted.sum():,.1f}")
    console.print(group_table)
    mae = float(np.abs(actual - predicted).mean())
    console.print(f"holdout repeat transactions: actual {actual.sum():,.0f}, predicted "
                  f"{predicted.sum():,.1f} ({predicted.sum() / actual.sum() - 1:+.1%}); "
                  f"per-customer mean absolute error {mae:.3f}")

    spend_table = Table("group", "customers", "actual holdout spend", "predicted",
                        title="Holdout spend (USD): BG/NBD purchases × Gamma-Gamma spend")
    for label, mask in [("x = 0", summary.frequency == 0), ("x >= 1", summary.frequency > 0),
                        ("all", np.ones(len(summary), dtype=bool))]:
        spend_table.add_row(label, f"{int(mask.sum()):,}", f"{actual_spend[mask].sum():,.0f}",
                            f"{(predicted * spend)[mask].sum():,.0f}")
    console.print(spend_table)

    # Tracking: cumulative repeat transactions of the cohort by week since 1997-01-01.
    first = summary.first_purchase.astype("datetime64[D]")
    first_week = (first - COHORT_START).astype(np.int64) / 7
    day_of_row = (daily.at - COHORT_START).astype(np.int64)
    first_day_of_row = (first[np.searchsorted(summary.customer,
                                              daily.customer_ids[daily.customer_code])]
                        - COHORT_START).astype(np.int64)
    repeat_days = day_of_row[day_of_row > first_day_of_row]
    weeks = np.arange(0, 79)
    actual_cum = np.array([(repeat_days < 7 * w).sum() for w in weeks], dtype=float)
    predicted_cum = bgnbd.expected_cohort_repeat_purchases(bg, weeks.astype(float), first_week)
    track = Table("week", "actual cumulative", "predicted cumulative", "error",
                  title="Cumulative repeat transactions, weeks since 1997-01-01")
    for w in (13, 26, 39, 52, 65, 78):
        track.add_row(str(w), f"{actual_cum[w]:,.0f}", f"{predicted_cum[w]:,.1f}",
                      f"{predicted_cum[w] / actual_cum[w] - 1:+.1%}")
    console.print(track)
    svg = svg_line_chart(
        [("actual", weeks.tolist(), actual_cum.tolist(), "#1f4e9c", ""),
         ("BG/NBD, fitted on weeks 1-39", weeks.tolist(), predicted_cum.tolist(), "#d9480f",
          "7 4")],
        title="CDNOW sample: cumulative repeat transactions, actual vs BG/NBD",
        x_label="week since 1997-01-01", y_label="cumulative repeat transactions",
        vline=(float((CALIBRATION_END - COHORT_START).astype(int) + 1) / 7,
               "end of calibration"))
    svg_path.write_text(svg)
    console.print(f"wrote {svg_path}")


# --- scale ---------------------------------------------------------------------------------

def scale(n_customers: int, repeat: int) -> None:
    rng = np.random.default_rng(7)
    truth = bgnbd.BGNBDParams(r=0.243, alpha=4.414, a=0.793, b=2.426, loglik=0.0,
                              n_customers=n_customers)
    spend_truth = gamma_gamma.GammaGammaParams(p=6.25, q=3.74, v=15.44, loglik=0.0,
                                               n_customers=0)
    first_day = rng.integers(0, 365, n_customers)
    age = (365 - first_day) / 7  # observed to the end of a one-year window, in weeks
    x, t_x = simulate_bgnbd(truth, age, rng, ticks_per_unit=7)
    monetary = simulate_spend(spend_truth, x, rng)
    # Raw transactions for the summary step: 4 per customer on random days of the year.
    n_rows = 4 * n_customers
    ids = rng.integers(0, n_customers, n_rows)
    days = COHORT_START + rng.integers(0, 365, n_rows).astype("timedelta64[D]")
    amounts = rng.gamma(2.0, 15.0, n_rows)
    timings: dict[str, list[float]] = {
        f"encode {n_rows:,} transactions": [], "summarise (same-day merge, x, t_x, T, m)": [],
        "compress": [], "BG/NBD fit": [], "Gamma-Gamma fit": [], "12-month CLV, everyone": []}
    rows_n = 0
    fitted = None
    for _ in range(repeat):
        started = time.perf_counter()
        tx = Transactions.from_arrays(ids, days, amounts)
        timings[f"encode {n_rows:,} transactions"].append(time.perf_counter() - started)
        started = time.perf_counter()
        summarise(tx, calibration_end=COHORT_START + np.timedelta64(364, "D"))
        timings["summarise (same-day merge, x, t_x, T, m)"].append(time.perf_counter() - started)
        started = time.perf_counter()
        rows = compress(x, t_x, age)
        timings["compress"].append(time.perf_counter() - started)
        rows_n = len(rows)
        started = time.perf_counter()
        fitted = bgnbd.fit(rows)
        timings["BG/NBD fit"].append(time.perf_counter() - started)
        started = time.perf_counter()
        spend_fit = gamma_gamma.fit(x, monetary)
        timings["Gamma-Gamma fit"].append(time.perf_counter() - started)
        model = clv.CLVModel(bgnbd=fitted, gamma_gamma=spend_fit, unit=TimeUnit.WEEKS)
        started = time.perf_counter()
        clv.customer_lifetime_value(model, frequency=x, recency=t_x, age=age,
                                    monetary=monetary, months=12)
        timings["12-month CLV, everyone"].append(time.perf_counter() - started)
    table = Table("step", f"best of {repeat} (s)", "median (s)",
                  title=f"{n_customers:,} simulated customers (day resolution, one year) "
                        f"→ {rows_n:,} compressed rows")
    for step, values in timings.items():
        table.add_row(step, f"{min(values):.3f}", f"{statistics.median(values):.3f}")
    console.print(table)
    assert fitted is not None
    console.print("recovered BG/NBD: " + ", ".join(
        f"{k} {getattr(fitted, k):.4f} ({getattr(fitted, k) / getattr(truth, k) - 1:+.1%})"
        for k in ("r", "alpha", "a", "b")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--svg", type=Path, default=ROOT / "docs" / "analytics-tracking.svg")
    parser.add_argument("--customers", type=int, default=1_000_000,
                        help="simulated customers for the timing part (0 skips it)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cdnow(args.svg)
    if args.customers > 0:
        scale(args.customers, args.repeat)


if __name__ == "__main__":
    main()
