"""A purchase history built straight into an in-process analytics source (no OLTP database).

``Synthetic`` collects rows of the raw tables (as ``canonical.RAW_TABLES`` names them) and
``source()`` builds the canonical tables from them with the production SQL
(``canonical.build_canonical``), cut at the snapshot's cutoff like the real extract. So the
portrait pipeline runs on exactly the tables a refresh gives it, for thousands of members
in a fraction of a second, and tests can plant behaviour and check what comes out.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa

from patron.analytics import portraits, scores, source
from patron.analytics.canonical import CANONICAL_TABLES, RAW_TABLES, Kind, build_canonical, cut_sql
from patron.analytics.portraits import Computed, PortraitConfig, PreviousPortrait

TZ = "Asia/Shanghai"
_ARROW = {Kind.UUID: pa.string(), Kind.TS: pa.timestamp("us", tz="UTC"), Kind.INT: pa.int64(),
          Kind.BOOL: pa.bool_(), Kind.TEXT: pa.string(), Kind.DATE: pa.date32()}


def local(day: date, hour: int, tz: str = TZ) -> datetime:
    """The UTC instant of ``hour``:00 local time on ``day`` (Shanghai is UTC+8, no DST)."""
    from zoneinfo import ZoneInfo

    return datetime(day.year, day.month, day.day, hour, tzinfo=ZoneInfo(tz)).astimezone(UTC)


@dataclass
class Synthetic:
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    n: int = 0

    def id(self) -> str:
        self.n += 1
        return str(uuid.UUID(int=(0x0191 << 112) + self.n))

    def _add(self, table: str, **row: Any) -> str:
        row.setdefault("id", self.id())
        self.rows[table].append(row)
        return str(row["id"])

    def store(self, code: str = "S1", tz: str = TZ) -> str:
        return self._add("stores", code=code, name=code, timezone=tz)

    def category(self, name: str, code: str | None = None) -> str:
        return self._add("categories", code=code or name.lower().replace(" ", "_")[:30],
                         name=name)

    def product(self, category: str, name: str = "p", price: int = 1000) -> str:
        return self._add("products", sku=f"SKU{self.n}", name=name, category_id=category,
                         price_minor=price)

    def member(self, store: str, joined: datetime, *, status: str = "active") -> str:
        return self._add("members", joined_at=joined, home_store_id=store,
                         enrolled_store_id=store, status=status, preferences="")

    def sale(self, member: str | None, store: str, when: datetime,
             lines: Sequence[tuple[str, int, int]], *, coupon: int = 0, promotion: int = 0,
             tier: int = 0) -> str:
        """A sale of ``lines`` (product, quantity, unit price) with these discounts (minor
        units, taken off the first line)."""
        subtotal = sum(q * p for _, q, p in lines)
        off = coupon + promotion + tier
        sale = self._add("sales", store_id=store, member_id=member, occurred_at=when,
                         subtotal_minor=subtotal, discount_minor=off, total_minor=subtotal - off)
        for i, (product, qty, price) in enumerate(lines):
            disc = off if i == 0 else 0
            self._add("sale_lines", sale_id=sale, product_id=product, quantity=qty,
                      unit_price_minor=price, discount_minor=disc, total_minor=qty * price - disc)
        for kind, amount in (("coupon", coupon), ("promotion", promotion), ("tier", tier)):
            if amount:
                self._add("sale_discounts", sale_id=sale, kind=kind)
        return sale

    def message(self, member: str, when: datetime, *, channel: str = "sms",
                template: str = "campaign", purpose: str = "marketing",
                status: str = "sent") -> None:
        self._add("messages", member_id=member, channel=channel, template=template,
                  purpose=purpose, status=status, sent_at=when)

    @contextlib.contextmanager
    def source(self, as_of: date, tz: str = TZ) -> Iterator[source.Source]:
        import ibis

        cutoff = source.cutoff_for(as_of, tz)
        con = ibis.duckdb.connect()
        duck = con.con
        with tempfile.TemporaryDirectory() as workdir:
            source.configure(duck, workdir=workdir, memory_limit=None)
            for name, spec in RAW_TABLES.items():
                columns = {c: _ARROW[k] for c, k in spec.columns}
                rows = self.rows.get(name, [])
                table = pa.table({c: pa.array([r.get(c) for r in rows], type=t)
                                  for c, t in columns.items()})
                duck.register(f"arrow_{name}", table)
                casts = ", ".join(f'CAST("{c}" AS {k.value}) AS "{c}"' for c, k in spec.columns)
                duck.execute(f"CREATE TABLE base_{name} AS SELECT {casts} FROM arrow_{name}")
                duck.unregister(f"arrow_{name}")
                duck.execute(f"CREATE VIEW {spec.raw_name} AS "
                             f"{cut_sql(spec, f'SELECT * FROM base_{name}', cutoff)}")
            build_canonical(duck, CANONICAL_TABLES, cutoff)
            src = source.Source(con=con, as_of=as_of, cutoff=cutoff, timezone=tz,
                                backend="duckdb", loaded=CANONICAL_TABLES)
            try:
                yield src
            finally:
                con.disconnect()


def run(history: Synthetic, as_of: date, *, previous: Sequence[PreviousPortrait] = (),
        config: PortraitConfig | None = None) -> tuple[Computed, pa.Table]:
    """The refresh's path on a synthetic history: scores, then profiles and portraits."""
    with history.source(as_of) as src:
        member_history = scores.member_history(src)
        table = scores.score(member_history, scores.fit(member_history))
        collected = portraits.collect(src, config)
    return portraits.compute(collected, table, as_of=as_of, previous=previous,
                             config=config), table


def previous_of(computed: Computed) -> list[PreviousPortrait]:
    return [PreviousPortrait(code=r["code"], centroid=r["centroid"])
            for r in computed.portraits]


def by_member(computed: Computed) -> dict[str, dict[str, Any]]:
    return {row["member_id"]: row for row in computed.profiles.to_pylist()}


def days_before(as_of: date, days: int) -> date:
    return as_of - timedelta(days=days)


# ---------------------------------------------------------------- in the real database


@dataclass(frozen=True)
class Seeded:
    """Members of three planted behaviours in the OLTP tables (ids as UUIDs)."""

    weekend_baby: list[uuid.UUID]  # store A, Saturday mornings, baby formula, full price
    evening_coffee: list[uuid.UUID]  # store A, weekday evenings, coffee every few days
    deals: list[uuid.UUID]  # store B, weekday middays, promotions and coupons
    never: uuid.UUID  # joined, never bought
    responsive: uuid.UUID  # an evening-coffee member who buys after each SMS


def seed_database(db: Any, store_a: uuid.UUID, store_b: uuid.UUID, as_of: date,
                  per_group: int = 20) -> Seeded:
    """Write ``per_group`` members of each behaviour through ``tests.analytics.history``."""
    from sqlalchemy import insert

    from tests.analytics.history import History, T

    def at_local(day: date, hour: int) -> datetime:
        return local(day, hour)

    def weekday_on(day: date, allowed: set[int]) -> date:
        while day.weekday() not in allowed:
            day -= timedelta(days=1)
        return day

    groups: dict[str, list[uuid.UUID]] = {"weekend_baby": [], "evening_coffee": [],
                                          "deals": []}
    with db.engine.begin() as conn:
        h = History(conn)
        formula = h.product("Baby formula", 12000)
        coffee = h.product("Coffee", 3000)
        snacks = h.product("Snacks", 6000)
        for i in range(per_group):
            joined = at_local(as_of - timedelta(days=400 + i), 9)
            baby = h.member(store_a, joined)
            groups["weekend_baby"].append(baby)
            for k in range(8 + i % 3):
                day = weekday_on(as_of - timedelta(days=3 + 14 * k + i % 2), {5})
                h.sale(baby, store_a, at_local(day, 10), [(formula, 1, 12000 + 100 * i)])
            commuter = h.member(store_a, joined)
            groups["evening_coffee"].append(commuter)
            for k in range(25 + i % 5):
                day = weekday_on(as_of - timedelta(days=1 + 4 * k + i % 3), {0, 1, 2, 3, 4})
                h.sale(commuter, store_a, at_local(day, 19), [(coffee, 1, 3000)])
            hunter = h.member(store_b, joined)
            groups["deals"].append(hunter)
            for k in range(8):
                day = weekday_on(as_of - timedelta(days=2 + 21 * k + i % 4), {1, 2, 3})
                h.sale(hunter, store_b, at_local(day, 13), [(snacks, 1, 6000)],
                       discounts=[("promotion" if k % 3 else "coupon", 1500)])
        never = h.member(store_a, at_local(as_of - timedelta(days=30), 9))
        responsive = groups["evening_coffee"][0]
        for k in range(4):  # an SMS two days before four of their purchases
            sent = at_local(weekday_on(as_of - timedelta(days=1 + 4 * (3 * k + 2)),
                                       {0, 1, 2, 3, 4}), 10) - timedelta(days=2)
            conn.execute(insert(T["messages"]), [{
                "id": h.id(), "dedupe_key": f"test:{k}", "channel": "sms",
                "purpose": "marketing", "template": "campaign", "language": "en",
                "member_id": responsive, "recipient": "+8613800000000", "body": "hi",
                "payload": {}, "status": "sent", "attempts": 1, "not_before": sent,
                "created_at": sent, "updated_at": sent, "sent_at": sent}])
    return Seeded(weekend_baby=groups["weekend_baby"],
                  evening_coffee=groups["evening_coffee"], deals=groups["deals"],
                  never=never, responsive=responsive)
