"""The analytics refresh on Spark (local mode) against the same refresh on DuckDB.

Runs ``patron.analytics.service.refresh`` on one SQLite history with ``engine="duckdb"``,
then twice with ``engine="spark"`` (the first Spark run pays the JVM's warm-up: its
classes load and compile on the first queries; the second is what a long-lived worker
sees), and prints each run's stages. The summarise stage is where the engines differ: on
Spark it includes writing the canonical tables to Parquet and registering them. The
Spark session's start is timed on its own. After each run the snapshot is read back and
compared with the DuckDB one (segments and stages equal, largest relative difference of
P(alive) and CLV).

The history: the demo chain (``--demo N`` members, built once into ``bench/out/``), or
the BG/NBD history of ``bench/analytics.py`` (``--members N``; generated there once and
copied, so the two benches do not write each other's snapshots).

    .venv/bin/python bench/spark.py --demo 2000
    .venv/bin/python bench/spark.py --members 100000
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from patron.analytics import scores, service, source, spark
from patron.analytics.tables import MemberScore
from patron.core import migrate
from patron.core.clock import FixedClock
from patron.core.db import Database

OUT = Path(__file__).resolve().parent / "out"
console = Console(width=max(120, Console().width))


def demo_database(members: int) -> tuple[Path, date, str]:
    from patron.demo import DemoConfig, build_demo
    from patron.demo.build import TIMEZONE

    path = OUT / f"spark-demo-{members}.db"
    config = DemoConfig(end_on=date(2026, 11, 23), seed=42, members=members, years=2.0)
    if not path.exists():
        console.print(f"Building the demo chain ({members:,} members) into {path.name} ...")
        db = Database.from_url(f"sqlite:///{path}")
        migrate.upgrade(db.engine)
        with db.write() as session:
            build_demo(session, config=config)
        db.dispose()
    return path, date(2026, 11, 22), TIMEZONE


def generated_database(members: int) -> tuple[Path, date, str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import analytics as generator  # bench/analytics.py

    source = OUT / f"analytics-{members}-s1.db"
    if not source.exists():
        console.print(f"Generating {source.name} (bench/analytics.py's history) ...")
        generator.generate(source, members, 1)
    path = OUT / f"spark-{members}-s1.db"
    if not path.exists():
        with sqlite3.connect(source) as src, sqlite3.connect(path) as dst:
            src.backup(dst)
    return path, generator.AS_OF, generator.TIMEZONE


def snapshot(db: Database, as_of: date) -> dict[str, Any]:
    with db.read() as session:
        rows = session.execute(select(MemberScore.member_id, MemberScore.rfm_segment,
                                      MemberScore.lifecycle_stage, MemberScore.p_alive,
                                      MemberScore.clv_minor)
                               .where(MemberScore.as_of == as_of)
                               .order_by(MemberScore.member_id)).all()
    return {"ids": [r[0] for r in rows], "segment": [r[1] for r in rows],
            "stage": [r[2] for r in rows],
            "p_alive": np.array([np.nan if r[3] is None else r[3] for r in rows]),
            "clv": np.array([np.nan if r[4] is None else r[4] for r in rows], dtype=float)}


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
    both = ~np.isnan(a) & ~np.isnan(b)
    if (np.isnan(a) != np.isnan(b)).any():
        return float("inf")
    scale = np.maximum(np.abs(a[both]), 1e-12)
    return float((np.abs(a[both] - b[both]) / scale).max(initial=0.0))


def summaries_alone(db: Database, as_of: date, timezone: str,
                    session: Any) -> dict[str, dict[str, float]]:
    """member_history and category_cycles on each engine over one loaded source."""
    out: dict[str, dict[str, float]] = {"duckdb": {}, "spark": {}}
    with source.open_source(db, as_of=as_of, timezone=timezone,
                            tables=spark.SCORE_TABLES) as src:
        for engine in ("duckdb", "spark"):
            marks = out[engine]
            began = time.perf_counter()
            with spark.engine_source(src, engine) as scored:
                if engine == "spark":
                    marks["export"] = time.perf_counter() - began
                began = time.perf_counter()
                scores.member_history(scored)
                marks["member_history"] = time.perf_counter() - began
                began = time.perf_counter()
                scores.category_cycles(scored)
                marks["category_cycles"] = time.perf_counter() - began
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--demo", type=int, metavar="MEMBERS", help="the demo chain")
    which.add_argument("--members", type=int, default=100_000,
                       help="bench/analytics.py's generated history (default 100,000)")
    parser.add_argument("--master", default=spark.DEFAULT_MASTER)
    parser.add_argument("--driver-memory", default="2g")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    path, as_of, timezone = (demo_database(args.demo) if args.demo
                             else generated_database(args.members))
    db = Database.from_url(f"sqlite:///{path}")
    migrate.upgrade(db.engine)
    clock = FixedClock(datetime(2026, 11, 23, 2, tzinfo=UTC))
    load = os.getloadavg()[0]

    started = time.perf_counter()
    session = spark.spark_session(args.master, conf={"spark.driver.memory": args.driver_memory})
    session_s = time.perf_counter() - started

    runs: list[tuple[str, service.RefreshResult, str]] = []
    reference: dict[str, Any] | None = None
    for label, engine in (("duckdb", "duckdb"), ("spark (first run)", "spark"),
                          ("spark (warm)", "spark")):
        result = service.refresh(db, clock, timezone=timezone, as_of=as_of, engine=engine)
        shot = snapshot(db, as_of)
        if reference is None:
            reference, verdict = shot, "reference"
        else:
            same = (shot["ids"] == reference["ids"] and shot["segment"] == reference["segment"]
                    and shot["stage"] == reference["stage"])
            verdict = (f"segments {'=' if same else '≠'}, max rel. diff P(alive) "
                       f"{max_rel(reference['p_alive'], shot['p_alive']):.1e}, CLV "
                       f"{max_rel(reference['clv'], shot['clv']):.1e}")
        runs.append((label, result, verdict))
    alone = summaries_alone(db, as_of, timezone, session)
    session.stop()
    db.dispose()

    members = runs[0][1].members
    table = Table("engine", *service.STAGES, "total", "scores vs DuckDB",
                  title=f"refresh of {members:,} members ({path.name}); Spark {args.master}, "
                        f"session start {session_s:.1f} s; {os.cpu_count()} cores, "
                        f"load average {load:.1f} at the start")
    for label, result, verdict in runs:
        table.add_row(label, *(f"{result.stages[s]:.2f}" for s in service.STAGES),
                      f"{sum(result.stages.values()):.2f}", verdict)
    console.print(table)
    parts = Table("step", "DuckDB s", "Spark s", title="the summaries alone (one load, warm "
                  "Spark session): what the engine changes")
    for step in ("export", "member_history", "category_cycles"):
        parts.add_row(step, *(f"{alone[e][step]:.2f}" if step in alone[e] else "—"
                              for e in ("duckdb", "spark")))
    parts.add_row("total", *(f"{sum(alone[e].values()):.2f}" for e in ("duckdb", "spark")),
                  style="bold")
    console.print(parts)
    console.print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
