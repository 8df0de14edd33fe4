"""Promotions engine latency: baskets of 5/20/50 lines against 50/200/500 active promotions.

Pure CPU: no database. A seeded catalogue (2,000 products in 40 categories) and a seeded
mix of every promotion kind (a tenth exclusive, some scheduled by hour or weekday, some for
tiers only, a few covering the whole basket) are generated; baskets draw most lines from the
promoted products so that promotions really apply, overlap and compete. Each cell prices
the same baskets through ``price_basket`` with a ``PromotionBook`` built once (as the
service caches it) and prints p50/p99 wall-clock ms, CPU ms per basket and how many
promotions applied on average; the book's build time is printed per promotion count.

    .venv/bin/python bench/promotions.py
    .venv/bin/python bench/promotions.py --baskets 500 --seed 7
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from patron.offers.promotions import (
    BasketLine,
    MemberFacts,
    PricingContext,
    Promotion,
    PromotionBook,
    PromotionUsage,
    parse_promotion,
    price_basket,
)

LINES = (5, 20, 50)
PROMOTIONS = (50, 200, 500)
TARGET_MS = 5.0  # 50 lines x 200 promotions at the service (the issue's budget)
console = Console(width=max(120, Console().width))


class Catalogue:
    """Seeded products and categories; the first ``hot`` products carry the promotions."""

    def __init__(self, rng: random.Random, products: int = 2_000, categories: int = 40,
                 hot: int = 300) -> None:
        self.categories = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(categories)]
        self.products = [(uuid.UUID(int=rng.getrandbits(128)), rng.choice(self.categories),
                          rng.choice((199, 350, 500, 990, 1_280, 2_500, 4_999, 12_800)))
                         for _ in range(products)]
        self.hot = self.products[:hot]


def _ids(items: list[Any]) -> list[str]:
    return [str(x) for x in items]


def make_promotion(rng: random.Random, cat: Catalogue, n: int) -> Promotion:
    """One promotion of a random kind, targeted at a few hot products or one category."""
    def target() -> dict[str, list[str]]:
        if rng.random() < 0.6:
            return {"products": _ids([p[0] for p in rng.sample(cat.hot, rng.randint(1, 5))])}
        return {"categories": [str(rng.choice(cat.categories))]}

    kind = rng.choices(
        ["member_price", "nth_item", "volume", "buy_x_get_y", "bundle", "category_discount",
         "spend_discount", "spend_gift", "cashback"],
        weights=[20, 12, 8, 15, 10, 20, 8, 4, 3])[0]
    config: dict[str, Any] = {"kind": kind}
    if kind == "member_price":
        config["rules"] = [{"items": target(), "percent_off": {"*": 5, "gold": 12}}]
    elif kind == "nth_item":
        config |= {"items": target(), "nth": rng.choice((2, 3)), "percent_off": 50}
    elif kind == "volume":
        config |= {"items": target(), "tiers": [{"min_quantity": 2, "percent_off": 5},
                                                {"min_quantity": 5, "percent_off": 10}]}
    elif kind == "buy_x_get_y":
        config |= {"buy": target(), "buy_quantity": rng.choice((1, 2))}
        if rng.random() < 0.4:
            config["get"] = {"products": [str(rng.choice(cat.hot)[0])]}
    elif kind == "bundle":
        config |= {"components": [{"items": target(), "quantity": 3}], "price_minor": 1_000}
    elif kind == "category_discount":
        config |= {"items": {"categories": [str(rng.choice(cat.categories))]},
                   "percent_off": rng.choice((5, 10, 15))}
    elif kind == "spend_discount":
        universal = rng.random() < 0.3
        config |= {"items": {} if universal else target(),
                   "steps": [{"spend_minor": 10_000, "amount_off_minor": 1_000},
                             {"spend_minor": 30_000, "amount_off_minor": 4_000}]}
    elif kind == "spend_gift":
        config |= {"spend_minor": 20_000, "gift_product_id": str(rng.choice(cat.products)[0]),
                   "gift_value_minor": 500}
    else:
        config |= {"purchase_number": 5, "window_days": 30, "percent": 5}
    spec: dict[str, Any] = {"id": str(uuid.UUID(int=rng.getrandbits(128))),
                            "name": f"{kind} {n}", "priority": rng.randint(1, 100),
                            "exclusive": rng.random() < 0.1, "config": config}
    if rng.random() < 0.2:
        spec["schedule"] = {"hours": [{"start": "09:00", "end": "21:00"}]}
    if rng.random() < 0.1:
        spec["audience"] = {"tiers": ["gold", "silver"]}
    if rng.random() < 0.1:
        spec["limits"] = {"per_member": 3, "budget_minor": 1_000_000}
    return parse_promotion(spec)


def make_basket(rng: random.Random, cat: Catalogue, lines: int) -> list[BasketLine]:
    chosen = []
    for n in range(lines):
        product, category, price = rng.choice(cat.hot if rng.random() < 0.8 else cat.products)
        chosen.append(BasketLine(f"L{n}", product, category, rng.choice((1, 1, 1, 2, 3, 6)),
                                 price))
    return chosen


def measure(book: PromotionBook, context: PricingContext,
            baskets: list[list[BasketLine]]) -> tuple[float, float, float, float]:
    """(p50 ms, p99 ms, CPU ms per basket, promotions applied per basket)."""
    for basket in baskets[:10]:  # warm up caches (zoneinfo, pydantic attribute paths)
        price_basket(basket, context=context, book=book)
    wall = []
    applied = 0
    cpu_start = time.process_time()
    for basket in baskets:
        t0 = time.perf_counter()
        priced = price_basket(basket, context=context, book=book)
        wall.append((time.perf_counter() - t0) * 1_000)
        applied += len(priced.applied)
    cpu = (time.process_time() - cpu_start) * 1_000 / len(baskets)
    wall.sort()
    p99 = wall[min(len(wall) - 1, int(len(wall) * 0.99))]
    return statistics.median(wall), p99, cpu, applied / len(baskets)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baskets", type=int, default=300, help="baskets priced per cell")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    cat = Catalogue(rng)
    all_promotions = [make_promotion(rng, cat, n) for n in range(max(PROMOTIONS))]
    limited = {p.id: PromotionUsage(member_uses=1, total_uses=10, budget_spent_minor=5_000)
               for p in all_promotions if p.limits.limited}
    context = PricingContext(
        occurred_at=datetime(2026, 11, 21, 6, 30, tzinfo=UTC), store_id=uuid.uuid4(),
        store_timezone="Asia/Shanghai", holidays=frozenset({date(2026, 10, 1)}),
        member=MemberFacts(member_id=uuid.uuid4(), joined_on=date(2024, 3, 1),
                           tier_code="gold", previous_purchases=12,
                           purchases_within_days={30: 4}),
        usage=limited)
    baskets = {n: [make_basket(rng, cat, n) for _ in range(args.baskets)] for n in LINES}

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    console.print(f"Python {platform.python_version()} on {platform.machine()}, "
                  f"{os.cpu_count()} cores, load average {load:.1f}; "
                  f"{args.baskets} baskets per cell, seed {args.seed}")
    table = Table(title="price_basket latency (ms per basket)")
    for column in ("lines", "promotions", "book build ms", "p50 ms", "p99 ms", "CPU ms",
                   "applied / basket"):
        table.add_column(column, justify="right")
    for count in PROMOTIONS:
        t0 = time.perf_counter()
        book = PromotionBook(all_promotions[:count])
        build_ms = (time.perf_counter() - t0) * 1_000
        for lines in LINES:
            p50, p99, cpu, applied = measure(book, context, baskets[lines])
            style = "bold red" if lines == 50 and count == 200 and p99 > TARGET_MS else None
            table.add_row(str(lines), str(count), f"{build_ms:.1f}", f"{p50:.2f}",
                          f"{p99:.2f}", f"{cpu:.2f}", f"{applied:.1f}", style=style)
    console.print(table)
    console.print(f"target: 50 lines x 200 promotions under {TARGET_MS:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
