"""The model functions of the nightly scores on 1,000,000 customers, before and after.

Reads per-customer RFM arrays (``x`` repeat purchases, ``t_x`` recency and ``age`` in days
at seconds resolution, ``monetary`` mean repeat spend) from an ``.npz`` file, or draws
them from known parameters when no file is given. The model modules of a git revision
(``--against``, default HEAD) are loaded beside the working tree's, and both are timed in
this one process, alternately, best of ``--repeat`` runs each (the machine is shared: the
best run is the one least disturbed):

* the fit: ``summary.compress``, ``bgnbd.fit`` on the compressed rows, ``gamma_gamma.fit``;
* the predictions the scores make: ``bgnbd.p_alive``, ``conditional_expected_purchases``
  at 30, 90 and 365 days, ``clv.discounted_expected_purchases`` over 12 month ends, and
  ``clv.customer_lifetime_value``.

Then the largest differences of the working tree's predictions from the revision's
(which evaluates eq. 10 directly, one ``hyp2f1`` per value), relative where the value is
at least 1e-3 and absolute below, and of the fitted parameters. Predictions use fixed
parameters (those fitted on the reference data), so the two sides compute the same thing.

    .venv/bin/python bench/models.py --data /tmp/prof/rfm_1m.npz
    .venv/bin/python bench/models.py --customers 200000            # simulated customers
    .venv/bin/python bench/models.py --data ... --against HEAD~3   # another baseline
"""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from patron.analytics.models import bgnbd, clv, gamma_gamma, summary
from patron.analytics.models.bgnbd import BGNBDParams
from patron.analytics.models.gamma_gamma import GammaGammaParams
from patron.analytics.models.simulate import simulate_bgnbd, simulate_spend

console = Console(width=max(120, Console().width))
ROOT = Path(__file__).resolve().parent.parent
MODULES = ("fitting", "summary", "bgnbd", "gamma_gamma", "clv", "simulate")
# the parameters fitted on the reference data (/tmp/prof/rfm_1m.npz), days
BG = BGNBDParams(r=0.5152, alpha=16.59, a=0.6013, b=2.3847, loglik=0.0, n_customers=0)
GG = GammaGammaParams(p=1.51, q=47.35, v=217984.0, loglik=0.0, n_customers=0)
HORIZONS = (30.0, 90.0, 365.0)
MONTHS = 12


def load(path: Path | None, customers: int) -> dict[str, np.ndarray]:
    if path is not None:
        with np.load(path) as data:
            return {k: data[k] for k in ("x", "t_x", "age", "monetary")}
    rng = np.random.default_rng(1)
    age = np.round(rng.uniform(0.0, 730.0, customers) * 86_400) / 86_400
    x, t_x = simulate_bgnbd(BG, age, rng, ticks_per_unit=86_400)
    return {"x": x, "t_x": t_x, "age": age,
            "monetary": simulate_spend(GammaGammaParams(1.5, 6.0, 20.0, 0.0, 0), x, rng)}


def baseline_modules(revision: str, into: Path) -> dict[str, ModuleType]:
    """The model modules as they were at ``revision``, importable as ``models_<sha>``."""
    sha = subprocess.run(["git", "rev-parse", "--short", revision], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.strip()
    package = into / f"models_{sha}"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in MODULES:
        text = subprocess.run(["git", "show", f"{revision}:src/patron/analytics/models/"
                               f"{name}.py"], cwd=ROOT, check=True, capture_output=True,
                              text=True).stdout
        text = re.sub(r"patron\.analytics\.models\.(\w+)", rf"{package.name}.\1", text)
        text = text.replace("from patron.analytics.models import",
                            f"from {package.name} import")
        (package / f"{name}.py").write_text(text)
    sys.path.insert(0, str(into))
    return {name: importlib.import_module(f"{package.name}.{name}") for name in MODULES}


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def difference(new: np.ndarray, old: np.ndarray) -> tuple[float, float]:
    """(largest relative difference where |old| >= 1e-3, largest absolute one below)."""
    new, old = np.asarray(new).ravel(), np.asarray(old).ravel()
    big = np.abs(old) >= 1e-3
    rel = np.abs(new[big] - old[big]) / np.abs(old[big])
    small = np.abs(new[~big] - old[~big])
    return (float(rel.max()) if rel.size else 0.0, float(small.max()) if small.size else 0.0)


def steps(mods: dict[str, Any], d: dict[str, np.ndarray]
          ) -> list[tuple[str, str, Callable[[], Any]]]:
    """(label, what, call) for one side; ``mods`` maps module names to modules."""
    x, t_x, age, monetary = d["x"], d["t_x"], d["age"], d["monetary"]
    horizons = np.array(HORIZONS).reshape(-1, 1)
    model = mods["clv"].CLVModel(bgnbd=mods["bgnbd"].BGNBDParams(**BG.as_dict()),
                                 gamma_gamma=mods["gamma_gamma"].GammaGammaParams(
                                     **GG.as_dict()), unit=mods["summary"].TimeUnit.DAYS)
    rows = mods["summary"].compress(x, t_x, age)
    return [
        ("summary.compress", f"→ {len(rows):,} rows",
         lambda: mods["summary"].compress(x, t_x, age)),
        ("bgnbd.fit", "", lambda: mods["bgnbd"].fit(rows)),
        ("gamma_gamma.fit", "",
         lambda: mods["gamma_gamma"].fit(x, monetary)),
        ("bgnbd.p_alive", "", lambda: mods["bgnbd"].p_alive(model.bgnbd, x, t_x, age)),
        ("bgnbd.conditional_expected_purchases", "3 horizons",
         lambda: mods["bgnbd"].conditional_expected_purchases(model.bgnbd, horizons, x, t_x,
                                                              age)),
        ("clv.discounted_expected_purchases", "12 month ends",
         lambda: mods["clv"].discounted_expected_purchases(
             model.bgnbd, frequency=x, recency=t_x, age=age, months=MONTHS,
             monthly_discount_rate=0.01, month_length=clv.DAYS_PER_MONTH)),
        ("clv.customer_lifetime_value", "12 months",
         lambda: mods["clv"].customer_lifetime_value(model, frequency=x, recency=t_x, age=age,
                                                     monetary=monetary)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, help=".npz with x, t_x, age, monetary")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--against", default="HEAD", help="git revision to compare with")
    args = parser.parse_args()
    d = load(args.data, args.customers)
    n = d["x"].shape[0]
    now = {"summary": summary, "bgnbd": bgnbd, "gamma_gamma": gamma_gamma, "clv": clv}
    with tempfile.TemporaryDirectory() as tmp:
        before = baseline_modules(args.against, Path(tmp))
        sides = {"before": steps(before, d), "after": steps(now, d)}
        best: dict[tuple[str, str], tuple[float, float]] = {}
        results: dict[tuple[str, str], Any] = {}
        for _ in range(args.repeat):
            for i in range(len(sides["after"])):
                for side, todo in sides.items():
                    label, _, call = todo[i]
                    wall, cpu, out = timed(call)
                    results[side, label] = out
                    if wall < best.get((side, label), (np.inf, 0.0))[0]:
                        best[side, label] = (wall, cpu)

    table = Table("step", "before wall s", "before CPU s", "after wall s", "after CPU s",
                  "CPU ×", title=f"patron models on {n:,} customers, {args.against} → "
                                 f"working tree (best of {args.repeat})")
    fit_steps = 3
    for i, (label, what, _) in enumerate(sides["after"]):
        bw, bc = best["before", label]
        aw, ac = best["after", label]
        table.add_row(f"{label} ({what})" if what else label, f"{bw:.3f}", f"{bc:.3f}",
                      f"{aw:.3f}", f"{ac:.3f}", f"{bc / ac:.1f}",
                      end_section=i in (fit_steps - 1, len(best) // 2 - 1))
    for name, labels in (("fit: compress + both fits",
                          ("summary.compress", "bgnbd.fit", "gamma_gamma.fit")),
                         ("scores: p_alive + 3 horizons + CLV",
                          ("bgnbd.p_alive", "bgnbd.conditional_expected_purchases",
                           "clv.customer_lifetime_value"))):
        bw, bc, aw, ac = (sum(best[side, label][j] for label in labels)
                          for side, j in (("before", 0), ("before", 1), ("after", 0),
                                          ("after", 1)))
        table.add_row(name, f"{bw:.3f}", f"{bc:.3f}", f"{aw:.3f}", f"{ac:.3f}",
                      f"{bc / ac:.1f}", style="bold")
    console.print(table)

    agree = Table("compared", "max relative diff (|old| ≥ 1e-3)", "max abs diff (|old| < 1e-3)",
                  title="working tree vs the direct evaluation (the revision's code)")
    for label in ("bgnbd.conditional_expected_purchases", "clv.discounted_expected_purchases",
                  "clv.customer_lifetime_value"):
        agree.add_row(label, *(f"{v:.2e}" for v in difference(results["after", label],
                                                              results["before", label])))
    for label, names in (("bgnbd.fit", ("r", "alpha", "a", "b", "loglik")),
                         ("gamma_gamma.fit", ("p", "q", "v", "loglik"))):
        old, new = results["before", label], results["after", label]
        worst = max(abs(getattr(new, k) - getattr(old, k)) / abs(getattr(old, k))
                    for k in names)
        agree.add_row(f"{label} ({', '.join(names)})", f"{worst:.2e}", "")
    console.print(agree)
    fitted = results["after", "bgnbd.fit"], results["after", "gamma_gamma.fit"]
    console.print(f"fitted: r={fitted[0].r:.6g} alpha={fitted[0].alpha:.6g} a={fitted[0].a:.6g} "
                  f"b={fitted[0].b:.6g} (ln L {fitted[0].loglik:.6f}); p={fitted[1].p:.6g} "
                  f"q={fitted[1].q:.6g} v={fitted[1].v:.6g} (ln L {fitted[1].loglik:.6f})")


if __name__ == "__main__":
    main()
