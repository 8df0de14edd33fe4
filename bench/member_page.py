"""Member 360 page latency at the server, on the demo data and on 1,000,000 members.

``GET /members/{id}`` is rendered in-process (Starlette's TestClient against the real app,
signed in as the owner, English) for random members, and the wall time of each request is
recorded; the CPU time of this process and the number of SQL statements per page are
recorded beside it (it is bounded whatever the length of a member's history: no N+1; it
varies a little with what a member has, e.g. a referral tree's depth).

Two databases, each built once and cached in ``bench/out/``:

* ``--demo``: the demo generator's default shop (20,000 members, two years of sales,
  points, stored value, coupons, care), then one analytics refresh for the scores; pages
  of members who bought something.
* default: the 1,000,000 members of ``bench/member_lookup.py`` (members only), enriched
  through the services for ``--sample`` members (purchases, a top-up, points, a coupon,
  messages, a callback task, a complaint, referrals) plus three nightly score snapshots of
  every member (3 M ``member_scores`` rows), so each read of the page is an index lookup in
  a table of production size where it matters (members, scores) and of realistic depth
  per member elsewhere.

    .venv/bin/python bench/member_page.py --demo
    .venv/bin/python bench/member_page.py                 # 1,000,000 members
    .venv/bin/python bench/member_page.py --pages 500 --rebuild

Prints p50/p95/p99/max wall ms, CPU ms and statements per page.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table
from sqlalchemy import event, func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent))

from member_lookup import build as build_members
from member_lookup import machine, settle

from patron.analytics import service as analytics
from patron.api.app import create_app
from patron.api.deps import SESSION_COOKIE
from patron.auth import service as auth
from patron.auth.models import User
from patron.catalog.models import Product
from patron.core import migrate
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.core.errors import PatronError
from patron.core.settings import Settings
from patron.demo import DemoConfig, build_demo, member_count
from patron.feedback import service as feedback
from patron.feedback.enums import CallbackReason, ComplaintCategory, ComplaintChannel
from patron.feedback.schemas import ComplaintCreate
from patron.loyalty import service as loyalty
from patron.members.models import Member, Store
from patron.messaging import service as messaging
from patron.offers import service as offers
from patron.offers.schemas import CouponTemplateCreate
from patron.sales import service as sales
from patron.sales.models import Sale
from patron.sales.schemas import LineIn, PaymentsIn, SaleCreate
from patron.wallet import service as wallet
from patron.wallet.enums import SpendOrder

OUT = Path(__file__).resolve().parent / "out"
END_ON = date(2026, 11, 23)  # as bench/member_lookup.py: the cached members are the same
NOW = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
TZ = "Asia/Shanghai"
console = Console(width=max(120, Console().width))


def _owner(db: Database) -> User:
    with db.read() as s:
        user = s.scalar(select(User).where(User.role == "owner").limit(1))
        assert user is not None, "the demo has an owner"
        s.expunge(user)
        return user


def build_demo_db(db: Database, clock: FixedClock) -> None:
    """The demo shop and one analytics refresh (cached)."""
    migrate.upgrade(db.engine)
    with db.read() as s:
        have = member_count(s)
    if have == 0:
        started = time.perf_counter()
        with db.write() as s:
            build_demo(s, config=DemoConfig(end_on=END_ON, seed=42))
        console.print(f"built the demo in {time.perf_counter() - started:.1f} s")
    with db.read() as s:
        day = analytics.latest_as_of(s)
    if day is None:
        started = time.perf_counter()
        analytics.refresh(db, clock, timezone=TZ, as_of=END_ON - timedelta(days=1))
        console.print(f"analytics refresh in {time.perf_counter() - started:.1f} s")
    settle(db)


def enrich(db: Database, clock: FixedClock, sample: int, seed: int) -> list[uuid.UUID]:
    """Give ``sample`` random members a history through the services (once); return them."""
    rng = random.Random(seed)
    owner = auth.principal_for_user(_owner(db))
    with db.read() as s:
        done = s.scalar(select(func.count()).select_from(Sale)) or 0
        if done:
            ids = list(s.scalars(select(Sale.member_id).where(Sale.member_id.is_not(None))
                                 .group_by(Sale.member_id)))
            return [i for i in ids if i is not None]
        products = list(s.scalars(select(Product.id).where(Product.active.is_(True))))
        everyone = list(s.scalars(select(Member.id).order_by(Member.id)))
        store_id = s.scalar(select(Store.id).order_by(Store.code).limit(1))
    chosen = rng.sample(everyone, sample)
    del everyone
    till = sales.TillConfig(currency="CNY", region="CN", timezone=TZ,
                            spend_order=SpendOrder.PRINCIPAL_FIRST)
    started = time.perf_counter()
    with db.write() as s:
        template = offers.create_template(s, clock=clock, actor=owner, data=CouponTemplateCreate(
            name="¥10 off", kind="fixed", amount_minor=1_000, validity="days", valid_days=60))
        template_id = template.id
    for n, member_id in enumerate(chosen):
        with db.write() as s:
            for _ in range(rng.randint(3, 30)):
                lines = [LineIn(product_id=p, quantity=rng.randint(1, 3))
                         for p in rng.sample(products, rng.randint(1, 4))]
                quote = sales.quote(s, clock=clock, actor=owner, till=till, data=SaleCreate(
                    store_id=store_id, member_id=member_id, lines=lines))
                sales.checkout(s, clock=clock, actor=owner, till=till, data=SaleCreate(
                    store_id=store_id, member_id=member_id, lines=lines,
                    payments=PaymentsIn(cash_minor=quote.total_minor)))
            wallet.top_up(s, clock=clock, actor=owner, member_id=member_id,
                          amount_minor=rng.choice([10_000, 50_000]))
            loyalty.adjust(s, clock=clock, actor=owner, member_id=member_id, points=100,
                           reason="bench", tz=TZ)
            offers.issue_coupons(s, clock=clock, actor=owner, template_id=template_id,
                                 member_id=member_id)
            messaging.enqueue(s, clock=clock, messages=[messaging.Outgoing(
                dedupe_key=f"bench:{member_id}:{k}", channel="sms", purpose="marketing",
                template="bench", language="zh_CN", recipient="+8613900000000",
                body=f"bench message {k}", member_id=member_id) for k in range(8)])
            feedback.create_callback(s, clock=clock, actor=None, member_id=member_id,
                                     reason=CallbackReason.WIN_BACK)
            feedback.open_complaint(s, clock=clock, actor=None, data=ComplaintCreate(
                member_id=member_id, channel=ComplaintChannel.PHONE,
                category=ComplaintCategory.SERVICE, description="bench"))
            if n % 3 == 0:
                code = offers.referral_code_for(s, clock=clock, member_id=member_id).code
                other = chosen[(n + 1) % len(chosen)]
                try:
                    with s.begin_nested():
                        offers.attribute_referral(s, clock=clock, actor=None,
                                                  new_member_id=other, code=code)
                except PatronError:  # already referred, or bought already: skip
                    pass
        if n % 50 == 0:
            console.print(f"  enriched {n + 1}/{len(chosen)} members "
                          f"({time.perf_counter() - started:.0f} s)")
    return chosen


def score_snapshots(db: Database, days: int = 3) -> None:
    """``days`` nightly snapshots of every member's scores, written straight to the table
    (a refresh would need a sales history for a million members; here only the row count
    and the primary-key lookups matter)."""
    with db.read() as s:
        if analytics.latest_as_of(s) is not None:
            return
    path = db.engine.url.database
    assert path
    rng = random.Random(7)
    con = sqlite3.connect(path)
    ids = [row[0] for row in con.execute("SELECT id FROM members")]
    started = time.perf_counter()
    for d in range(days):
        as_of = END_ON - timedelta(days=days - d)
        rows = []
        for member_id in ids:
            p = rng.random()
            rows.append((as_of.isoformat(), member_id, 3, 2, as_of.isoformat(),
                         as_of.isoformat(), 5, 300, 295.0, 300.0, 5_000, 15_000, 5_000,
                         5_000, 15_000, 3, 3, 3, 3, "loyal", p, 0.3, 0.9, 3.5, 5_000,
                         rng.randint(0, 90_000), "mature", as_of.isoformat(), "unknown",
                         "inertia", 0, 0.2, 0.0, 0.0, "social"))
        con.executemany(
            "INSERT INTO member_scores (as_of, member_id, purchases, frequency, "
            "first_purchase_on, last_purchase_on, recency_days, tenure_days, t_x_days, "
            "age_days, monetary_minor, total_net_minor, net_90_minor, net_prev_90_minor, "
            "net_365_minor, r_score, f_score, m_score, fm_score, rfm_segment, p_alive, "
            "expected_30, expected_90, expected_365, expected_spend_minor, clv_minor, "
            "lifecycle_stage, next_purchase_on, satisfaction, loyalty_type, "
            "replenishment_categories, bond_financial, bond_social, bond_structural, "
            "next_bond) VALUES (" + ",".join("?" * 35) + ")", rows)
        con.execute("INSERT INTO analytics_runs (id, as_of, started_at, finished_at, status, "
                    "stages, params, members, error) VALUES (?, ?, ?, ?, 'succeeded', '{}', "
                    "'{}', ?, '')", (uuid.uuid4().hex, as_of.isoformat(),
                                     NOW.replace(tzinfo=None).isoformat(" "),
                                     NOW.replace(tzinfo=None).isoformat(" "), len(ids)))
        con.commit()
        console.print(f"  snapshot {as_of}: {len(ids):,} rows "
                      f"({time.perf_counter() - started:.0f} s)")
    con.close()


def measure(db: Database, clock: FixedClock, member_ids: list[uuid.UUID], *, pages: int,
            warmup: int, seed: int) -> dict[str, Any]:
    settings = Settings(environment="production", database_url=str(db.engine.url),
                        default_region="CN", default_language="en", default_timezone=TZ,
                        secret_key="bench-" + "x" * 40)
    app = create_app(settings, db=db, clock=clock)
    with db.write() as s:
        user = s.scalar(select(User).where(User.role == "owner").limit(1))
        assert user is not None
        token, _csrf = auth.start_session(s, clock=clock, user=user, hours=8)
    statements: list[int] = [0]

    def count(*_args: Any) -> None:
        statements[0] += 1

    event.listen(db.engine, "before_cursor_execute", count)
    rng = random.Random(seed)
    wall: list[float] = []
    cpu: list[float] = []
    per_page: list[int] = []
    with TestClient(app) as client:
        client.cookies.set(SESSION_COOKIE, token)
        for i in range(warmup + pages):
            member_id = rng.choice(member_ids)
            statements[0] = 0
            c0, t0 = time.process_time(), time.perf_counter()
            r = client.get(f"/members/{member_id}")
            t1, c1 = time.perf_counter(), time.process_time()
            assert r.status_code == 200, r.text[:500]
            if i >= warmup:
                wall.append((t1 - t0) * 1000)
                cpu.append((c1 - c0) * 1000)
                per_page.append(statements[0])
    event.remove(db.engine, "before_cursor_execute", count)
    return {"wall": wall, "cpu": cpu, "statements": per_page}


def q(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def report(name: str, members: int, result: dict[str, Any]) -> None:
    table = Table(title=f"GET /members/{{id}} — {name} ({members:,} members, "
                        f"{len(result['wall'])} pages)")
    for col in ("", "p50", "p95", "p99", "max"):
        table.add_column(col, justify="right")
    for label, key in (("wall ms", "wall"), ("CPU ms", "cpu")):
        v = result[key]
        table.add_row(label, *(f"{q(v, p):.1f}" for p in (0.5, 0.95, 0.99)), f"{max(v):.1f}")
    s = [float(x) for x in result["statements"]]
    table.add_row("SQL statements", *(f"{q(s, p):.0f}" for p in (0.5, 0.95, 0.99)),
                  f"{max(s):.0f}")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", action="store_true", help="the demo shop instead of 1 M")
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=300,
                        help="members given a history on the large database")
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args(argv)
    console.print(f"machine: {machine()}")
    OUT.mkdir(exist_ok=True)
    name = "member-page-demo" if args.demo else f"member-page-{args.members}"
    path = OUT / f"{name}.db"
    if args.rebuild:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    clock = FixedClock(NOW)
    db = Database.from_url(f"sqlite:///{path}")
    try:
        if args.demo:
            build_demo_db(db, clock)
            with db.read() as s:
                ids = [i for i in s.scalars(
                    select(Sale.member_id).where(Sale.member_id.is_not(None))
                    .group_by(Sale.member_id).limit(5_000)) if i is not None]
                total = member_count(s)
        else:
            migrate.upgrade(db.engine)
            with db.read() as s:
                total = member_count(s)
            if total == 0:
                seconds = build_members(db, args.members, args.seed)
                console.print(f"built {args.members:,} members in {seconds:.1f} s")
                total = args.members
            ids = enrich(db, clock, args.sample, args.seed)
            score_snapshots(db)
            settle(db)
        with db.engine.begin() as conn:
            # migration 0017's index; an earlier version of this bench dropped it to measure
            # the page without it, so a cached database may lack it
            conn.execute(text("CREATE INDEX IF NOT EXISTS ix_members_referred_by_id "
                              "ON members (referred_by_id) WHERE referred_by_id IS NOT NULL"))
            conn.execute(text("PRAGMA optimize"))
        result = measure(db, clock, ids, pages=args.pages, warmup=args.warmup, seed=args.seed)
        report("demo data" if args.demo else "SQLite", total, result)
    finally:
        db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
