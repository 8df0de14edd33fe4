"""Replenishment cycles for every member at once, as the daily job computes them.

    .venv/bin/python bench/replenishment.py                      # 1,000,000 members
    .venv/bin/python bench/replenishment.py --members 200000 --repeat 5

Builds synthetic purchase histories (seed 1): each member has 1 + Poisson(5) purchase days
with gamma-distributed gaps around a personal cycle of 10-40 days, 30 % of rows repeated on
the same day (a second basket), quantities 1-3. Rows are sorted by (member, day) as the
query would return them. Times ``care.replenishment.cycles_by_member`` without and with
quantities (best of ``--repeat`` runs, wall and CPU seconds) and, for scale, the per-member
``estimate_cycle`` on a sample, extrapolated to all members.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from patron.care.replenishment import cycles_by_member, estimate_cycle  # noqa: E402


def make_rows(members: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    counts = 1 + rng.poisson(5, members)
    member = np.repeat(np.arange(members, dtype=np.int64), counts)
    cycle = np.repeat(rng.uniform(10, 40, members), counts)
    gaps = np.maximum(1, np.rint(rng.gamma(4.0, cycle / 4.0))).astype(np.int64)
    first = np.cumsum(counts) - counts
    gaps[first] = rng.integers(0, 60, members)  # first purchase day of each member
    day = np.cumsum(gaps)
    day -= np.repeat(day[first] - gaps[first], counts)  # restart the running sum per member
    again = rng.random(len(day)) < 0.3
    member = np.concatenate([member, member[again]])
    day = np.concatenate([day, day[again]]) + date(2025, 1, 1).toordinal()
    order = np.lexsort((day, member))
    quantity = rng.integers(1, 4, len(day)).astype(np.float64)
    return member[order], day[order], quantity[order]


def best_of(repeat: int, run: Callable[[], object]) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sample", type=int, default=20_000,
                        help="members timed with the per-member estimate_cycle")
    args = parser.parse_args()

    member, day, quantity = make_rows(args.members, seed=1)
    table = Table(title=f"replenishment cycles: {args.members:,} members, {len(day):,} rows")
    for column in ("computation", "members", "wall s", "CPU s", "members/s"):
        table.add_column(column, justify="left" if column == "computation" else "right")

    for label, quantities in (("cycles_by_member (days)", None),
                              ("cycles_by_member (quantities)", quantity)):
        def vectorised(quantities: np.ndarray | None = quantities) -> object:
            return cycles_by_member(member, day, category_cycle_days=21.0,
                                    quantities=quantities)

        wall, cpu = best_of(args.repeat, vectorised)
        table.add_row(label, f"{args.members:,}", f"{wall:.3f}", f"{cpu:.3f}",
                      f"{args.members / wall:,.0f}")

    sample = min(args.sample, args.members)
    cut = int(np.searchsorted(member, sample))
    histories: list[list[date]] = [[] for _ in range(sample)]
    for m, d in zip(member[:cut].tolist(), day[:cut].tolist(), strict=True):
        histories[m].append(date.fromordinal(d))

    def scalar() -> None:
        for history in histories:
            estimate_cycle(history, category_cycle_days=21.0)

    wall, cpu = best_of(1, scalar)
    table.add_row(f"estimate_cycle, one member at a time ({sample:,} sampled)", f"{sample:,}",
                  f"{wall:.3f}", f"{cpu:.3f}", f"{sample / wall:,.0f}")
    table.add_row("  … extrapolated to all members", f"{args.members:,}",
                  f"{wall * args.members / sample:.1f}", "", "")
    Console().print(table)


if __name__ == "__main__":
    main()
