"""The analytics refresh on 1,000,000 members and about 10,000,000 sale lines.

A SQLite database of members with two years of BG/NBD purchases (plus walk-ins, several
lines a sale) is generated straight into the tables with executemany and cached in
``bench/out/``; then ``patron.analytics.service.refresh`` runs on it exactly as the nightly
job does, and the table shows each stage's wall time and the peak resident memory reached
by its end (the child process that reads SQLite is reported separately). Beside it:

* the engine's scan floor: DuckDB over the same SQLite file, ``SELECT member_id,
  count(*), sum(total - refunded) ... GROUP BY member_id`` (what any summary must at least
  cost), in a child process as the refresh reads it;
* ``lifetimes`` (BetaGeoFitter + GammaGammaFitter) on the same per-member summary, if it is
  importable. It is not a patron dependency and must not become one: to get that row, run
  the bench from a throwaway venv that has it (``uv venv /tmp/lt && uv pip install -p
  /tmp/lt lifetimes ...``, then ``--lifetimes-python /tmp/lt/bin/python``).

    .venv/bin/python bench/analytics.py                      # 1,000,000 members
    .venv/bin/python bench/analytics.py --members 100000     # about 1,000,000 lines
    .venv/bin/python bench/analytics.py --rebuild            # regenerate the database
    .venv/bin/python bench/analytics.py --scores-steps       # + the scores path alone
    # the same on PostgreSQL (that database is dropped and filled from the SQLite file):
    URL=postgresql://postgres@127.0.0.1:5432/patron_bench_analytics
    .venv/bin/python bench/analytics.py --database-url $URL --warehouse

The stage table's CPU column counts this process and its finished children; the "of
which" rows split the stages' wall and CPU seconds between the scores, the portraits and
the dashboard. ``--scores-steps`` adds a table of the scores path run alone in a child,
step by step (member summaries, category cycles, fit, score, and the write split into
deleting the day's old rows and inserting the new ones).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import make_url

from patron.analytics import service, source
from patron.core import migrate
from patron.core.clock import FixedClock
from patron.core.db import Database, make_engine

OUT = Path(__file__).resolve().parent / "out"
AS_OF = date(2026, 11, 22)
TIMEZONE = "Asia/Shanghai"
DAYS = 730  # two years of history
START = datetime(2024, 11, 23, 1, tzinfo=UTC)  # 09:00 in Shanghai
# purchase rhythm per member (days): mean rate r/alpha ≈ one visit a month, a fifth of
# members lapse after each repeat purchase on average
R, ALPHA, A, B = 0.5, 15.0, 0.6, 2.4
WALK_IN_SHARE = 0.2
CHUNK = 200_000
console = Console(width=max(120, Console().width))


def peak_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kB on Linux


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (a busy machine inflates wall
    time, not this)."""
    own, children = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                     resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# ---------------------------------------------------------------- the database


def _ids(prefix: int, n: int, rng: np.random.Generator) -> list[str]:
    """``n`` 32-hex ids, increasing (cheap appends to the primary-key B-tree), unique."""
    seq = np.arange(n, dtype=np.uint64) + np.uint64(prefix) * np.uint64(10**12)
    low = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64)
    return [f"{a:016x}{b:016x}" for a, b in zip(seq.tolist(), low.tolist(), strict=True)]


def _stamp(seconds: np.ndarray) -> list[str]:
    """UTC seconds since START as SQLAlchemy's SQLite text ('YYYY-MM-DD HH:MM:SS.ffffff')."""
    at = np.datetime64(START.replace(tzinfo=None), "s") + seconds.astype("timedelta64[s]")
    text = np.datetime_as_string(at, unit="s")
    return [t.replace("T", " ") + ".000000" for t in text.tolist()]


def generate(path: Path, members: int, seed: int) -> dict[str, int]:
    """Write the members, stores, catalogue and sales into a migrated SQLite file."""
    rng = np.random.default_rng(seed)
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")
    conn.execute("BEGIN")
    created = _stamp(np.zeros(1))[0]
    stores = _ids(1, 3, rng)
    conn.executemany("INSERT INTO stores (id, code, name, address, timezone, active, created_at)"
                     " VALUES (?, ?, ?, '', ?, 1, ?)",
                     [(s, f"S{i}", f"Store {i}", TIMEZONE, created) for i, s in enumerate(stores)])
    categories = _ids(2, 12, rng)
    conn.executemany("INSERT INTO categories (id, code, name) VALUES (?, ?, ?)",
                     [(c, f"C{i}", f"Category {i}") for i, c in enumerate(categories)])
    n_products = 200
    products = _ids(3, n_products, rng)
    product_category = rng.integers(0, 12, n_products)
    price = np.round(np.exp(rng.normal(np.log(3000), 0.8, n_products)) / 10) * 10
    price = price.astype(np.int64)
    popularity = rng.pareto(1.5, n_products) + 0.05
    popularity /= popularity.sum()
    conn.executemany(
        "INSERT INTO products (id, sku, name, category_id, price_minor, active) "
        "VALUES (?, ?, ?, ?, ?, 1)",
        [(p, f"SKU{i}", f"Product {i}", categories[c], int(v))
         for i, (p, c, v) in enumerate(zip(products, product_category.tolist(), price.tolist(),
                                           strict=True))])

    # members: join over the two years, first purchase at joining (BG/NBD's time 0)
    join_day = np.sort(rng.uniform(0, DAYS - 1, members))
    join_s = (join_day * 86400).astype(np.int64)
    member_ids = _ids(4, members, rng)
    home = rng.integers(0, 3, members)
    joined = _stamp(join_s)
    for start in range(0, members, CHUNK):
        end = min(start + CHUNK, members)
        conn.executemany(
            "INSERT INTO members (id, card_no, name, birth_leap_month, preferences, "
            "home_store_id, enrolled_store_id, sms_consent, email_consent, guardian_consent, "
            "status, joined_at, updated_at) VALUES (?, ?, ?, 0, '', ?, ?, 0, 0, 0, 'active', "
            "?, ?)",
            [(member_ids[i], f"{9_000_000_000 + i}", f"Member {i}", stores[home[i]],
              stores[home[i]], joined[i], joined[i]) for i in range(start, end)])

    # repeat purchases (BG/NBD, exact): N ~ Poisson(λT) events in the window, the first
    # x = min(N, K) kept, K ~ Geometric(p). The first x of N uniform order statistics are
    # cumsum(E_1..E_x) / (E_1 + ... + E_x + G), E ~ Exp(1), G ~ Gamma(N + 1 - x).
    age = DAYS - join_day
    lam = rng.gamma(R, 1.0 / ALPHA, members)
    k = rng.geometric(rng.beta(A, B, members))
    big_n = rng.poisson(lam * age)
    x = np.minimum(big_n, k)
    owner = np.repeat(np.arange(members), x)
    gaps = rng.exponential(1.0, owner.shape[0])
    total = np.cumsum(gaps)
    before = np.concatenate([[0.0], total])[np.repeat(np.cumsum(x) - x, x)]
    denominator = np.bincount(owner, weights=gaps, minlength=members) + rng.gamma(
        (big_n + 1 - x).astype(np.float64), 1.0)
    when = age[owner] * (total - before) / denominator[owner]
    owner = np.concatenate([np.arange(members), owner])
    sale_s = np.concatenate([join_s + rng.integers(60, 600, members),
                             join_s[owner[members:]] + (when * 86400).astype(np.int64)])
    walk_ins = int(owner.shape[0] * WALK_IN_SHARE / (1 - WALK_IN_SHARE))
    owner = np.concatenate([owner, np.full(walk_ins, -1)])
    sale_s = np.concatenate([sale_s, rng.integers(0, DAYS * 86400, walk_ins)])
    order = np.argsort(sale_s, kind="stable")
    owner, sale_s = owner[order], sale_s[order]
    n_sales = owner.shape[0]
    sale_ids = _ids(5, n_sales, rng)
    sale_store = np.where(owner >= 0, home[np.maximum(owner, 0)], rng.integers(0, 3, n_sales))
    stamps = _stamp(sale_s)
    lines_per_sale = 1 + rng.poisson(0.5, n_sales)
    line_sale = np.repeat(np.arange(n_sales), lines_per_sale)
    line_no = np.arange(line_sale.shape[0]) - np.repeat(np.cumsum(lines_per_sale)
                                                         - lines_per_sale, lines_per_sale) + 1
    line_product = rng.choice(n_products, line_sale.shape[0], p=popularity)
    quantity = 1 + rng.poisson(0.3, line_sale.shape[0])
    unit = price[line_product]
    line_total = quantity * unit
    sale_total = np.bincount(line_sale, weights=line_total, minlength=n_sales).astype(np.int64)
    line_ids = _ids(6, line_sale.shape[0], rng)
    for start in range(0, n_sales, CHUNK):
        end = min(start + CHUNK, n_sales)
        conn.executemany(
            "INSERT INTO sales (id, store_id, member_id, receipt_no, source, occurred_at, "
            "recorded_at, subtotal_minor, discount_minor, total_minor, refunded_minor, "
            "points_earned, points_redeemed, status) "
            "VALUES (?, ?, ?, ?, 'import', ?, ?, ?, 0, ?, 0, 0, 0, 'completed')",
            [(sale_ids[i], stores[sale_store[i]],
              member_ids[owner[i]] if owner[i] >= 0 else None, f"R{i}", stamps[i], stamps[i],
              int(sale_total[i]), int(sale_total[i])) for i in range(start, end)])
    n_lines = line_sale.shape[0]
    for start in range(0, n_lines, CHUNK):
        end = min(start + CHUNK, n_lines)
        conn.executemany(
            "INSERT INTO sale_lines (id, sale_id, line_no, product_id, quantity, "
            "unit_price_minor, discount_minor, total_minor, refunded_quantity) "
            "VALUES (?, ?, ?, ?, ?, ?, 0, ?, 0)",
            [(line_ids[j], sale_ids[line_sale[j]], int(line_no[j]), products[line_product[j]],
              int(quantity[j]), int(unit[j]), int(line_total[j])) for j in range(start, end)])
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {"members": members, "sales": n_sales, "lines": n_lines}


# ---------------------------------------------------------------- the floor


FLOOR_SQL = """
SELECT member_id, count(*) AS n, sum(total_minor - refunded_minor) AS net
FROM oltp.sales WHERE member_id IS NOT NULL GROUP BY member_id
"""


def floor(path: str) -> dict[str, float]:
    """Run in a child process: DuckDB's group-by over the SQLite sales (and a line count)."""
    import duckdb

    duck = duckdb.connect()
    duck.execute(f"LOAD '{source.sqlite_scanner_path()}'")
    duck.execute(f"ATTACH '{path}' AS oltp (TYPE sqlite, READ_ONLY)")
    started = time.perf_counter()
    groups = duck.execute(FLOOR_SQL).to_arrow_table().num_rows  # no Python objects
    sales_s = time.perf_counter() - started
    started = time.perf_counter()
    lines = duck.execute("SELECT count(*), sum(total_minor) FROM oltp.sale_lines").fetchone()
    lines_s = time.perf_counter() - started
    assert lines is not None
    return {"groups": groups, "sales_s": sales_s, "lines": lines[0], "lines_s": lines_s,
            "peak_mb": peak_mb()}


# ---------------------------------------------------------------- PostgreSQL

#: The tables ``generate`` fills (in foreign-key order); the rest are the refresh's output.
SOURCE_TABLES = ("stores", "categories", "products", "members", "sales", "sale_lines")


def copy_to_postgresql(path: Path, url: str) -> dict[str, float]:
    """Fill the PostgreSQL database at ``url`` with the generated file's source tables.

    The database is dropped and created again, migrated, and each table streamed across
    as CSV: DuckDB reads SQLite's values as the text SQLite stores (32-digit ids, naive UTC
    times, 0/1 booleans, JSON text), Arrow writes batches of CSV (nulls unquoted, every
    value quoted, so an empty string stays one), and ``COPY ... FROM STDIN`` parses them,
    in a session whose time zone is UTC. Foreign keys are not checked during the copy (the
    rows come from a database that checked them); ANALYZE runs at the end.
    """
    import io

    import duckdb
    import psycopg
    from pyarrow import csv as pacsv

    name = make_url(url).database
    with psycopg.connect(libpq(url, "postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    db = database(url)
    migrate.upgrade(db.engine)
    db.dispose()
    seconds: dict[str, float] = {}
    duck = duckdb.connect()
    duck.execute("SET enable_progress_bar = false")
    duck.execute(f"LOAD '{source.sqlite_scanner_path()}'")
    duck.execute("SET sqlite_all_varchar = true")
    duck.execute(f"ATTACH '{path}' AS oltp (TYPE sqlite, READ_ONLY)")
    options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
    plain = libpq(url)
    with psycopg.connect(plain) as pg:
        pg.execute("SET TIME ZONE 'UTC'")
        pg.execute("SET session_replication_role = replica")  # no FK triggers
        for table in SOURCE_TABLES:
            began = time.perf_counter()
            columns = [row[1] for row in duck.execute(
                f"SELECT * FROM pragma_table_info('oltp.{table}')").fetchall()]
            names = ", ".join(f'"{c}"' for c in columns)
            reader = duck.execute(f"SELECT {names} FROM oltp.{table}").fetch_record_batch(
                100_000)
            with pg.cursor().copy(f"COPY {table} ({names}) FROM STDIN (FORMAT csv)") as copy:
                for batch in reader:
                    buffer = io.BytesIO()
                    pacsv.write_csv(batch, buffer, options)
                    copy.write(buffer.getvalue())
            pg.commit()
            seconds[table] = time.perf_counter() - began
        pg.execute("SET session_replication_role = DEFAULT")
        pg.commit()
    with psycopg.connect(plain, autocommit=True) as pg:
        began = time.perf_counter()
        pg.execute("VACUUM ANALYZE")
        seconds["vacuum analyze"] = time.perf_counter() - began
    duck.close()
    return seconds


def postgresql_holds(path: Path, url: str) -> bool:
    """Whether the PostgreSQL database already holds the file's sales (a copy made by an
    earlier run), so the copy can be skipped."""
    want = sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute(
        "SELECT count(*) FROM sales").fetchone()
    try:
        db = database(url)
        with db.read() as session:
            got = session.connection().exec_driver_sql("SELECT count(*) FROM sales").scalar()
        db.dispose()
    except Exception:
        return False
    return want is not None and got == want[0]


def postgresql_floor(url: str) -> dict[str, float]:
    """Run in a child process: PostgreSQL's own group-by of the sales, the result streamed
    out with COPY (the engine's raw scan, as DuckDB's is over SQLite), and a line count."""
    import psycopg

    plain = libpq(url)
    sql = ("SELECT member_id, count(*) AS n, sum(total_minor - refunded_minor) AS net "
           "FROM sales WHERE member_id IS NOT NULL GROUP BY member_id")
    with psycopg.connect(plain) as pg:
        started = time.perf_counter()
        groups = 0
        with pg.cursor().copy(f"COPY ({sql}) TO STDOUT") as copy:
            for block in copy:
                groups += bytes(block).count(b"\n")
        sales_s = time.perf_counter() - started
        started = time.perf_counter()
        lines = pg.execute("SELECT count(*), sum(total_minor) FROM sale_lines").fetchone()
        lines_s = time.perf_counter() - started
    assert lines is not None
    return {"groups": groups, "sales_s": sales_s, "lines": lines[0], "lines_s": lines_s,
            "peak_mb": peak_mb()}


# ---------------------------------------------------------------- lifetimes

# The lifetimes pipeline end to end, as its documentation runs it: the member sales out of
# SQLite into pandas, ``summary_data_from_transaction_data`` (daily, the store's local day),
# BetaGeoFitter and GammaGammaFitter, then the same predictions the refresh stores
# (P(alive), expected purchases in 30/90/365 days, 12-month CLV). It runs under another
# interpreter (``--lifetimes-python``): lifetimes needs NumPy 1 and pandas 1, patron pins
# NumPy 2, so it lives in a throwaway venv and is never a patron dependency.
LIFETIMES_SCRIPT = r"""
import json, resource, sqlite3, sys, time
import numpy as np, pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import summary_data_from_transaction_data

path, cutoff, as_of, offset_hours = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
marks, cpu = {}, {}


def used():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def mark(step, t, c):
    marks[step], cpu[step] = time.perf_counter() - t, used() - c
    return time.perf_counter(), used()


t, c = time.perf_counter(), used()
if path.startswith("postgresql"):  # the times as the same text SQLite keeps (UTC)
    import warnings
    import psycopg2
    warnings.simplefilter("ignore")  # pandas prefers SQLAlchemy; a DBAPI connection works
    con = psycopg2.connect(path)
    tx = pd.read_sql_query(
        "SELECT member_id::text AS member_id, to_char(occurred_at AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD HH24:MI:SS.US') AS occurred_at, total_minor - refunded_minor AS net "
        "FROM sales WHERE member_id IS NOT NULL AND occurred_at < %s::timestamptz "
        "AND total_minor - refunded_minor > 0", con, params=(cutoff + "+00",))
else:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    tx = pd.read_sql_query(
        "SELECT member_id, occurred_at, total_minor - refunded_minor AS net FROM sales "
        "WHERE member_id IS NOT NULL AND occurred_at < ? AND total_minor - refunded_minor > 0",
        con, params=(cutoff,))
tx["occurred_at"] = (pd.to_datetime(tx["occurred_at"], format="%Y-%m-%d %H:%M:%S.%f")
                     + pd.Timedelta(hours=offset_hours))
t, c = mark("read sales into pandas", t, c)
summary = summary_data_from_transaction_data(
    tx, "member_id", "occurred_at", monetary_value_col="net",
    observation_period_end=pd.Timestamp(as_of), freq="D")
t, c = mark("summary_data_from_transaction_data", t, c)
bg = BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])
t, c = mark("BetaGeoFitter.fit", t, c)
repeat = summary[summary["frequency"] > 0]
gg = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
t, c = mark("GammaGammaFitter.fit", t, c)
f, r, T = summary["frequency"], summary["recency"], summary["T"]
alive = bg.conditional_probability_alive(f, r, T)
expected = [bg.conditional_expected_number_of_purchases_up_to_time(h, f, r, T)
            for h in (30, 90, 365)]
spend = gg.conditional_expected_average_profit(f, summary["monetary_value"])
clv = gg.customer_lifetime_value(bg, f, r, T, summary["monetary_value"], time=12, freq="D",
                                 discount_rate=0.01)
mark("predict: P(alive), E[30/90/365], spend, CLV", t, c)
p, q = bg.params_, gg.params_
print(json.dumps({"marks": marks, "cpu": cpu, "customers": len(summary), "rows": len(tx),
                  "params": {k: float(v) for k, v in [*p.items(), *q.items()]},
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def lifetimes_run(python: str, path: Path | str) -> dict[str, Any]:
    """The lifetimes pipeline under ``python`` (a venv with lifetimes) on the same file, or
    on the PostgreSQL database at the URL ``path`` (its venv needs psycopg2-binary too)."""
    cutoff = source.cutoff_for(AS_OF, TIMEZONE)
    offset = datetime.combine(AS_OF, datetime.min.time(),
                              tzinfo=ZoneInfo(TIMEZONE)).utcoffset()
    assert offset is not None
    stamp = cutoff.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    done = subprocess.run([python, "-c", LIFETIMES_SCRIPT, str(path), stamp,
                           AS_OF.isoformat(), str(int(offset.total_seconds() // 3600))],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"lifetimes failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------- the refresh


class Steps:
    """Wall and CPU seconds of consecutive steps: call with a step's name as it ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, tuple[float, float]] = {}
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()

    def __call__(self, name: str) -> None:
        now, used = time.perf_counter(), cpu_seconds()
        self.seconds[name] = (now - self.wall, used - self.cpu)
        self.wall, self.cpu = now, used


def as_the_worker_is() -> None:
    """Import what a running worker already holds before the clock starts (as the
    lifetimes script imports lifetimes, pandas and NumPy before its clock): every model
    (the registry: about 1.2 s of imports) and the analytics engine's layers (Ibis's SQL
    compiler, Arrow), which a worker imported at its first refresh and keeps. pandas is
    among them: patron never uses it, but Arrow imports it the first time it builds a
    table from Python values (0.17 s, inside the night's sync otherwise)."""
    import ibis
    import pandas  # noqa: F401
    import pyarrow.compute  # noqa: F401

    import patron.core.registry  # noqa: F401
    from patron.analytics import scores

    ibis.to_sql(scores.purchase_totals_expr(ibis.table(
        {"member_id": "uuid", "occurred_on": "date", "occurred_at": "timestamp('UTC')",
         "net_minor": "int64"}, name="sales")), dialect="duckdb")


def is_url(target: str) -> bool:
    """Whether a child's target is a PostgreSQL URL (``--database-url``), not a SQLite path."""
    return target.startswith("postgresql")


def database(target: str) -> Database:
    """The bench's database: the SQLite file at ``target``, or the PostgreSQL URL."""
    return Database.from_url(target if is_url(target) else f"sqlite:///{target}")


def libpq(url: str, database: str | None = None) -> str:
    """``url`` as psycopg takes it (no SQLAlchemy driver name), on ``database`` if given."""
    target = make_url(url).set(drivername="postgresql")
    if database is not None:
        target = target.set(database=database)
    return target.render_as_string(hide_password=False)


def warehouse_of(target: str) -> Path:
    """The bench's analytics warehouse file (``--warehouse``): next to the SQLite file, or
    in ``bench/out`` named after the PostgreSQL database."""
    if is_url(target):
        return OUT / f"postgresql-{make_url(target).database}.warehouse.duckdb"
    return Path(f"{target}.warehouse.duckdb")


def prime_child(path: str) -> dict[str, Any]:
    """Build the warehouse in full as of the day before ``AS_OF`` (the last night), so the
    measured refresh is an ordinary night: the new day's sales and the late ones."""
    from patron.analytics import warehouse

    db = database(path)
    migrate.upgrade(db.engine)
    began, used = time.perf_counter(), cpu_seconds()
    with warehouse.acquire(warehouse_of(path)):
        synced = warehouse.sync(db.engine, warehouse_of(path), rebuild=True,
                                cutoff=source.cutoff_for(AS_OF - timedelta(days=1), TIMEZONE))
    db.dispose()
    assert synced is not None
    return {"seconds": time.perf_counter() - began, "cpu": cpu_seconds() - used,
            "timings": synced.timings}


def kept_floor(path: str) -> dict[str, Any]:
    """The scan floor over the warehouse's own ``sales`` (the engine's table)."""
    import duckdb

    duck = duckdb.connect(str(warehouse_of(path)), read_only=True)
    began = time.perf_counter()
    groups = duck.execute(
        "SELECT member_id, count(*), sum(net_minor) FROM sales "
        "WHERE member_id IS NOT NULL GROUP BY member_id").to_arrow_table().num_rows
    seconds = time.perf_counter() - began
    duck.close()
    return {"sales_s": seconds, "groups": groups}


def refresh_child(path: str, kept: bool = False) -> dict[str, Any]:
    """Run in a child process (so its memory figures are the refresh's own)."""
    as_the_worker_is()
    db = database(path)
    marks: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def progress(stage: str, _index: int, _total: int) -> None:
        marks[stage] = peak_mb()
        cpu[stage] = cpu_seconds()

    clock = FixedClock(datetime.combine(AS_OF + timedelta(days=1), datetime.min.time(),
                                        tzinfo=UTC))
    result = service.refresh(db, clock, timezone=TIMEZONE, as_of=AS_OF, progress=progress,
                             warehouse=warehouse_of(path) if kept else None)
    with db.read() as session:
        sales = session.connection().exec_driver_sql("SELECT count(*) FROM sales").scalar()
        lines = session.connection().exec_driver_sql("SELECT count(*) FROM sale_lines").scalar()
    db.dispose()
    following = [*service.STAGES[1:], "done"]
    return {"stages": result.stages, "params": result.params, "members": result.members,
            "cycles": result.category_cycles, "sales": sales, "lines": lines,
            "peak_mb": {name: marks[nxt] for name, nxt in zip(service.STAGES, following,
                                                              strict=True)},
            "cpu_s": {name: cpu[nxt] - cpu[name] for name, nxt in zip(service.STAGES,
                                                                       following, strict=True)},
            "child_peak_mb": peak_mb(resource.RUSAGE_CHILDREN)}


def scores_steps_child(path: str, kept: bool = False) -> dict[str, Any]:
    """Run in a child process: the scores path alone, step by step (wall and CPU seconds).

    The refresh's stages mix the scores with the portraits and the dashboard; this runs
    only what ``refresh`` calls in ``scores`` (and the snapshot write), in the same order,
    on the same day, so each step's cost can be read on its own. It rewrites the day's
    score rows with the same values.
    """
    from patron.analytics import scores
    from patron.analytics.tables import CategoryCycle, MemberScore

    as_the_worker_is()
    db = database(path)
    step = Steps()

    with source.open_source(db, as_of=AS_OF, timezone=TIMEZONE,
                            warehouse=warehouse_of(path) if kept else None) as src:
        step("load: the new day into the warehouse + the small tables" if kept
             else "load (SQLite → DuckDB)")
        history = scores.member_history(src)
        step("member_history")
        cycles = scores.category_cycles(src)
        step("category_cycles")
    fitted = scores.fit(history)
    step("fit")
    table = scores.score(history, fitted)
    step("score")
    service.delete_day(db, MemberScore, AS_OF)
    service.delete_day(db, CategoryCycle, AS_OF)
    step("write: delete the day's old rows")
    service._insert(db, MemberScore.__tablename__,
                    service._with_as_of(table, AS_OF, service.SCORE_COLUMNS))
    step("write: insert scores")
    service._insert(db, CategoryCycle.__tablename__,
                    service._with_as_of(cycles, AS_OF, service.CYCLE_COLUMNS))
    step("write: insert category cycles")
    db.dispose()
    return {"steps": step.seconds, "members": table.num_rows, "cycles": cycles.num_rows,
            "rows": fitted.params.get("rows", 0)}


def same_job_child(path: str, kept: bool = False) -> dict[str, Any]:
    """Run in a child process: lifetimes' job done by patron's own functions, step by step.

    The same inputs (the sales up to the cutoff) and the same outputs as the lifetimes
    script: each buyer's (x, t_x, T, mean repeat spend) as ``patron analytics fit`` reads
    them (``scores.model_inputs``), BG/NBD and Gamma-Gamma fitted (``scores.fit``), then
    P(alive), expected purchases in 30/90/365 days, expected spend and 12-month CLV for
    every buyer (``scores.predict``). The refresh does this inside its scores, among much
    else (RFM, lifecycle, loyalty, bonds, category cycles, the writes).
    """
    from patron.analytics import scores

    as_the_worker_is()
    db = database(path)
    step = Steps()

    with source.open_source(db, as_of=AS_OF, timezone=TIMEZONE,
                            tables=["sales", "inactive_members"],
                            warehouse=warehouse_of(path) if kept else None) as src:
        step("read: the new day into the warehouse, who is not active" if kept
             else "read: the sales, who is not active (SQLite → DuckDB)")
        read_parts = dict(src.timings)
        inputs = scores.model_inputs(src)
        step("summarise: (x, t_x, T, m) per buyer")
    fitted = scores.fit(inputs)
    step("fit: BG/NBD + Gamma-Gamma")
    model = fitted.model
    assert model is not None
    predicted = scores.predict(model, inputs)
    step("predict: P(alive), E[30/90/365], spend, 12-month CLV")
    db.dispose()
    return {"steps": step.seconds, "customers": len(inputs), "read_parts": read_parts,
            "clv_total": float(np.nansum(predicted.clv)),
            "params": {k: fitted.params[k] for k in ("r", "alpha", "a", "b", "p", "q", "v")}}


def _refreshed(target: str) -> bool:
    """Whether the database has recorded an analytics run."""
    if not is_url(target):
        con = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
        try:
            return con.execute("SELECT 1 FROM analytics_runs LIMIT 1").fetchone() is not None
        except sqlite3.OperationalError:  # not migrated yet: no run
            return False
        finally:
            con.close()
    db = database(target)
    with db.read() as session:
        found = session.connection().exec_driver_sql(
            "SELECT 1 FROM analytics_runs LIMIT 1").scalar()
    db.dispose()
    return found is not None


def quiesce(target: str, most: float = 300.0) -> float:
    """On PostgreSQL, wait until no autovacuum worker is at work and checkpoint, so a
    measured step does not share the two cores with the clean-up of the step before it
    (a refresh deletes and writes millions of snapshot rows; a production night follows
    the last one by a day). Seconds waited; nothing to do on SQLite."""
    if not is_url(target):
        return 0.0
    import psycopg

    began = time.perf_counter()
    plain = libpq(target)
    with psycopg.connect(plain, autocommit=True) as pg:
        while time.perf_counter() - began < most:
            busy = pg.execute("SELECT count(*) FROM pg_stat_activity "
                              "WHERE backend_type = 'autovacuum worker'").fetchone()
            if busy is None or not busy[0]:
                break
            time.sleep(1.0)
        pg.execute("CHECKPOINT")
    return time.perf_counter() - began


def _child(flag: str, *args: str) -> Any:
    done = subprocess.run([sys.executable, __file__, flag, *args], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{flag} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--lifetimes-python", metavar="PYTHON",
                        help="an interpreter with lifetimes installed (e.g. /tmp/lt/bin/python)"
                             ": adds the lifetimes pipeline on the same file")
    parser.add_argument("--scores-steps", action="store_true",
                        help="also run the scores path alone, step by step, in a child")
    parser.add_argument("--warehouse", action="store_true",
                        help="keep the sales history in a warehouse file between refreshes "
                             "(built in full as of the day before, then the measured "
                             "refresh reads the new day)")
    parser.add_argument("--database-url", metavar="URL",
                        help="run on this PostgreSQL database instead of the SQLite file: it "
                             "is dropped and filled with the file's source tables first "
                             "(unless it holds them already); lifetimes reads it too (its "
                             "venv needs psycopg2-binary as well)")
    parser.add_argument("--prime-child", help=argparse.SUPPRESS)
    parser.add_argument("--pg-floor-child", help=argparse.SUPPRESS)
    parser.add_argument("--kept-floor-child", help=argparse.SUPPRESS)
    parser.add_argument("--floor-child", help=argparse.SUPPRESS)
    parser.add_argument("--scores-child", help=argparse.SUPPRESS)
    parser.add_argument("--same-job-child", help=argparse.SUPPRESS)
    parser.add_argument("--refresh-child", help=argparse.SUPPRESS)
    parser.add_argument("--generate-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_child:
        print(json.dumps(floor(args.floor_child)))
        return
    if args.pg_floor_child:
        print(json.dumps(postgresql_floor(args.pg_floor_child)))
        return
    if args.prime_child:
        print(json.dumps(prime_child(args.prime_child)))
        return
    if args.kept_floor_child:
        print(json.dumps(kept_floor(args.kept_floor_child)))
        return
    if args.refresh_child:
        print(json.dumps(refresh_child(args.refresh_child, args.warehouse)))
        return
    if args.scores_child:
        print(json.dumps(scores_steps_child(args.scores_child, args.warehouse)))
        return
    if args.same_job_child:
        print(json.dumps(same_job_child(args.same_job_child, args.warehouse)))
        return
    if args.generate_child:
        where, members, seed = args.generate_child
        print(json.dumps(generate(Path(where), int(members), int(seed))))
        return

    OUT.mkdir(exist_ok=True)
    path = OUT / f"analytics-{args.members}-s{args.seed}.db"
    if args.rebuild:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    if not path.exists():
        console.print(f"Generating {path.name} ...")
        started = time.perf_counter()
        counts = _child("--generate-child", str(path), str(args.members), str(args.seed))
        console.print(f"generated {counts} in {time.perf_counter() - started:.0f} s")

    target, backend = str(path), "SQLite"
    if args.database_url:
        target, backend = args.database_url, "PostgreSQL"
        if postgresql_holds(path, target):
            console.print("PostgreSQL holds the file's tables already: not copied")
        else:
            console.print(f"Copying {path.name} into PostgreSQL ...")
            copied = copy_to_postgresql(path, target)
            console.print("copied (s): " + ", ".join(f"{k} {v:.1f}" for k, v in copied.items()))
    kept = ["--warehouse"] if args.warehouse else []
    if args.warehouse and not _refreshed(target):
        # The warehouse belongs to the database's first analytics run (``warehouse.identity``):
        # primed before any run, it would be rebuilt by the measured refresh, which records
        # the first. A first night is a full build, not the ordinary night measured here.
        console.print("First refresh of this database (it builds the warehouse) ...")
        first = _child("--refresh-child", target, *kept)
        console.print(f"first refresh: {sum(first['stages'].values()):.0f} s")
    waited = quiesce(target)
    load = os.getloadavg()
    scan = _child("--pg-floor-child" if is_url(target) else "--floor-child", target)
    primed = _child("--prime-child", target) if args.warehouse else None
    waited += quiesce(target)
    run = _child("--refresh-child", target, *kept)
    kept_scan = _child("--kept-floor-child", target) if args.warehouse else None
    waited += quiesce(target)
    lt = lifetimes_run(args.lifetimes_python, target) if args.lifetimes_python else None
    if args.scores_steps and args.warehouse:
        _child("--prime-child", target)  # the night before again
    waited += quiesce(target)
    alone = _child("--scores-child", target, *kept) if args.scores_steps else None
    if args.scores_steps and args.warehouse:
        _child("--prime-child", target)
    waited += quiesce(target)
    same = _child("--same-job-child", target, *kept) if args.scores_steps else None
    if is_url(target):
        console.print(f"waited {waited:.0f} s in all for PostgreSQL's autovacuum between steps")

    params, stages = run["params"], run["stages"]
    table = Table("stage", "seconds", "CPU s", "peak RSS (MB)", "what",
                  title=f"patron analytics refresh: {run['members']:,} members, "
                        f"{run['sales']:,} sales, {run['lines']:,} lines ({backend}; "
                        f"{os.cpu_count()} cores, load average {load[0]:.1f} at the start)")
    what = {"load": ("the new day into the warehouse" if args.warehouse else
                     f"{backend} → DuckDB: canonical tables"),
            "summarise": "per member and member × category (Ibis on DuckDB)",
            "fit": f"BG/NBD on {params.get('rows', 0):,} distinct rows + Gamma-Gamma",
            "score": "RFM, P(alive), expected purchases, CLV, lifecycle, loyalty, bonds",
            "write": f"{run['members']:,} scores + {run['cycles']:,} category cycles"}
    for name in service.STAGES:
        table.add_row(name, f"{stages[name]:.2f}", f"{run['cpu_s'][name]:.2f}",
                      f"{run['peak_mb'][name]:,.0f}", what[name])
    table.add_row("total", f"{sum(stages.values()):.2f}", f"{sum(run['cpu_s'].values()):.2f}",
                  "", "", style="bold")
    if not is_url(target):
        table.add_row("(SQLite reading child)", "", "", f"{run['child_peak_mb']:,.0f}",
                      "the child process of the load stage (its CPU is in load)")
    parts, parts_cpu = params.get("parts", {}), params.get("parts_cpu", {})
    for part, what_part in (("scores", "member summaries, category cycles, score, their write"),
                            ("portraits", "profiles, tags, clusters and their write"),
                            ("dashboard", "dashboard aggregates and next-best products")):
        if part in parts:
            part_cpu = f"{parts_cpu[part]:.2f}" if part in parts_cpu else ""
            table.add_row(f"  of which {part}", f"{parts[part]:.2f}", part_cpu, "",
                          f"{what_part} (summed over the stages)", style="dim")
    console.print(table)

    other = Table("comparison", "seconds", "detail", title="Beside it")
    engine = "PostgreSQL (COPY out)" if is_url(target) else "DuckDB over SQLite"
    other.add_row(f"scan floor, {engine}: sales GROUP BY member", f"{scan['sales_s']:.2f}",
                  f"{scan['groups']:,} members; child process")
    other.add_row(f"scan floor, {engine}: sum over sale_lines", f"{scan['lines_s']:.2f}",
                  f"{scan['lines']:,} lines")
    if kept_scan is not None and primed is not None:
        other.add_row("DuckDB scan floor over the warehouse's sales: GROUP BY member",
                      f"{kept_scan['sales_s']:.2f}", f"{kept_scan['groups']:,} groups")
        other.add_row("warehouse: full build (first night, weekly)",
                      f"{primed['seconds']:.2f}", f"CPU {primed['cpu']:.2f} s")
        synced = params.get("warehouse", {})
        other.add_row("warehouse: this night's sync (inside load)",
                      f"{synced.get('seconds', {}).get('total', 0):.2f}",
                      f"{synced.get('mode')}: {synced.get('changed_sales', 0):,} changed sales; "
                      + ", ".join(f"{k} {v:.2f}" for k, v in synced.get("seconds", {}).items()
                                  if k != "total"))
    other.add_row("patron BG/NBD + Gamma-Gamma fit", f"{stages['fit']:.2f}",
                  f"r={params.get('r', 0):.3g} alpha={params.get('alpha', 0):.3g} "
                  f"a={params.get('a', 0):.3g} b={params.get('b', 0):.3g}; "
                  f"p={params.get('p', 0):.3g} q={params.get('q', 0):.3g} "
                  f"v={params.get('v', 0):.4g}")
    total = sum(stages.values())
    if lt is None:
        other.add_row("lifetimes", "skipped",
                      "not installed (not a patron dependency); to compare: uv venv /tmp/lt && "
                      "uv pip install -p /tmp/lt lifetimes 'numpy<2' 'pandas<2' 'scipy<1.12' "
                      "'setuptools<70', then --lifetimes-python /tmp/lt/bin/python")
    else:
        for step, seconds in lt["marks"].items():
            other.add_row(f"lifetimes: {step}", f"{seconds:.2f}",
                          f"CPU {lt['cpu'][step]:.2f} s", style="dim")
        lt_total = sum(lt["marks"].values())
        lp = lt["params"]
        other.add_row("lifetimes end to end", f"{lt_total:.2f}",
                      f"{lt['customers']:,} customers from {lt['rows']:,} sales; "
                      f"r={lp['r']:.3g} alpha={lp['alpha']:.3g} a={lp['a']:.3g} "
                      f"b={lp['b']:.3g}; p={lp['p']:.3g} q={lp['q']:.3g} v={lp['v']:.4g}; "
                      f"peak RSS {lt['peak_mb']:,.0f} MB", style="bold")
        other.add_row("lifetimes end to end / patron refresh", f"{lt_total / total:.2f}×",
                      "the refresh also does portraits, dashboard aggregates and the writes")
        if "scores" in parts:
            scores_s = stages["load"] + stages["fit"] + parts["scores"]
            other.add_row("lifetimes end to end / patron scores alone",
                          f"{lt_total / scores_s:.2f}×",
                          f"patron: load + summaries + fit + score + write = {scores_s:.2f} s")
    other.add_row("patron refresh / DuckDB scan floor", f"{total / scan['sales_s']:.1f}×",
                  "aim: within 3×")
    console.print(other)
    console.print(f"true BG/NBD (days): r={R} alpha={ALPHA} a={A} b={B}")
    if alone is not None:
        steps = Table("step", "seconds", "CPU s",
                      title=f"the scores path alone: {alone['members']:,} members, "
                            f"{alone['cycles']:,} category cycles, BG/NBD on "
                            f"{alone['rows']:,} distinct rows (load average "
                            f"{os.getloadavg()[0]:.1f} at the end)")
        for name, (seconds, used) in alone["steps"].items():
            steps.add_row(name, f"{seconds:.2f}", f"{used:.2f}")
        after_load = list(alone["steps"].values())[1:]
        steps.add_row("total after the load", f"{sum(v[0] for v in after_load):.2f}",
                      f"{sum(v[1] for v in after_load):.2f}", style="bold")
        # lifetimes' own work: read the sales, summarise, fit, predict (it writes nothing)
        unwritten = [v for name, v in alone["steps"].items() if not name.startswith("write")]
        unwritten_s = sum(v[0] for v in unwritten)
        steps.add_row("the work lifetimes does (everything but the writes)",
                      f"{unwritten_s:.2f}", f"{sum(v[1] for v in unwritten):.2f}", style="bold")
        if lt is not None:
            steps.add_row("lifetimes end to end / the same work in patron",
                          f"{sum(lt['marks'].values()) / unwritten_s:.2f}×", "", style="bold")
        console.print(steps)
    if same is not None:
        like = Table("step", "patron s", "CPU s", "lifetimes step", "lifetimes s",
                     title=f"lifetimes' job in patron: {same['customers']:,} buyers, the same "
                           "outputs (patron's own functions, child process)")
        lt_steps = list(lt["marks"].items()) if lt is not None else []
        for i, (name, (seconds, used)) in enumerate(same["steps"].items()):
            other_name, other_s = (lt_steps[i] if i < len(lt_steps) else ("", None))
            if i == 2 and len(lt_steps) > 3:  # the two fits
                other_name, other_s = "both fits", lt_steps[2][1] + lt_steps[3][1]
            if i == 3 and len(lt_steps) > 4:
                other_name, other_s = lt_steps[4]
            like.add_row(name, f"{seconds:.2f}", f"{used:.2f}", other_name,
                         "" if other_s is None else f"{other_s:.2f}")
        same_s = sum(v[0] for v in same["steps"].values())
        lt_s = sum(lt["marks"].values()) if lt is not None else None
        like.add_row("end to end", f"{same_s:.2f}",
                     f"{sum(v[1] for v in same['steps'].values()):.2f}", "end to end",
                     "" if lt_s is None else f"{lt_s:.2f}", style="bold")
        if lt_s is not None:
            like.add_row("lifetimes / patron", f"{lt_s / same_s:.1f}×", "", "aim: 20×", "",
                         style="bold")
        like.add_row(f"patron / the scan floor (over {backend}; over the warehouse)",
                     f"{same_s / scan['sales_s']:.1f}×"
                     + (f"; {same_s / kept_scan['sales_s']:.1f}×" if kept_scan else ""),
                     "", "aim: within 3×", "")
        console.print(like)
        console.print("the read, of which (s; the warehouse's sync and the reading child "
                      "child run side by side): " + ", ".join(
                          f"{k} {v:.2f}" for k, v in same["read_parts"].items()))
        console.print(f"patron's estimates: {same['params']}")


if __name__ == "__main__":
    main()
