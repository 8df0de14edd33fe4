"""Checkout throughput over HTTP beside pgbench, on SQLite and PostgreSQL.

    .venv/bin/python bench/checkout.py [--seconds 20] [--clients 8] [--workers 2]
    .venv/bin/python bench/checkout.py --seconds 10 --promotions 0 200

For each database it starts ``uvicorn`` on a fresh database, seeds a store, a POS key,
2,000 members (20 % with stored value, each with coupons) and 60 products, then drives
``--clients`` threads that each post checkouts for ``--seconds``: every basket earns
points, 20 % pay partly from the wallet, 10 % redeem a coupon (10 % off, capped at 20.00),
each with its own Idempotency-Key. It prints sales/s and p50/p99 latency, and
for PostgreSQL the pgbench TPC-B figure at the same number of clients as the ceiling.

``--promotions N [N ...]`` runs once per count with that many active promotions over the
60 products (a seeded mix of every kind, a tenth exclusive, one in twenty with a total
limit that is never reached, so its counter row is locked by the sales it may apply to).
In that mode a till does what a real one must: it asks ``POST /sales/quote`` for the total
first, then posts the sale; sales/s counts sales, latency is the sale's alone, and the
quote's p50 is shown beside it. Pass 0 as one of the counts for the baseline of the same
flow.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, select, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from patron.auth import service as auth  # noqa: E402
from patron.auth.enums import Role  # noqa: E402
from patron.auth.models import User  # noqa: E402
from patron.catalog.models import Category, Product  # noqa: E402
from patron.core import migrate, registry  # noqa: E402, F401
from patron.core.clock import SystemClock  # noqa: E402
from patron.core.db import Database  # noqa: E402
from patron.members import service as members  # noqa: E402
from patron.members.schemas import MemberCreate, StoreCreate  # noqa: E402
from patron.offers import promotion_service as promotions  # noqa: E402
from patron.offers import service as offers  # noqa: E402
from patron.offers.enums import CouponKind, Validity  # noqa: E402
from patron.offers.promotion_schemas import PromotionCreate  # noqa: E402
from patron.offers.schemas import CouponTemplateCreate  # noqa: E402
from patron.wallet import service as wallet  # noqa: E402

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Seeded = tuple[str, list[str], dict[str, int], set[str], dict[str, list[str]]]


def seed(url: str, n_members: int = 2000) -> Seeded:
    """Store, POS key, members, products and coupons; returns (key, member ids, prices by
    SKU, ids of members with stored value, unused coupon codes by member id)."""
    db = Database.from_url(url)
    migrate.upgrade(db.engine)
    clock = SystemClock()
    rng = random.Random(7)
    with db.write() as s:
        store = members.create_store(s, clock=clock, actor=None, data=StoreCreate(
            code="B1", name="Bench", timezone="Asia/Shanghai"))
        owner = auth.create_user(s, clock=clock, actor=None, username="bench-owner",
                                 display_name="Owner", password="bench-bench", role=Role.OWNER)
        boss = auth.principal_for_user(owner)
        _, key = auth.create_api_key(s, clock=clock, actor=boss, store_id=store.id,
                                     name="bench till")
        cat = Category(code="GROC", name="Grocery", replenish_days=14)
        s.add(cat)
        s.flush()
        prices = {}
        for i in range(60):
            sku = f"P{i:03d}"
            prices[sku] = rng.randint(200, 20_000)
            s.add(Product(sku=sku, name=f"Product {i}", category_id=cat.id,
                          price_minor=prices[sku], active=True))
        template = offers.create_template(s, clock=clock, actor=boss, data=CouponTemplateCreate(
            name="10 % off", kind=CouponKind.PERCENT, percent=10, cap_minor=2000,
            validity=Validity.DAYS, valid_days=365))
        ids, funded = [], set()
        coupons: dict[str, list[str]] = {}
        for i in range(n_members):
            m = members.enroll_member(s, clock=clock, actor=None, region="CN", data=MemberCreate(
                name=f"Bench {i}", phone=f"139{i:08d}", home_store_id=store.id))
            ids.append(str(m.id))
            if i % 5 == 0:
                wallet.top_up(s, clock=clock, actor=None, member_id=m.id,
                              amount_minor=10_000_000)
                funded.add(str(m.id))
            coupons[str(m.id)] = [c.code for c in offers.issue_coupons(
                s, clock=clock, actor=None, template_id=template.id, member_id=m.id, count=3)]
    db.dispose()
    return key, ids, prices, funded, coupons


def _promotion(rng: random.Random, n: int, products: list[str]) -> dict[str, Any]:
    """One promotion of the bench's mix: kinds in turn, each over 1-3 products."""
    def some(k: int = 3) -> dict[str, list[str]]:
        return {"products": rng.sample(products, rng.randint(1, k))}

    kind = n % 9
    configs: list[dict[str, Any]] = [
        {"kind": "member_price", "rules": [{"items": some(), "percent_off": {"*": 5}}]},
        {"kind": "nth_item", "items": some(), "nth": 2, "percent_off": 50},
        {"kind": "volume", "items": some(), "tiers": [{"min_quantity": 2, "percent_off": 5},
                                                      {"min_quantity": 3, "percent_off": 10}]},
        {"kind": "buy_x_get_y", "buy": some(), "buy_quantity": 2, "get_quantity": 1},
        {"kind": "bundle", "components": [{"items": some(1)}, {"items": some(1)}],
         "price_minor": rng.randint(500, 5_000)},
        {"kind": "category_discount", "items": some(), "percent_off": rng.randint(5, 20)},
        {"kind": "spend_discount", "items": some(5),
         "steps": [{"spend_minor": 3_000, "amount_off_minor": 200}]},
        {"kind": "spend_gift", "items": some(5), "spend_minor": 20_000,
         "gift_product_id": rng.choice(products), "gift_value_minor": 300},
        {"kind": "cashback", "items": some(5), "purchase_number": 3, "window_days": 30,
         "percent": 5},
    ]
    spec: dict[str, Any] = {"name": f"Bench promotion {n}", "priority": rng.randint(0, 1000),
                            "exclusive": rng.random() < 0.1, "config": configs[kind]}
    if n % 20 == 19:
        spec["limits"] = {"total": 1_000_000_000}
    return spec


def add_promotions(url: str, upto: int) -> None:
    """Bring the active promotions up to ``upto`` (the mix is seeded: the same every run)."""
    db = Database.from_url(url)
    clock = SystemClock()
    rng = random.Random(11)
    with db.write() as s:
        user = s.scalar(select(User).where(User.username == "bench-owner"))
        assert user is not None
        owner = auth.principal_for_user(user)
        products = [str(p) for p in s.scalars(select(Product.id).order_by(Product.sku))]
        have = len(promotions.list_promotions(s, actor=owner))
        specs = [_promotion(rng, n, products) for n in range(upto)]
        for spec in specs[have:]:
            promotions.create_promotion(s, clock=clock, actor=owner,
                                        data=PromotionCreate(**spec))
    db.dispose()


def serve(url: str, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = os.environ | {"PATRON_DATABASE_URL": url, "PATRON_ENVIRONMENT": "production",
                        "PATRON_SECRET_KEY": uuid.uuid4().hex}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "patron.api.app:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
         "--log-level", "warning", "--no-access-log"], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(base + "/api/v1/openapi.json", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def drive(base: str, seeded: Seeded, clients: int, seconds: float, quote: bool = False,
          ) -> tuple[int, list[float], dict[str, int], list[float]]:
    """Post checkouts from ``clients`` threads; returns (sales, latencies, errors by kind,
    quote latencies). With ``quote`` each sale is quoted first and paid at the quote."""
    key, ids, prices, funded, coupons = seeded
    latencies: list[float] = []
    quoted: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {key}"}
    skus = sorted(prices)

    def client(n: int) -> None:
        rng = random.Random(n)
        local: list[float] = []
        local_quotes: list[float] = []
        bad: collections.Counter[str] = collections.Counter()
        with httpx.Client(headers=headers, timeout=30) as c:
            while time.monotonic() < stop:
                member = rng.choice(ids)
                lines = [{"sku": rng.choice(skus), "quantity": rng.randint(1, 3)}
                         for _ in range(rng.randint(1, 4))]
                total = sum(prices[str(ln["sku"])] * int(ln["quantity"]) for ln in lines)
                payments = {"card_minor": total}
                body: dict[str, object] = {"member_id": member, "lines": lines}
                if rng.random() < 0.10:  # one basket in ten redeems a coupon
                    with lock:
                        code = coupons[member].pop() if coupons[member] else None
                    if code:
                        body["coupon_codes"] = [code]
                        total -= min(2000, (total * 10 + 50) // 100)
                if quote:
                    t0 = time.perf_counter()
                    q = c.post(f"{base}/api/v1/sales/quote", json=body)
                    local_quotes.append(time.perf_counter() - t0)
                    if q.status_code == 422 and "coupon_codes" in q.text:
                        body.pop("coupon_codes", None)  # a promotion that takes no coupons
                        q = c.post(f"{base}/api/v1/sales/quote", json=body)
                    if q.status_code != 200:
                        bad[f"quote {q.status_code}"] += 1
                        continue
                    total = int(q.json()["total_minor"])
                payments = {"card_minor": total}
                if member in funded:  # one member in five pays half from stored value
                    payments = {"wallet_minor": total // 2, "card_minor": total - total // 2}
                body["payments"] = payments
                t0 = time.perf_counter()
                r = c.post(f"{base}/api/v1/sales", json=body,
                           headers={"Idempotency-Key": uuid.uuid4().hex})
                local.append(time.perf_counter() - t0)
                if r.status_code != 201:
                    problem = r.json() if r.headers.get("content-type", "").endswith("json") \
                        else {}
                    bad[f"{r.status_code} {problem.get('code') or problem.get('title')}"] += 1
        with lock:
            latencies.extend(local)
            quoted.extend(local_quotes)
            errors.update(bad)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(latencies), latencies, errors, quoted


def pgbench(clients: int, seconds: int) -> float | None:
    if shutil.which("pgbench") is None:
        return None
    admin = create_engine(PG_SERVER + "/test", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS patron_pgbench"))
        conn.execute(text("CREATE DATABASE patron_pgbench"))
    try:
        base = ["-h", "127.0.0.1", "-U", "postgres"]
        subprocess.run(["pgbench", *base, "-i", "-q", "-s", "10", "patron_pgbench"],
                       check=True, capture_output=True)
        out = subprocess.run(["pgbench", *base, "-c", str(clients), "-j", "2", "-T",
                              str(seconds), "patron_pgbench"], check=True,
                             capture_output=True, text=True).stdout
        match = re.search(r"tps = ([\d.]+)", out)
        return float(match.group(1)) if match else None
    finally:
        with admin.connect() as conn:
            conn.execute(text("DROP DATABASE IF EXISTS patron_pgbench WITH (FORCE)"))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--promotions", type=int, nargs="+", metavar="N",
                        help="run once per count with N active promotions, quoting each sale")
    args = parser.parse_args()
    console = Console(width=160)
    table = Table(title=f"checkout over HTTP, {args.clients} clients, {args.seconds:.0f} s")
    for col in ("database", "server processes", "promotions", "sales/s", "p50 ms", "p99 ms",
                "quote p50 ms", "errors", "pgbench TPC-B tps", "ratio"):
        table.add_column(col, justify="right")
    tmp = Path(tempfile.mkdtemp(prefix="patron-bench-"))
    backends = [b for b in ("sqlite", "postgresql") if args.only in (None, b)]
    counts: list[int | None] = list(args.promotions) if args.promotions else [None]
    for backend in backends:
        if backend == "sqlite":
            url, workers = f"sqlite:///{tmp}/bench.db", 1
        else:
            admin = create_engine(PG_SERVER + "/test", isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text("DROP DATABASE IF EXISTS patron_bench WITH (FORCE)"))
                conn.execute(text("CREATE DATABASE patron_bench"))
            url, workers = PG_SERVER + "/patron_bench", args.workers
        console.print(f"[bold]{backend}[/]: seeding...")
        seeded = seed(url)
        for count in sorted(counts, key=lambda c: c or 0):
            if count:
                add_promotions(url, count)
            proc, base = serve(url, workers)
            try:
                console.print(f"[bold]{backend}[/]: driving {args.clients} clients"
                              f"{f' with {count} promotions' if count is not None else ''}...")
                n, lat, errors, quoted = drive(base, seeded, args.clients, args.seconds,
                                               quote=count is not None)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            rate = n / args.seconds
            lat_ms = sorted(x * 1000 for x in lat)
            p50 = statistics.median(lat_ms)
            p99 = lat_ms[int(len(lat_ms) * 0.99) - 1]
            quote_p50 = f"{statistics.median(quoted) * 1000:.1f}" if quoted else "-"
            ceiling = pgbench(args.clients, int(args.seconds)) \
                if backend == "postgresql" and count in (None, counts[0]) else None
            table.add_row(backend, str(workers), "-" if count is None else str(count),
                          f"{rate:.0f}", f"{p50:.1f}", f"{p99:.1f}", quote_p50,
                          str(sum(errors.values())), f"{ceiling:.0f}" if ceiling else "-",
                          f"{rate / ceiling:.0%}" if ceiling else "-")
            for kind, times in errors.items():
                console.print(f"[red]{backend}: {times} x {kind}[/]")
        if backend == "postgresql":
            admin = create_engine(PG_SERVER + "/test", isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text("DROP DATABASE IF EXISTS patron_bench WITH (FORCE)"))
    shutil.rmtree(tmp, ignore_errors=True)
    console.print(table)


if __name__ == "__main__":
    main()
