"""Segment counts and materialisation over 1,000,000 members, on SQLite.

    .venv/bin/python bench/segments.py                     # 1 M members (bench/out/campaigns-*.db)
    .venv/bin/python bench/segments.py --members 100000    # a smaller chain while developing
    .venv/bin/python bench/segments.py --rebuild           # build the database again

The target (issue "Campaigns that prove what they earned"): the rule builder's live count of
a realistic segment over a million members comes back in under a second on SQLite.

**The database** is built once and cached under ``bench/out/`` (the schema by the real
migrations; rows written straight with ``sqlite3``, secondary indexes dropped during the load
and rebuilt after, as bench/care_jobs.py does). Three stores (half, a third and a fifth of
the members), eight categories of five products (formula among them), tiers (none 60 %,
silver 25 %, gold 12 %, black 3 %), consents (SMS 65 %, e-mail 35 %) and about three
million sales with one to three lines over three years, drawn per member from a
purchase-rate-with-dropout model (heavy and light buyers, members who stopped coming), plus
last night's ``member_scores`` snapshot derived from each member's own history: RFM scores
and segment, ``p_alive`` from recency against the member's own rate, CLV, lifecycle stage,
next purchase date. No ``ANALYZE``: the planner works without statistics, as in a fresh
install.

**The run** times, for each segment, the builder's count through
``campaigns.service.count_members`` (what ``POST /segments/count`` runs: the snapshot date,
the rule tree parsed and compiled, one ``SELECT count(*)``), and the materialisation of the
member ids a launch reads (``segments.members_query``), each in a fresh read session; one
warm-up, then the median (p50) of ``--runs`` runs. Then the query plan of each count.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import event, text

from patron.auth.enums import PrincipalKind, Role
from patron.auth.principal import Principal
from patron.campaigns import segments
from patron.campaigns import service as campaigns
from patron.core import migrate
from patron.core.clock import FixedClock
from patron.core.db import Database, make_engine

OUT = Path(__file__).resolve().parent / "out"
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
AS_OF = date(2026, 11, 22)
TZ = "Asia/Shanghai"
YEARS = 3
console = Console(width=max(120, Console().width))

STORES = ("A", "B", "C")
STORE_SHARE = (0.5, 0.3, 0.2)
CATEGORIES = ("formula", "diapers", "coffee", "tea", "snacks", "skincare", "toys", "books")
CATEGORY_SHARE = (0.08, 0.12, 0.14, 0.14, 0.2, 0.12, 0.1, 0.1)
TIERS = ("silver", "gold", "black")


def _hex_ids(prefix: np.ndarray, rng: np.random.Generator) -> list[str]:
    """32-hex-digit ids (how SQLAlchemy's Uuid is stored on SQLite), ordered by ``prefix``
    (an int64, e.g. a time) so B-tree inserts append."""
    tail = rng.integers(0, 2**63, len(prefix), dtype=np.int64)
    return [f"{int(p) & 0xFFFFFFFFFFFFFFFF:016x}{int(t):016x}"
            for p, t in zip(prefix.tolist(), tail.tolist(), strict=True)]


def _text_times(us: np.ndarray) -> list[str]:
    """UTC instants (microseconds since the epoch) as SQLite's DATETIME text."""
    stamps = np.datetime_as_string(us.astype("datetime64[us]"), unit="us")
    return [s.replace("T", " ") for s in stamps.tolist()]


def _text_days(days: np.ndarray) -> list[str | None]:
    out: list[str | None] = []
    for d in days.tolist():
        out.append(None if d < 0 else (date(1970, 1, 1) + timedelta(days=int(d))).isoformat())
    return out


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]


def _insert(conn: sqlite3.Connection, table: str, rows: dict[str, Any], n: int) -> None:
    """Insert ``n`` rows given as columns (lists or scalars) into ``table``."""
    names = [c for c in _columns(conn, table) if c in rows]
    missing = set(rows) - set(names)
    assert not missing, missing
    columns = [rows[c] if isinstance(rows[c], list) else [rows[c]] * n for c in names]
    placeholders = ", ".join("?" * len(names))
    sql = f'INSERT INTO "{table}" ({", ".join(names)}) VALUES ({placeholders})'
    step = 200_000
    for start in range(0, n, step):
        conn.executemany(sql, zip(*(c[start:start + step] for c in columns), strict=True))


def build(path: Path, n: int, seed: int) -> float:
    """Migrate a new database at ``path`` and load the chain; returns the seconds taken."""
    started = time.perf_counter()
    if path.exists():
        path.unlink()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    rng = np.random.default_rng(seed)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")
    loaded = ("members", "sales", "sale_lines", "member_scores", "member_tiers",
              "points_accounts")
    indexes = [(name, sql) for name, sql in conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL AND "
        f"tbl_name IN ({', '.join('?' * len(loaded))})", loaded)]
    for name, _sql in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    conn.execute("BEGIN")
    now_us = int(NOW.timestamp() * 1e6)
    day_us = 86_400 * 1_000_000
    created = NOW.isoformat(sep=" ").replace("+00:00", "")

    # -- the chain: stores, catalogue, tiers
    store_ids = [uuid.uuid4().hex for _ in STORES]
    _insert(conn, "stores", {"id": store_ids, "code": list(STORES),
                             "name": [f"Store {s}" for s in STORES], "address": "",
                             "timezone": TZ, "active": 1, "created_at": created}, len(STORES))
    category_ids = [uuid.uuid4().hex for _ in CATEGORIES]
    _insert(conn, "categories", {"id": category_ids, "code": [c.upper() for c in CATEGORIES],
                                 "name": list(CATEGORIES)}, len(CATEGORIES))
    product_category = np.repeat(np.arange(len(CATEGORIES)), 5)
    product_ids = [uuid.uuid4().hex for _ in product_category]
    product_price = rng.integers(20, 300, len(product_ids)) * 100
    _insert(conn, "products", {
        "id": product_ids, "sku": [f"SKU-{i:03d}" for i in range(len(product_ids))],
        "name": [f"{CATEGORIES[c]} {i}" for i, c in enumerate(product_category.tolist())],
        "category_id": [category_ids[c] for c in product_category.tolist()],
        "price_minor": product_price.tolist(), "active": 1}, len(product_ids))
    tier_ids = [uuid.uuid4().hex for _ in TIERS]
    _insert(conn, "tiers", {"id": tier_ids, "code": list(TIERS),
                            "name": [t.title() for t in TIERS], "rank": [1, 2, 3],
                            "threshold": [0, 500_000, 2_000_000], "points_multiplier_pct": 100,
                            "discount_pct": 0, "active": 1}, len(TIERS))

    # -- members
    console.print(f"members: {n:,}")
    joined_us = np.sort(now_us - rng.integers(0, YEARS * 365 * day_us, n))
    member_ids = _hex_ids(joined_us, rng)
    home = rng.choice(len(STORES), n, p=STORE_SHARE)
    calendar = rng.choice(3, n, p=(0.2, 0.64, 0.16))  # none, solar, lunar
    month = rng.integers(1, 13, n)
    gender = rng.choice(3, n, p=(0.55, 0.35, 0.1))
    has_email = rng.random(n) < 0.4
    _insert(conn, "members", {
        "id": member_ids, "card_no": [f"8{i:011d}" for i in range(n)],
        "phone": [f"+86138{i:08d}" for i in range(n)],
        "phone_last4": [f"{i % 10000:04d}" for i in range(n)],
        "name": [f"Member {i}" for i in range(n)],
        "email": [f"m{i}@example.com" if e else None for i, e in enumerate(has_email.tolist())],
        "gender": [("female", "male", None)[g] for g in gender.tolist()],
        "birthday_calendar": [(None, "solar", "lunar")[c] for c in calendar.tolist()],
        "birth_year": [1990 if c else None for c in calendar.tolist()],
        "birth_month": [int(m) if c else None for m, c in zip(month.tolist(),
                                                              calendar.tolist(), strict=True)],
        "birth_day": [15 if c else None for c in calendar.tolist()],
        "birth_leap_month": 0, "preferences": "",
        "home_store_id": [store_ids[h] for h in home.tolist()],
        "enrolled_store_id": [store_ids[h] for h in home.tolist()],
        "sms_consent": (rng.random(n) < 0.65).astype(int).tolist(),
        "email_consent": (has_email & (rng.random(n) < 0.85)).astype(int).tolist(),
        "guardian_consent": 0, "status": "active",
        "joined_at": _text_times(joined_us), "updated_at": created}, n)
    tier = rng.choice(4, n, p=(0.6, 0.25, 0.12, 0.03))
    tiered = np.flatnonzero(tier > 0)
    _insert(conn, "member_tiers", {
        "member_id": [member_ids[i] for i in tiered.tolist()],
        "tier_id": [tier_ids[t - 1] for t in tier[tiered].tolist()],
        "since": created, "source": "earned"}, len(tiered))
    with_points = np.flatnonzero(rng.random(n) < 0.7)
    points = rng.integers(0, 5000, len(with_points))
    _insert(conn, "points_accounts", {
        "id": [uuid.uuid4().hex for _ in range(len(with_points))],
        "member_id": [member_ids[i] for i in with_points.tolist()],
        "available": points.tolist(), "pending": 0, "debt": 0,
        "lifetime_earned": points.tolist(), "updated_at": created}, len(with_points))

    # -- purchases: a rate per member, a dropout, Poisson counts over the active span
    rate = rng.gamma(0.8, 5.0, n)  # purchases a year while active
    dropout_us = (rng.exponential(500, n) * day_us).astype(np.int64)
    end_us = np.minimum(now_us, joined_us + dropout_us)
    span_years = (end_us - joined_us) / (365 * day_us)
    counts = rng.poisson(rate * span_years)
    buyer = np.repeat(np.arange(n), counts)
    at_us = joined_us[buyer] + (rng.random(len(buyer)) * (end_us - joined_us)[buyer]).astype(
        np.int64)
    order = np.argsort(at_us, kind="stable")
    buyer, at_us = buyer[order], at_us[order]
    sales_n = len(buyer)
    console.print(f"sales: {sales_n:,}")
    lines_per = rng.choice((1, 2, 3), sales_n, p=(0.6, 0.3, 0.1))
    line_sale = np.repeat(np.arange(sales_n), lines_per)
    line_no = np.arange(len(line_sale)) - np.repeat(np.cumsum(lines_per) - lines_per, lines_per)
    category = rng.choice(len(CATEGORIES), len(line_sale), p=CATEGORY_SHARE)
    product = category * 5 + rng.integers(0, 5, len(line_sale))
    quantity = rng.choice((1, 2, 3), len(line_sale), p=(0.7, 0.2, 0.1))
    line_total = product_price[product] * quantity
    sale_total = np.bincount(line_sale, weights=line_total, minlength=sales_n).astype(np.int64)
    refunded = rng.random(sales_n) < 0.02
    sale_ids = _hex_ids(at_us, rng)
    store = np.where(rng.random(sales_n) < 0.85, home[buyer],
                     rng.integers(0, len(STORES), sales_n))
    times = _text_times(at_us)
    _insert(conn, "sales", {
        "id": sale_ids, "store_id": [store_ids[s] for s in store.tolist()],
        "member_id": [member_ids[b] for b in buyer.tolist()],
        "receipt_no": [f"R{i:010d}" for i in range(sales_n)], "source": "pos",
        "occurred_at": times, "recorded_at": times, "subtotal_minor": sale_total.tolist(),
        "discount_minor": 0, "total_minor": sale_total.tolist(),
        "refunded_minor": np.where(refunded, sale_total, 0).tolist(), "points_earned": 0,
        "points_redeemed": 0,
        "status": ["refunded" if r else "completed" for r in refunded.tolist()]}, sales_n)
    del times
    lines_n = len(line_sale)
    console.print(f"sale lines: {lines_n:,}")
    _insert(conn, "sale_lines", {
        "id": _hex_ids(at_us[line_sale], rng), "sale_id": [sale_ids[s] for s in line_sale.tolist()],
        "line_no": (line_no + 1).tolist(), "product_id": [product_ids[p] for p in product.tolist()],
        "quantity": quantity.tolist(), "unit_price_minor": product_price[product].tolist(),
        "discount_minor": 0, "total_minor": line_total.tolist(),
        "refunded_quantity": np.where(refunded[line_sale], quantity, 0).tolist(),
        "category_id": [category_ids[c] for c in category.tolist()]}, lines_n)
    del sale_ids

    # -- last night's scores, from each member's own history
    as_of_day = (AS_OF - date(1970, 1, 1)).days
    days = at_us // day_us
    ok = ~refunded & (days <= as_of_day)  # the snapshot saw the history up to its day
    purchases = np.bincount(buyer[ok], minlength=n)
    spent = np.bincount(buyer[ok], weights=sale_total[ok], minlength=n).astype(np.int64)
    last_day = np.full(n, -1, dtype=np.int64)
    first_day = np.full(n, 1 << 40, dtype=np.int64)
    np.maximum.at(last_day, buyer[ok], days[ok])
    np.minimum.at(first_day, buyer[ok], days[ok])
    bought = purchases > 0
    recency = np.where(bought, as_of_day - last_day, 0)
    tenure = np.where(bought, as_of_day - first_day, 0)
    p_alive = np.where(bought, np.exp(-recency * rate / 365 * 0.8), np.nan)
    p_alive = np.clip(p_alive * rng.uniform(0.85, 1.0, n), 0, 1)
    mean_order = np.where(bought, spent / np.maximum(purchases, 1), 0)
    clv = np.where(bought, np.round(rate * 2 * mean_order * p_alive), -1).astype(np.int64)
    r_score = np.where(bought, 5 - np.minimum(recency // 90, 4), 0)
    f_score = np.where(bought, np.minimum(1 + purchases // 3, 5), 0)
    segment = np.full(n, None, dtype=object)
    segment[bought] = "hibernating"
    for name, mask in (
            ("lost", (r_score <= 1) & (f_score <= 2)),
            ("cant_lose", (r_score <= 2) & (f_score >= 4)),
            ("at_risk", (r_score <= 2) & (f_score == 3)),
            ("about_to_sleep", r_score == 3),
            ("needs_attention", (r_score == 3) & (f_score >= 3)),
            ("new", (r_score >= 4) & (purchases == 1)),
            ("promising", (r_score >= 4) & (f_score == 1) & (purchases > 1)),
            ("potential_loyalist", (r_score >= 4) & (f_score == 2)),
            ("loyal", (r_score >= 3) & (f_score >= 4)),
            ("champions", (r_score == 5) & (f_score >= 4))):
        segment[bought & mask] = name
    joined_days = joined_us // day_us
    stage = np.where(~bought, np.where(as_of_day - joined_days < 60, "new", "lost"),
                     np.select([recency > 365, recency > 180, tenure < 60, p_alive < 0.5,
                                purchases >= 6], ["lost", "lapsed", "new", "declining",
                                                  "mature"], "growing"))
    loyalty = rng.choice(np.array(["trust", "inertia", "latent", "none"]), n,
                         p=(0.2, 0.3, 0.2, 0.3))
    interval = np.where(purchases >= 2, tenure / np.maximum(purchases - 1, 1), 0)
    next_day = np.where((purchases >= 2) & (recency < 365),
                        last_day + np.round(interval).astype(np.int64), -1)
    _insert(conn, "member_scores", {
        "as_of": AS_OF.isoformat(), "member_id": member_ids, "purchases": purchases.tolist(),
        "frequency": np.where(bought, purchases - 1, 0).tolist(),
        "first_purchase_on": _text_days(np.where(bought, first_day, -1)),
        "last_purchase_on": _text_days(last_day),
        "recency_days": [int(r) if b else None for r, b in zip(recency.tolist(), bought.tolist(),
                                                               strict=True)],
        "total_net_minor": spent.tolist(), "net_90_minor": 0, "net_prev_90_minor": 0,
        "net_365_minor": 0, "r_score": [int(r) if r else None for r in r_score.tolist()],
        "f_score": [int(f) if f else None for f in f_score.tolist()],
        "m_score": [3 if b else None for b in bought.tolist()],
        "fm_score": [3 if b else None for b in bought.tolist()],
        "rfm_segment": segment.tolist(),
        "p_alive": [None if np.isnan(p) else float(p) for p in p_alive.tolist()],
        "clv_minor": [int(c) if c >= 0 else None for c in clv.tolist()],
        "lifecycle_stage": stage.tolist(), "next_purchase_on": _text_days(next_day),
        "satisfaction": "unknown", "loyalty_type": loyalty.tolist(),
        "replenishment_categories": 0, "bond_financial": 0.0, "bond_social": 0.0,
        "bond_structural": 0.0}, n)
    _insert(conn, "analytics_runs", {
        "id": uuid.uuid4().hex, "as_of": AS_OF.isoformat(), "started_at": created,
        "finished_at": created, "status": "succeeded", "stages": "{}", "params": "{}",
        "members": n, "error": ""}, 1)
    conn.execute("COMMIT")
    console.print("rebuilding indexes ...")
    for _name, sql in indexes:
        conn.execute(sql)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - started


def bench_segments(formula: str, store_a: str,
                   value_minor: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("lapsing high-value: p_alive < 0.5 and CLV > ¥2,000",
         {"op": "all", "children": [{"field": "p_alive", "op": "<", "value": 0.5},
                                    {"field": "clv_minor", "op": ">", "value": value_minor}]}),
        ("bought formula in the last 60 days, home store A",
         {"op": "all", "children": [{"field": "home_store", "value": [store_a]},
                                    {"field": "bought", "of": "category", "value": [formula],
                                     "days": 60}]}),
        ("gold tier, SMS consent, no purchase in 30 days",
         {"op": "all", "children": [{"field": "tier", "value": ["gold"]},
                                    {"field": "sms_consent", "value": True},
                                    {"field": "last_purchase", "op": "not_within_days",
                                     "value": 30}]}),
        ("win-back play: can't lose / at risk, none in 60 days",
         {"op": "all", "children": [{"field": "rfm_segment", "value": ["cant_lose", "at_risk"]},
                                    {"field": "last_purchase", "op": "not_within_days",
                                     "value": 60}]}),
        ("any of: birthday this month with SMS, or 3+ purchases in 90 days",
         {"op": "any", "children": [
             {"op": "all", "children": [{"field": "birthday_month", "value": "current"},
                                        {"field": "sms_consent", "value": True}]},
             {"field": "purchase_count", "op": ">=", "value": 3, "days": 90}]}),
    ]


def _timed(fn: Any, runs: int) -> tuple[float, list[float], list[float], Any]:
    """The first (cold) run's wall ms, then wall and CPU ms of ``runs`` more runs. CPU time
    of this process is what a busy machine does not inflate (SQLite runs in-process)."""
    first = time.perf_counter()
    result = fn()
    cold = (time.perf_counter() - first) * 1000
    wall, cpu = [], []
    for _ in range(runs):
        c0, t0 = time.process_time(), time.perf_counter()
        result = fn()
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return cold, wall, cpu, result


def run(db: Database, runs: int) -> None:
    owner = Principal(kind=PrincipalKind.USER, id=uuid.uuid4(), label="bench", role=Role.OWNER)
    clock = FixedClock(NOW)
    with db.read() as s:
        formula = s.execute(text("SELECT id FROM categories WHERE code = 'FORMULA'")).scalar_one()
        store_a = s.execute(text("SELECT id FROM stores WHERE code = 'A'")).scalar_one()
        members = s.execute(text("SELECT count(*) FROM members")).scalar_one()
        sales = s.execute(text("SELECT count(*) FROM sales")).scalar_one()
        lines = s.execute(text("SELECT count(*) FROM sale_lines")).scalar_one()
    console.print(f"{members:,} members, {sales:,} sales, {lines:,} sale lines")
    table = Table("segment", "members", "count p50 ms", "count CPU p50 ms", "count cold ms",
                  "ids p50 ms", "ids CPU p50 ms",
                  title=f"segments over {members:,} members (SQLite, p50 of {runs} runs "
                  "after one warm-up)")
    plans = []
    for name, rules in bench_segments(str(uuid.UUID(formula)), str(uuid.UUID(store_a)),
                                      200_000):
        def count(rules: dict[str, Any] = rules) -> int:
            with db.read() as s:
                return campaigns.count_members(s, clock=clock, actor=owner, rules=rules,
                                               tz=TZ).count

        def materialise(rules: dict[str, Any] = rules) -> int:
            with db.read() as s:
                scope = campaigns.scope_at(s, now=NOW, tz=TZ)
                return len(segments.member_ids(s, segments.parse_rules(rules), scope))

        cold, times, cpu, matched = _timed(count, runs)
        _cold, id_times, id_cpu, ids = _timed(materialise, runs)
        assert ids == matched
        table.add_row(name, f"{matched:,}", f"{statistics.median(times):.0f}",
                      f"{statistics.median(cpu):.0f}", f"{cold:.0f}",
                      f"{statistics.median(id_times):.0f}", f"{statistics.median(id_cpu):.0f}")
        plans.append((name, _plan(db, count)))
    console.print(table)
    console.print(f"load average now {os.getloadavg()[0]:.1f}; {platform.python_version()}, "
                  f"SQLite {sqlite3.sqlite_version}")
    for name, plan in plans:
        console.print(f"[bold]{name}[/]")
        console.print("    " + plan.replace("\n", "\n    "), style="dim", soft_wrap=True)


def _plan(db: Database, count: Any) -> str:
    """EXPLAIN QUERY PLAN of the count statement, with the parameters it ran with."""
    statements: list[tuple[str, Any]] = []

    def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
               _many: bool) -> None:
        if "count(*)" in statement:
            statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", before)
    try:
        count()
    finally:
        event.remove(db.engine, "before_cursor_execute", before)
    statement, parameters = statements[-1]
    with db.engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
    return "\n".join(str(r[-1]) for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    path = OUT / f"campaigns-{args.members}-s{args.seed}.db"
    if args.rebuild or not path.exists():
        console.print(f"building {path} ...")
        partial = path.with_name(path.name + ".partial")  # renamed only once complete
        seconds = build(partial, args.members, args.seed)
        partial.replace(path)
        console.print(f"built in {seconds:.0f} s ({path.stat().st_size / 1e9:.2f} GB)")
    db = Database.from_url(f"sqlite:///{path}")
    try:
        run(db, args.runs)
    finally:
        db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
