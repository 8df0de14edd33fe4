"""The dashboard page at the server, cold and warm, on the demo data and on 1,000,000 members.

Each database is built once and cached in ``bench/out/`` together with its nightly
snapshot (``patron.analytics.service.refresh``, run for real):

* **demo**: ``patron demo``'s generator with its defaults (20,000 members, two years of
  sales with the loyalty programme replayed);
* **1M**: 1,000,000 members in 3 stores with about 3.5 purchases each over two years (a
  first purchase at joining, later ones until the member drifts away), a fifth of sales by
  walk-ins, points for 30 % and stored value for 10 % of members, written straight into
  the tables with executemany (no sale lines: the dashboard does not read them).

The page is requested through the app (FastAPI ``TestClient``, signed in as an owner), as
a browser would. Rows of the table:

* ``page, cold``: every figure cache empty (snapshot, history, portraits). The page sums
  the snapshot's groups and reads the history figures the refresh stored for the default
  period (``analytics.aggregates``): every figure and chart is on the page; the same for
  one store (``?store=``);
* ``page, warm``: caches filled: no query but the session, the stores, the programme and
  the snapshot day;
* ``history, default period, cold``: ``/dashboard/history`` with the caches empty (the
  stored figures);
* ``history, another period, cold``: a period the refresh did not store: the history is
  loaded into DuckDB and every history view computed (once per scope and day);
* ``history, warm``: the same fragment from the cache.

Each row gives wall milliseconds and the CPU milliseconds of this process (the app runs
in it), which say more than the wall time on a shared machine.

And beside it (``--member-pages``), the member page's next-best products
(``/members/{id}/next-best``, read from ``next_best_products``) for random members (the
page itself is ``bench/member_page.py``'s). The generated 1M history has no sale
lines, so its refresh recommends nothing; for the read to be measured at production size,
five rows a member are written straight into that table for the snapshot day first
(only the row count and the primary-key lookups matter here, as in
``bench/member_page.py``'s score rows).

    .venv/bin/python bench/dashboard_page.py                  # demo and 1M
    .venv/bin/python bench/dashboard_page.py --only demo
    .venv/bin/python bench/dashboard_page.py --rebuild        # regenerate the databases
    .venv/bin/python bench/dashboard_page.py --collect bench/out/analytics-100000-s1.db

``--collect`` times the refresh's dashboard hook alone (``aggregates.collect``: history
figures of every store and each store, next-best products) on a copy of an analytics
database (``bench/analytics.py`` builds them), then ``aggregates.write`` of what it
collected into a freshly migrated SQLite file (the next-best rows: 3.7 M at 1 M members),
wall and CPU seconds.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table

from patron.analytics import dashboard, service
from patron.api.app import create_app
from patron.auth import service as auth
from patron.auth.enums import Role
from patron.core import migrate
from patron.core.clock import FixedClock
from patron.core.db import Database, make_engine
from patron.core.settings import Settings
from patron.demo import DemoConfig, build_demo
from patron.members import service as members

OUT = Path(__file__).resolve().parent / "out"
TIMEZONE = "Asia/Shanghai"
AS_OF = date(2026, 11, 22)  # the snapshot day and the period's last day
NOW = datetime(2026, 11, 23, 2, tzinfo=UTC)  # 10:00 in Shanghai the day after
START = datetime(2024, 11, 23, 1, tzinfo=UTC)
DAYS = 730
CHUNK = 200_000
USERNAME, PASSWORD = "bench-owner", "bench-password-1"
console = Console(width=max(120, Console().width))


# ---------------------------------------------------------------- databases


def _ids(prefix: int, n: int, rng: np.random.Generator) -> list[str]:
    """``n`` 32-hex ids, increasing (cheap appends to the primary-key B-tree), unique."""
    seq = np.arange(n, dtype=np.uint64) + np.uint64(prefix) * np.uint64(10**12)
    low = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64)
    return [f"{a:016x}{b:016x}" for a, b in zip(seq.tolist(), low.tolist(), strict=True)]


def _stamp(seconds: np.ndarray) -> list[str]:
    """UTC seconds since START as SQLAlchemy's SQLite text."""
    at = np.datetime64(START.replace(tzinfo=None), "s") + seconds.astype("timedelta64[s]")
    return [t.replace("T", " ") + ".000000" for t in np.datetime_as_string(at, unit="s").tolist()]


def generate_million(path: Path, members: int, seed: int = 1) -> dict[str, int]:
    """Members, sales, points and stored value straight into a migrated SQLite file."""
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
    join_s = np.sort(rng.uniform(0, DAYS - 1, members) * 86400).astype(np.int64)
    member_ids = _ids(4, members, rng)
    home = rng.integers(0, 3, members)
    joined = _stamp(join_s)
    for start in range(0, members, CHUNK):
        conn.executemany(
            "INSERT INTO members (id, card_no, name, birth_leap_month, preferences, "
            "home_store_id, enrolled_store_id, sms_consent, email_consent, guardian_consent, "
            "status, joined_at, updated_at) VALUES (?, ?, ?, 0, '', ?, ?, 0, 0, 0, 'active', ?, ?)",
            [(member_ids[i], f"{9_000_000_000 + i}", f"Member {i}", stores[home[i]],
              stores[home[i]], joined[i], joined[i])
             for i in range(start, min(start + CHUNK, members))])
    # later purchases: Poisson(2.5 × gamma) of them, uniform over the member's active life
    # (exponential, mean 300 days, cut at the end of the history)
    life = np.minimum(rng.exponential(300 * 86400, members), DAYS * 86400 - join_s)
    extra = rng.poisson(rng.gamma(1.0, 2.5, members))
    owner = np.repeat(np.arange(members), extra)
    later = join_s[owner] + (rng.uniform(0, 1, owner.shape[0]) * life[owner]).astype(np.int64)
    owner = np.concatenate([np.arange(members), owner])
    sale_s = np.concatenate([join_s + rng.integers(60, 600, members), later])
    walk_ins = int(owner.shape[0] * 0.25)
    owner = np.concatenate([owner, np.full(walk_ins, -1)])
    sale_s = np.concatenate([sale_s, rng.integers(0, DAYS * 86400, walk_ins)])
    order = np.argsort(sale_s, kind="stable")
    owner, sale_s = owner[order], sale_s[order]
    n_sales = owner.shape[0]
    sale_ids = _ids(5, n_sales, rng)
    store_of = np.where(owner >= 0, home[np.maximum(owner, 0)], rng.integers(0, 3, n_sales))
    amount = np.round(np.exp(rng.normal(np.log(5000), 0.7, n_sales)) / 10).astype(np.int64) * 10
    stamps = _stamp(sale_s)
    for start in range(0, n_sales, CHUNK):
        conn.executemany(
            "INSERT INTO sales (id, store_id, member_id, receipt_no, source, occurred_at, "
            "recorded_at, subtotal_minor, discount_minor, total_minor, refunded_minor, "
            "points_earned, points_redeemed, status) "
            "VALUES (?, ?, ?, ?, 'import', ?, ?, ?, 0, ?, 0, 0, 0, 'completed')",
            [(sale_ids[i], stores[store_of[i]],
              member_ids[owner[i]] if owner[i] >= 0 else None, f"R{i}", stamps[i], stamps[i],
              int(amount[i]), int(amount[i])) for i in range(start, min(start + CHUNK, n_sales))])
    seq = 0
    for table, share, prefix in (("points", 0.3, 7), ("wallet", 0.1, 8)):
        holders = np.flatnonzero(rng.uniform(0, 1, members) < share)
        accounts = _ids(prefix, holders.shape[0], rng)
        entries = _ids(prefix + 10, holders.shape[0], rng)
        value = rng.integers(1, 5000, holders.shape[0]) * (1 if table == "points" else 100)
        when = _stamp(np.full(holders.shape[0], (DAYS - 1) * 86400))
        rows = range(holders.shape[0])
        if table == "points":
            conn.executemany(
                "INSERT INTO points_accounts (id, member_id, available, pending, debt, "
                "lifetime_earned, updated_at) VALUES (?, ?, ?, 0, 0, ?, ?)",
                [(accounts[i], member_ids[holders[i]], int(value[i]), int(value[i]), when[i])
                 for i in rows])
            conn.executemany(
                "INSERT INTO points_entries (seq, id, account_id, kind, available_delta, "
                "pending_delta, debt_delta, available_after, pending_after, debt_after, "
                "actor_label, reason, occurred_at) VALUES (?, ?, ?, 'earn', ?, 0, 0, ?, 0, 0, "
                "'bench', '', ?)",
                [(seq + i + 1, entries[i], accounts[i], int(value[i]), int(value[i]), when[i])
                 for i in rows])
        else:
            conn.executemany(
                "INSERT INTO wallet_accounts (id, member_id, principal_minor, bonus_minor, "
                "created_at, updated_at) VALUES (?, ?, ?, 0, ?, ?)",
                [(accounts[i], member_ids[holders[i]], int(value[i]), when[i], when[i])
                 for i in rows])
            conn.executemany(
                "INSERT INTO wallet_entries (seq, id, account_id, kind, principal_delta_minor, "
                "bonus_delta_minor, principal_after_minor, bonus_after_minor, actor_label, "
                "reason, occurred_at) VALUES (?, ?, ?, 'topup', ?, 0, ?, 0, 'bench', '', ?)",
                [(seq + i + 1, entries[i], accounts[i], int(value[i]), int(value[i]), when[i])
                 for i in rows])
        seq += holders.shape[0]
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {"members": members, "sales": n_sales}


def generate_demo(path: Path) -> dict[str, int]:
    db = Database.from_url(f"sqlite:///{path}")
    migrate.upgrade(db.engine)
    with db.write() as session:
        summary = build_demo(session, config=DemoConfig(end_on=AS_OF + timedelta(days=1)))
    with db.read() as session:
        sales = session.connection().exec_driver_sql("SELECT count(*) FROM sales").scalar()
    db.dispose()
    return {"members": summary.members, "sales": int(sales or 0)}


def prepare(name: str, path: Path, build: Callable[[Path], dict[str, int]], rebuild: bool
            ) -> Database:
    """Build the database and its snapshot once; add the owner the bench signs in as."""
    if rebuild:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    if not path.exists():
        console.print(f"[{name}] generating {path.name} ...")
        started = time.perf_counter()
        counts = build(path)
        console.print(f"[{name}] {counts} in {time.perf_counter() - started:.0f} s; "
                      "nightly refresh ...")
        started = time.perf_counter()
        db = Database.from_url(f"sqlite:///{path}")
        result = service.refresh(db, FixedClock(NOW), timezone=TIMEZONE, as_of=AS_OF)
        console.print(f"[{name}] refresh {time.perf_counter() - started:.0f} s "
                      f"(stages, s: {', '.join(f'{k} {v:.1f}' for k, v in result.stages.items())})")
        db.dispose()
    db = Database.from_url(f"sqlite:///{path}")
    with db.write() as session:
        if auth.authenticate(session, clock=FixedClock(NOW), username=USERNAME,
                             password=PASSWORD) is None:
            auth.create_user(session, clock=FixedClock(NOW), actor=None, username=USERNAME,
                             display_name="Bench owner", password=PASSWORD, role=Role.OWNER)
    return db


# ---------------------------------------------------------------- measuring


@dataclass
class Row:
    database: str
    what: str
    runs: list[float]
    cpu: list[float] = field(default_factory=list)  # CPU ms of this process, same runs

    def quantile(self, q: float, cpu: bool = False) -> float:
        ordered = sorted(self.cpu if cpu else self.runs)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    def time(self, client: TestClient, url: str, expect: str) -> float:
        """Request ``url`` once, recording its wall and CPU milliseconds (the app runs in
        this process: ``process_time`` covers the server's work, whatever the load)."""
        cpu_started = time.process_time()
        ms = _timed(client, url, expect)
        self.cpu.append((time.process_time() - cpu_started) * 1000)
        self.runs.append(ms)
        return ms


def _client(db: Database, path: Path) -> TestClient:
    settings = Settings(environment="test", database_url=f"sqlite:///{path}",
                        default_language="en", default_timezone=TIMEZONE)
    client = TestClient(create_app(settings, db=db, clock=FixedClock(NOW)))
    login = client.get("/login")
    token = login.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    r = client.post("/login", data={"username": USERNAME, "password": PASSWORD,
                                    "csrf_token": token, "next": "/"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return client


def _timed(client: TestClient, url: str, expect: str) -> float:
    started = time.perf_counter()
    r = client.get(url)
    ms = (time.perf_counter() - started) * 1000
    if r.status_code != 200 or expect not in r.text:
        raise SystemExit(f"{url}: {r.status_code} {r.text[:500]}")
    return ms


def _clear() -> None:
    dashboard.HISTORY_CACHE.clear()
    dashboard.SNAPSHOT_CACHE.clear()
    dashboard.PORTRAIT_CACHE.clear()


def measure(name: str, db: Database, path: Path, *, cold_history: int, warm: int) -> list[Row]:
    client = _client(db, path)
    with db.read() as session:
        store = min(str(s.id) for s in members.list_stores(session))
    page, fragment, full = "/", "/dashboard/history", 'id="dash-cohorts-chart"'
    other = f"?from={(AS_OF - timedelta(days=179)).isoformat()}&to={AS_OF.isoformat()}"
    rows = [Row(name, "first request after start (templates compiled, caches cold)", []),
            Row(name, "page, cold (stored groups and history: every figure and chart)", []),
            Row(name, "page of one store, cold (the same, ?store=)", []),
            Row(name, "page, warm (every figure and chart on the page)", []),
            Row(name, "history fragment, default period, cold (stored figures)", []),
            Row(name, "history fragment, another period, cold (DuckDB load + views)", []),
            Row(name, "history fragment, warm (from the cache)", [])]
    first, cold_page, cold_store, warm_page, cold_default, cold_other, warm_history = rows
    _clear()
    first.time(client, page, full)
    for _ in range(10):
        _clear()
        cold_page.time(client, page, full)
        _clear()
        cold_store.time(client, f"{page}?store={store}", full)
        _clear()
        cold_default.time(client, fragment, 'data-figure="active_members"')
    for i in range(cold_history):
        _clear()
        cold_other.time(client, fragment + other, 'data-figure="active_members"')
        console.print(f"[{name}] history of another period, cold {i + 1}/{cold_history}: "
                      f"{cold_other.runs[-1]:,.0f} ms")
    for _ in range(warm):
        warm_page.time(client, page, full)
        warm_history.time(client, fragment, 'data-figure="active_members"')
    client.close()
    return rows


def synthetic_next_best(path: Path) -> int:
    """Five next-best rows for every member of the snapshot day, unless there are some."""
    conn = sqlite3.connect(path)
    try:
        if conn.execute("SELECT 1 FROM next_best_products WHERE as_of = ? LIMIT 1",
                        (AS_OF.isoformat(),)).fetchone():
            return 0
        ids = [row[0] for row in conn.execute("SELECT id FROM members ORDER BY id")]
        rng = np.random.default_rng(3)
        products = _ids(9, 500, rng)
        picks = rng.integers(0, len(products), (len(ids), 5))
        for start in range(0, len(ids), CHUNK):
            conn.executemany(
                "INSERT INTO next_best_products (as_of, member_id, rank, product_id, "
                "because_id, score) VALUES (?, ?, ?, ?, ?, ?)",
                [(AS_OF.isoformat(), ids[i], k + 1, products[picks[i, k]],
                  products[picks[i, (k + 1) % 5]], 1.0 / (k + 1))
                 for i in range(start, min(start + CHUNK, len(ids))) for k in range(5)])
        conn.commit()
        return len(ids) * 5
    finally:
        conn.close()


def measure_member(name: str, db: Database, path: Path, *, pages: int) -> list[Row]:
    added = synthetic_next_best(path)
    if added:
        console.print(f"[{name}] wrote {added:,} synthetic next-best rows")
    conn = sqlite3.connect(path)
    ids = [row[0] for row in conn.execute(
        "SELECT member_id FROM next_best_products WHERE as_of = ? AND rank = 1 "
        "ORDER BY random() LIMIT ?", (AS_OF.isoformat(), pages))]
    conn.close()
    client = _client(db, path)
    rows = [Row(name, "next-best fragment /members/{id}/next-best (stored)", [])]
    for raw in ids:
        rows[0].time(client, f"/members/{uuid.UUID(raw)}/next-best", "<ol")
    client.close()
    return rows


def measure_collect(path: Path) -> None:
    """``aggregates.collect`` on a copy of ``path`` (the source load timed apart)."""
    import resource
    import shutil
    import tempfile

    from patron.analytics import aggregates, source

    def cpu() -> float:
        own, kids = (resource.getrusage(resource.RUSAGE_SELF),
                     resource.getrusage(resource.RUSAGE_CHILDREN))
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    with tempfile.TemporaryDirectory(prefix="patron-collect-") as tmp:
        copy = Path(tmp) / path.name
        shutil.copyfile(path, copy)
        db = Database.from_url(f"sqlite:///{copy}")
        load = os.getloadavg()[0]
        wall0, cpu0 = time.perf_counter(), cpu()
        with source.open_source(db, as_of=AS_OF, timezone=TIMEZONE, tables=[
                "sales", "members", "holdings", "stores", "lines", "products",
                "categories"]) as src:
            wall1, cpu1 = time.perf_counter(), cpu()
            got = aggregates.collect(src, as_of=AS_OF, timezone=TIMEZONE, clock_now=NOW)
            wall2, cpu2 = time.perf_counter(), cpu()
        db.dispose()
        copy.unlink()
        # the write stage's share: the rows into a freshly migrated file (no scores: the
        # groups are the snapshot's, a few hundred rows; the next-best rows are the bulk)
        fresh = f"sqlite:///{Path(tmp) / 'patron.db'}"
        migrate.upgrade(make_engine(fresh))
        target = Database.from_url(fresh)
        no_scores = pa.table({"member_id": pa.array([], pa.string()),
                              "r_score": pa.array([], pa.int64()),
                              "fm_score": pa.array([], pa.int64()),
                              "rfm_segment": pa.array([], pa.string()),
                              "lifecycle_stage": pa.array([], pa.string()),
                              "net_365_minor": pa.array([], pa.int64()),
                              "clv_minor": pa.array([], pa.int64()),
                              "p_alive": pa.array([], pa.float64())})
        wall3, cpu3 = time.perf_counter(), cpu()
        aggregates.write(target, as_of=AS_OF, collected=got, scores=no_scores)
        wall4, cpu4 = time.perf_counter(), cpu()
        target.dispose()
    table = Table("step", "wall s", "CPU s",
                  title=f"aggregates.collect on {path.name} (load average {load:.1f} at the "
                        f"start, {os.getloadavg()[0]:.1f} at the end)")
    table.add_row("source load", f"{wall1 - wall0:.1f}", f"{cpu1 - cpu0:.1f}")
    table.add_row("collect", f"{wall2 - wall1:.1f}", f"{cpu2 - cpu1:.1f}")
    for part, seconds in got.seconds.items():
        if part != "write":
            table.add_row(f"  {part} (wall)", f"{seconds:.1f}", "")
    table.add_row("write (fresh SQLite file)", f"{wall4 - wall3:.1f}", f"{cpu4 - cpu3:.1f}")
    rows = got.next_best.num_rows if got.next_best is not None else 0
    table.add_row(f"  ({len(got.history)} scopes, {rows:,} next-best rows)", "", "")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--only", choices=("demo", "1m"))
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--member-pages", type=int, default=0,
                        help="also time this many member pages and next-best fragments")
    parser.add_argument("--cold-history", type=int, default=1,
                        help="runs of the history of a period not stored (each loads the "
                             "history: tens of seconds at 1M)")
    parser.add_argument("--collect", type=Path,
                        help="only time aggregates.collect on a copy of this analytics db")
    args = parser.parse_args()
    if args.collect is not None:
        measure_collect(args.collect)
        return
    OUT.mkdir(exist_ok=True)
    results: list[Row] = []
    load = os.getloadavg()[0]
    if args.only in (None, "demo"):
        path = OUT / "dashboard-demo.db"
        db = prepare("demo", path, generate_demo, args.rebuild)
        results += measure("demo (20k members)", db, path, cold_history=args.cold_history,
                           warm=30)
        db.dispose()
    if args.only in (None, "1m"):
        path = OUT / f"dashboard-{args.members}.db"
        db = prepare("1M", path, lambda p: generate_million(p, args.members), args.rebuild)
        results += measure(f"{args.members:,} members", db, path,
                           cold_history=args.cold_history, warm=30)
        if args.member_pages:
            results += measure_member(f"{args.members:,} members", db, path,
                                      pages=args.member_pages)
        db.dispose()
    table = Table("database", "request", "runs", "p50 ms", "p95 ms", "max ms", "CPU p50 ms",
                  title=f"dashboard at the server (SQLite; {os.cpu_count()} cores, "
                        f"load average {load:.1f} at the start)")
    results = [row for row in results if row.runs]
    for row in results:
        table.add_row(row.database, row.what, str(len(row.runs)), f"{row.quantile(0.5):,.1f}",
                      f"{row.quantile(0.95):,.1f}", f"{max(row.runs):,.1f}",
                      f"{row.quantile(0.5, cpu=True):,.1f}")
    console.print(table)
    for row in results:
        console.print(f"{row.database} | {row.what} | mean {statistics.fmean(row.runs):,.1f} ms")


if __name__ == "__main__":
    main()
