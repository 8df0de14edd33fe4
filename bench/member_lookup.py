"""Member lookup latency at the till, on a database of 1,000,000 members.

A cashier finds a member by full phone number, by its last four digits (first page of 25
plus the total count) or by card number; each lookup goes through
``patron.members.service.search_members`` in its own read session, the code path the API
uses. ``find_by_phone`` (the checkout's lookup) is measured raw as well. The database is
built once with the demo generator (members only, no sales) and reused from ``bench/out/``;
on PostgreSQL a throwaway ``patron_bench`` database is created and dropped.

    .venv/bin/python bench/member_lookup.py                    # SQLite, 1 M members
    .venv/bin/python bench/member_lookup.py --database-url postgresql://postgres@127.0.0.1:5432/

Prints p50/p95/p99/max latency in ms, lookups per second (one client) and the CPU time per
lookup (which a busy machine does not inflate), then the query plans of each lookup
(EXPLAIN QUERY PLAN on SQLite, EXPLAIN ANALYZE on PostgreSQL).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.engine import make_url

from patron.cli.demo import RichStages
from patron.core import migrate
from patron.core.db import Database, normalise_url
from patron.demo import DemoConfig, build_demo, member_count
from patron.members import rules
from patron.members import service as members
from patron.members.models import Member

OUT = Path(__file__).resolve().parent / "out"
END_ON = date(2026, 11, 23)  # fixed, so a rebuilt database holds the same members
TARGET_P99_MS = 20.0
console = Console(width=max(120, Console().width))


@dataclass
class Result:
    name: str
    latencies_ms: list[float]
    cpu_ms: list[float]  # CPU time of this process per lookup: robust to a busy machine
    seconds: float
    rows: float  # average number of matches (search_members' total count)

    def quantile(self, q: float, values: list[float] | None = None) -> float:
        ordered = sorted(self.latencies_ms if values is None else values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description:<30}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=console)


def build(db: Database, n: int, seed: int) -> float:
    """Migrate and load ``n`` demo members (no sales); returns the seconds it took."""
    started = time.perf_counter()
    migrate.upgrade(db.engine)
    with _progress() as bars:
        stages = RichStages(bars)
        with db.write() as session:
            build_demo(session, config=DemoConfig(end_on=END_ON, seed=seed, members=n,
                                                  with_sales=False), progress=stages)
            stages.stage("Committing", 1)
        stages.close()
    settle(db)
    return time.perf_counter() - started


def settle(db: Database) -> None:
    """Statistics on PostgreSQL; on SQLite fold the write-ahead log into the database file."""
    with db.engine.connect() as conn:
        if db.engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
        else:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def measure(name: str, lookup: Callable[[str], int], inputs: list[str],
            warmup: int) -> Result:
    for q in inputs[:warmup]:
        lookup(q)
    latencies, cpu, rows = [], [], 0
    started = time.perf_counter()
    for q in inputs[warmup:]:
        c0, t0 = time.process_time_ns(), time.perf_counter_ns()
        rows += lookup(q)
        latencies.append((time.perf_counter_ns() - t0) / 1e6)
        cpu.append((time.process_time_ns() - c0) / 1e6)
    return Result(name, latencies, cpu, time.perf_counter() - started, rows / len(latencies))


@contextmanager
def captured(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements (with parameters) run on ``engine`` inside the block."""
    statements: list[tuple[str, Any]] = []

    def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
               _many: bool) -> None:
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", before)


def explain(db: Database, statement: str, parameters: Any) -> str:
    sqlite = db.engine.dialect.name == "sqlite"
    prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) "
    with db.engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + statement, parameters).all()
    return "\n".join(str(r[-1])[:140] for r in rows)


def run(db: Database, *, lookups: int, warmup: int, slow_lookups: int,
        seed: int) -> list[Result]:
    rnd = random.Random(seed)
    with db.read() as session:
        sample = list(session.execute(
            select(Member.phone, Member.card_no).where(Member.status == "active")))
    picks = [sample[rnd.randrange(len(sample))] for _ in range(lookups + warmup)]
    phones = [str(p) for p, _ in picks]
    typed = [rules.national_digits(p) for p in phones]  # as a cashier types: 13812345678
    # A typed mobile number that passes the Luhn check (about 1 in 10) could also be a card
    # number, so search_members looks for either: measured apart, it is far slower.
    national = [n for n in typed if not rules.is_valid_card_no(n)]
    luhn_valid = [n for n in typed if rules.is_valid_card_no(n)][:slow_lookups]
    last4 = [p[-4:] for p in phones]
    cards = [str(c) for _, c in picks]

    def search(q: str) -> int:
        with db.read() as session:
            found, total = members.search_members(
                session, query=members.MemberQuery(q=q, page_size=25), region="CN")
            assert len(found) == min(total, 25)
            return total

    def by_phone(phone: str) -> int:
        with db.read() as session:
            return int(members.find_by_phone(session, phone_e164=phone) is not None)

    kinds: list[tuple[str, Callable[[str], int], list[str], int]] = [
        ("full phone (search_members)", search, national, warmup),
        ("full phone passing Luhn (search_members)", search, luhn_valid, 0),
        ("last 4 + count (search_members)", search, last4, warmup),
        ("card number (search_members)", search, cards, warmup),
        ("find_by_phone", by_phone, phones, warmup),
    ]
    results = []
    for name, fn, inputs, skip in kinds:
        console.print(f"measuring {name} ...")
        results.append(measure(name, fn, inputs, skip))
    console.print(_results_table(results))
    console.print(f"load average now {os.getloadavg()[0]:.1f} (a busy machine shows in the "
                  "wall-clock columns, not in CPU ms)")
    for name, fn, q in (("full phone", search, national[0]),
                        ("full phone passing Luhn", search, luhn_valid[0]),
                        ("last 4 digits + count", search, last4[0]),
                        ("card number", search, cards[0]),
                        ("find_by_phone", by_phone, phones[0])):
        with captured(db.engine) as statements:
            fn(q)
        console.print(f"[bold]{name}[/] (q={q!r})")
        for statement, parameters in statements:
            if statement.lstrip().upper().startswith("SELECT"):
                console.print("  " + " ".join(statement.split())[:110] + " ...", style="dim",
                              soft_wrap=True)
                console.print("    " + explain(db, statement, parameters).replace("\n", "\n    "),
                              soft_wrap=True)
    return results


def _results_table(results: list[Result]) -> Table:
    table = Table("lookup", "n", "p50 ms", "p95 ms", "p99 ms", "max ms", "lookups/s",
                  "CPU ms p50/p99", "matches",
                  title="Member lookup (one client, each in its own read session)")
    for r in results:
        p99 = r.quantile(0.99)
        table.add_row(r.name, f"{len(r.latencies_ms):,}", f"{r.quantile(0.5):.2f}",
                      f"{r.quantile(0.95):.2f}",
                      f"[{'green' if p99 < TARGET_P99_MS else 'red'}]{p99:.2f}[/]",
                      f"{max(r.latencies_ms):.2f}", f"{len(r.latencies_ms) / r.seconds:,.0f}",
                      f"{r.quantile(0.5, r.cpu_ms):.2f} / {r.quantile(0.99, r.cpu_ms):.2f}",
                      f"{r.rows:.1f}")
    return table


def machine() -> str:
    return (f"{platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}, load average {os.getloadavg()[0]:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=3_000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--slow-lookups", type=int, default=5,
                        help="how many Luhn-passing phone numbers to time (they scan)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rebuild", action="store_true", help="rebuild the SQLite database")
    parser.add_argument("--database-url", help="PostgreSQL server URL: run there instead "
                        "(creates and drops a database named patron_bench)")
    parser.add_argument("--keep", action="store_true", help="keep patron_bench afterwards")
    args = parser.parse_args(argv)
    console.print(f"machine: {machine()}")

    if not args.database_url:
        OUT.mkdir(exist_ok=True)
        path = OUT / f"members-{args.members}.db"
        if args.rebuild:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        db = Database.from_url(f"sqlite:///{path}")
        try:
            migrate.upgrade(db.engine)
            with db.read() as session:
                have = member_count(session)
            if have == 0:
                seconds = build(db, args.members, args.seed)
                console.print(f"built {args.members:,} members in {seconds:.1f} s ({path})")
            elif have != args.members:
                console.print(f"[red]{path} holds {have:,} members; use --rebuild[/]")
                return 2
            else:
                settle(db)
                console.print(f"reusing {path} ({have:,} members)")
            run(db, lookups=args.lookups, warmup=args.warmup, slow_lookups=args.slow_lookups,
                seed=args.seed)
        finally:
            db.dispose()
        return 0

    server = make_url(normalise_url(args.database_url))
    admin = create_engine(server.set(database=server.database or "postgres"),
                          isolation_level="AUTOCOMMIT")
    url = server.set(database="patron_bench").render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text('DROP DATABASE IF EXISTS "patron_bench" WITH (FORCE)'))
        conn.execute(text('CREATE DATABASE "patron_bench"'))
    db = Database.from_url(url)
    try:
        seconds = build(db, args.members, args.seed)
        console.print(f"built {args.members:,} members in {seconds:.1f} s (PostgreSQL)")
        run(db, lookups=args.lookups, warmup=args.warmup, slow_lookups=args.slow_lookups,
            seed=args.seed)
    finally:
        db.dispose()
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(text('DROP DATABASE IF EXISTS "patron_bench" WITH (FORCE)'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
