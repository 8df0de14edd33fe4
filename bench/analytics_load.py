"""Benchmark: the analytics refresh's LOAD stage alone (``source.open_source``).

Copies the canonical tables a refresh reads out of an existing bench database (made by
``bench/analytics.py``, never written here: open a copy if you worry) into DuckDB and
prints, per step, the seconds the extract reported, then the wall and CPU seconds of the
whole load (CPU includes the extract child process) beside the load average, and the
"scan floor": DuckDB's sqlite scanner reading the raw columns the load reads, with no
joins and nothing written (the cost no load through the scanner can go under).

    .venv/bin/python bench/analytics_load.py bench/out/analytics-100000-s1.db [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import ibis  # noqa: F401 - imported before timing: a refresh has it loaded already
from rich.console import Console
from rich.table import Table

from patron.analytics import source
from patron.analytics.canonical import RAW_TABLES, needed, sqlite_scanner_path

AS_OF = date(2026, 11, 22)  # as bench/analytics.py
TIMEZONE = "Asia/Shanghai"


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _load(url: str, memory_limit: str | None) -> tuple[dict[str, float], float, float,
                                                         dict[str, int]]:
    cpu, wall = _cpu(), time.perf_counter()
    with source.open_source(url, as_of=AS_OF, timezone=TIMEZONE,
                            memory_limit=memory_limit) as src:
        wall, cpu = time.perf_counter() - wall, _cpu() - cpu
        rows = {}
        for name in src.loaded:
            counted = src.duck.execute(f"SELECT count(*) FROM {name}").fetchone()
            rows[name] = int(counted[0]) if counted else 0
        return dict(src.timings), wall, cpu, rows


_FLOOR = """
import duckdb, sys, time
duck = duckdb.connect()
duck.execute("LOAD '{ext}'")
duck.execute("ATTACH '{db}' AS oltp (TYPE sqlite, READ_ONLY)")
for name, cols in {tables!r}:
    duck.execute(f"SELECT count(*) FROM (SELECT {{cols}} FROM oltp.{{name}})").fetchall()
"""


def _floor(path: str) -> tuple[float, float]:
    """Wall and CPU seconds of scanning the raw columns a refresh reads (in a child)."""
    _, raw = needed(None)
    tables = [(name, ", ".join(f'"{c}"' for c, _ in RAW_TABLES[name].columns))
              for name in raw]
    code = _FLOOR.format(ext=sqlite_scanner_path(), db=path, tables=tables)
    cpu, wall = _cpu(), time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - wall, _cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("database", help="a SQLite file made by bench/analytics.py")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--memory-limit")
    args = parser.parse_args()
    path = str(Path(args.database).resolve())
    os.environ.setdefault("TMPDIR", tempfile.gettempdir())
    console = Console()
    floor_wall, floor_cpu = _floor(path)
    runs = [_load(f"sqlite:///{path}", args.memory_limit) for _ in range(args.repeat)]
    best = min(runs, key=lambda run: run[2])
    timings, wall, cpu, rows = best
    table = Table(title=f"analytics load of {Path(path).name} (best CPU of {args.repeat})")
    table.add_column("step")
    table.add_column("seconds (wall)", justify="right")
    table.add_column("rows", justify="right")
    for name, seconds in timings.items():
        table.add_row(name, f"{seconds:.2f}", f"{rows[name]:,}" if name in rows else "")
    table.add_row("load: wall / CPU s", f"{wall:.2f} / {cpu:.2f}", "")
    table.add_row("scan floor: wall / CPU s", f"{floor_wall:.2f} / {floor_cpu:.2f}", "")
    table.add_row("load / floor (CPU)", f"{cpu / floor_cpu:.1f}x", "")
    table.add_row("load average", Path("/proc/loadavg").read_text().split(" ")[0]
                  if Path("/proc/loadavg").exists() else "?", "")
    console.print(table)


if __name__ == "__main__":
    main()
