"""Where a checkout's time goes, in process: statements per sale and time per phase.

    .venv/bin/python bench/profile_checkout.py [--sales 500] [--database-url URL] [--profile]

Seeds the same store, members and products as ``bench/checkout.py`` and runs the API's
checkout path (idempotency claim, ``sales.checkout``, ``sales.receipt``, commit) without
HTTP, counting the SQL statements each sale sends by kind. ``--profile`` prints the top
functions by cumulative time (cProfile). It explains the HTTP benchmark's figures.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import pstats
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import event

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from checkout import seed  # noqa: E402

from patron.auth import service as auth  # noqa: E402
from patron.core import idempotency  # noqa: E402
from patron.core.clock import SystemClock  # noqa: E402
from patron.core.db import Database  # noqa: E402
from patron.sales import service as sales  # noqa: E402
from patron.sales.schemas import SaleCreate  # noqa: E402
from patron.wallet.enums import SpendOrder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sales", type=int, default=500)
    parser.add_argument("--database-url")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp(prefix='patron-prof-')}/p.db"
    key, ids, prices, funded, _coupons = seed(url, n_members=500)
    db = Database.from_url(url)
    clock = SystemClock()
    till = sales.TillConfig(currency="CNY", region="CN", timezone="Asia/Shanghai",
                            spend_order=SpendOrder.PRINCIPAL_FIRST)
    with db.read() as s:
        principal = auth.principal_for_api_key(s, clock=clock, token=key)
    counts: collections.Counter[str] = collections.Counter()

    @event.listens_for(db.engine, "before_cursor_execute")
    def _count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        counts[statement.split(None, 1)[0].upper()] += 1
        counts["~" + statement[:90].replace("\n", " ")] += 1

    rng = random.Random(1)
    skus = sorted(prices)
    times = []
    prof = cProfile.Profile() if args.profile else None
    for n in range(args.sales):
        member = rng.choice(ids)
        lines = [{"sku": rng.choice(skus), "quantity": rng.randint(1, 3)}
                 for _ in range(rng.randint(1, 4))]
        total = sum(prices[str(ln["sku"])] * int(ln["quantity"]) for ln in lines)
        payments = {"card_minor": total}
        if member in funded:
            payments = {"wallet_minor": total // 2, "card_minor": total - total // 2}
        body = SaleCreate.model_validate({"member_id": member, "lines": lines,
                                          "payments": payments})
        if n == 20:
            counts.clear()
            if prof:
                prof.enable()
        t0 = time.perf_counter()

        def work(session, body=body):  # type: ignore[no-untyped-def]
            sale = sales.checkout(session, clock=clock, actor=principal, till=till, data=body)
            return 201, sales.receipt(session, clock=clock, sale=sale,
                                      currency="CNY").model_dump_json().encode()

        with db.read() as s:  # the API resolves the key in its own session first
            auth.principal_for_api_key(s, clock=clock, token=key)
        idempotency.run(db, clock=clock, scope=f"key:{principal.id}", key=uuid.uuid4().hex,
                        fingerprint_=uuid.uuid4().hex, work=work)
        if n >= 20:
            times.append(time.perf_counter() - t0)
    if prof:
        prof.disable()
    measured = args.sales - 20
    console = Console()
    table = Table(title=f"checkout in process, {measured} sales, {db.engine.dialect.name}")
    table.add_column("statement")
    table.add_column("per sale", justify="right")
    for name, c in counts.most_common():
        if not name.startswith("~"):
            table.add_row(name, f"{c / measured:.1f}")
    console.print(table)
    detail = Table(title="statements by text (first 90 characters)")
    detail.add_column("statement")
    detail.add_column("per sale", justify="right")
    for name, c in counts.most_common(40):
        if name.startswith("~"):
            detail.add_row(name[1:], f"{c / measured:.2f}")
    console.print(detail)
    ms = sorted(t * 1000 for t in times)
    console.print(f"sales/s one thread: {measured / sum(times):.0f}; p50 "
                  f"{statistics.median(ms):.1f} ms, p99 {ms[int(len(ms) * 0.99) - 1]:.1f} ms")
    if prof:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(35)


if __name__ == "__main__":
    main()
