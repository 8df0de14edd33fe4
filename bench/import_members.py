"""Benchmark: import 100,000 members from CSV into a fresh database, dry run and for real.

    .venv/bin/python bench/import_members.py [--rows 100000] [--database-url URL]

Generates a CSV with Chinese headers (as a Chinese Excel export has them): valid rows
plus about 2 % bad ones (bad phone, phone twice in the file, impossible date, impossible
lunar date, unknown store, missing name). Without ``--database-url`` the members go into
a new, migrated SQLite file in a temporary directory; with one (PostgreSQL, say) into
that database, which should be empty. Prints one table: reading the file, the dry run,
the import and an export of everything imported, each in wall-clock seconds and in CPU
seconds of this process (on a busy machine the second is the steadier figure).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from patron.core import migrate
from patron.core.clock import SystemClock
from patron.core.db import Database
from patron.members import importer
from patron.members import service as members
from patron.members.schemas import StoreCreate

HEADERS = ["姓名", "手机号", "邮箱", "性别", "生日", "农历", "标签", "备注", "门店",
           "短信授权", "邮件授权"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英"
TAGS = ["VIP", "常客", "咖啡", "茶", "甜品", "会员日", "企业客户"]
STORES = ["SH01", "SH02", "BJ01", "GZ01", "SZ01"]


def make_csv(rows: int, seed: int = 7) -> tuple[bytes, int]:
    """The file's bytes (UTF-8 with BOM) and how many of its rows are deliberately bad."""
    rnd = random.Random(seed)
    out = io.StringIO()
    out.write("\ufeff" + ",".join(HEADERS) + "\r\n")
    bad = 0
    first_phone = 13_900_000_000
    for i in range(rows):
        name = rnd.choice(SURNAMES) + rnd.choice(GIVEN) + rnd.choice(GIVEN)
        phone = str(first_phone + i * 7)
        email = f"user{i}@example.com" if rnd.random() < 0.6 else ""
        gender = rnd.choice(["男", "女", ""])
        lunar = rnd.random() < 0.15
        year, month, day = rnd.randint(1950, 2005), rnd.randint(1, 12), rnd.randint(1, 28)
        birthday = f"{year}-{month:02d}-{day:02d}" if rnd.random() < 0.8 else ""
        tags = "；".join(rnd.sample(TAGS, rnd.randint(0, 3)))
        store = rnd.choice(STORES)
        kind = rnd.random()
        if kind < 0.02:
            bad += 1
            fault = i % 6
            if fault == 0:
                phone = "1234"
            elif fault == 1:
                phone = str(first_phone + (i - 1) * 7)  # same as the row above
            elif fault == 2:
                birthday = f"{year}-02-30"
                lunar = False
            elif fault == 3:
                birthday, lunar = "2022-02-30", True  # lunar 2022 has a 29-day 2nd month
            elif fault == 4:
                store = "XX99"
            else:
                name = ""
        out.write(",".join([
            name, phone, email, gender, birthday, "是" if lunar else "否", tags,
            "喜欢少糖" if rnd.random() < 0.1 else "", store,
            "是" if rnd.random() < 0.5 else "否", "是" if email and rnd.random() < 0.3 else "否",
        ]) + "\r\n")
    return out.getvalue().encode("utf-8"), bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url", default=None,
                        help="an empty database; default: a new SQLite file")
    args = parser.parse_args()
    console = Console()

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        db = Database.from_url(url)
        migrate.upgrade(db.engine)
        clock = SystemClock()
        with db.write() as session:
            for code in STORES:
                members.create_store(session, clock=clock, actor=None,
                                     data=StoreCreate(code=code, name=f"门店 {code}"))
            store_ids = {s.code: s.id for s in members.list_stores(session)}

        data, bad = make_csv(args.rows)
        results: list[tuple[str, int, int, int, float, float]] = []
        cpu = time.process_time

        started, cpu_started = time.perf_counter(), cpu()
        table = importer.read_table(data, "members.csv")
        mapping = importer.suggest_mapping(table.headers)
        results.append((f"read_table (CSV, {len(data) / 1e6:.1f} MB)", len(table.rows), 0, 0,
                        time.perf_counter() - started, cpu() - cpu_started))

        for dry_run in (True, False):
            started, cpu_started = time.perf_counter(), cpu()
            with db.write() as session:
                report = importer.import_members(
                    session, clock=clock, actor=None, region="CN", table=table,
                    mapping=mapping, dry_run=dry_run, default_store_id=store_ids["SH01"],
                    filename="members.csv")
                if dry_run:
                    session.rollback()
            results.append(("dry run" if dry_run else "import (committed)", report.total,
                            report.imported, report.rejected, time.perf_counter() - started,
                            cpu() - cpu_started))

        started, cpu_started = time.perf_counter(), cpu()
        sink = io.StringIO()
        with db.write() as session:
            exported = importer.export_members(session, out=sink, viewer=None, clock=clock)
        results.append(("export (CSV)", exported, 0, 0, time.perf_counter() - started,
                        cpu() - cpu_started))
        db.dispose()

    out = Table(title=f"Member import, {args.rows:,} rows ({bad:,} made bad) on "
                      f"{'SQLite' if url.startswith('sqlite') else url.split(':', 1)[0]}")
    for name in ("step", "rows", "imported", "rejected", "seconds", "rows/s", "CPU s"):
        out.add_column(name, justify="left" if name == "step" else "right")
    for step, rows, imported, rejected, seconds, cpu_seconds in results:
        out.add_row(step, f"{rows:,}", f"{imported:,}", f"{rejected:,}", f"{seconds:.2f}",
                    f"{rows / seconds:,.0f}", f"{cpu_seconds:.2f}")
    console.print(out)
    console.print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
                  " (seconds are wall-clock; CPU s is this process only)")


if __name__ == "__main__":
    main()
