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

import numpy as np
import pyarrow as pa
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from patron.analytics import portraits, scores, source
from patron.analytics.canonical import (
    CANONICAL_TABLES,
    RAW_TABLES,
    Kind,
    build_canonical,
    cut_sql,
    ts_literal,
)
from patron.analytics.portraits import Computed, PortraitConfig, PreviousPortrait
from patron.analytics.profile import Collected, ProfileConfig, _utc_offset_sql, family_signals

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

    def refund(self, sale: str, when: datetime, lines: Sequence[tuple[int, int, int]]) -> None:
        """A refund of ``sale`` at ``when``: (line index, quantity, amount) per line."""
        sold = [r for r in self.rows["sale_lines"] if r["sale_id"] == sale]
        refund = self._add("refunds", sale_id=sale, occurred_at=when,
                           amount_minor=sum(amount for _, _, amount in lines))
        for index, quantity, amount in lines:
            self.rows["refund_lines"].append({"refund_id": refund,
                                              "sale_line_id": sold[index]["id"],
                                              "quantity": quantity, "amount_minor": amount})

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
                rows = self.rows.get(spec.source, [])
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


# ---------------------------------------------------------------- the reference profile
# ``profile.collect`` before it was restructured for speed, kept verbatim as the
# straightforward definition that the fast passes are compared with.


def _ranked(key: str, value: str, top: int) -> str:
    """Aggregates pivoting the ``top`` ranked rows of a member into columns ``key_1``,
    ``value_1``, … (``any_value`` with a filter per rank: an ordered ``list()`` aggregate
    sorts inside every group, which was the costliest step of the whole query)."""
    return ", ".join(f"any_value({key}) FILTER (WHERE rank = {r}) AS {key}_{r}, "
                     f"any_value({value}) FILTER (WHERE rank = {r}) AS {value}_{r}"
                     for r in range(1, top + 1))


def _favourites_json(alias: str, key: str, value: str, top: int, shown: str) -> str:
    """The pivoted favourites of :func:`_ranked` as a JSON array of ``{"id", value}``
    objects in rank order (``[]`` without any)."""
    items = ", ".join(
        f"CASE WHEN {alias}.{key}_{r} IS NOT NULL THEN {{'id': CAST({alias}.{key}_{r} AS "
        f"VARCHAR), '{value}': {shown.format(f'{alias}.{value}_{r}')}}} END"
        for r in range(1, top + 1))
    return (f"coalesce(CAST(to_json(list_filter([{items}], x -> x IS NOT NULL)) AS VARCHAR),"
            " '[]')")


def _reference_sql(src: source.Source, config: ProfileConfig) -> str:
    cutoff = src.cutoff
    since_365 = src.as_of - timedelta(days=365)
    window_start = ts_literal(cutoff - timedelta(days=config.message_window_days))
    window_end = ts_literal(cutoff - timedelta(days=config.response_days))
    top = config.favourites
    return f"""
    WITH basics AS (
        SELECT member_id, count(*) AS sales,
               count(*) FILTER (WHERE occurred_on > DATE '{since_365}') AS sales_365,
               sum(net_minor) AS spend_minor,
               coalesce(sum(net_minor) FILTER (WHERE coupon_used OR promoted), 0) AS promo_minor,
               count(*) FILTER (WHERE coupon_used) AS coupon_sales,
               sum(discount_minor) AS discount_minor, sum(gross_minor) AS gross_minor,
               count(*) FILTER (WHERE weekday >= 5) AS weekend_sales,
               count(*) FILTER (WHERE hour >= {config.evening_hour}) AS evening_sales,
               count(DISTINCT store_id) AS stores
        FROM pf_sales GROUP BY member_id),
    by_store AS (
        SELECT member_id, store_id, count(*) AS n, sum(net_minor) AS spend
        FROM pf_sales GROUP BY member_id, store_id
        QUALIFY row_number() OVER (PARTITION BY member_id
                                   ORDER BY n DESC, spend DESC, store_id) = 1),
    by_weekday AS (
        SELECT member_id, weekday FROM pf_sales GROUP BY member_id, weekday
        QUALIFY row_number() OVER (PARTITION BY member_id
                                   ORDER BY count(*) DESC, sum(net_minor) DESC, weekday) = 1),
    by_hour AS (
        SELECT member_id, hour FROM pf_sales GROUP BY member_id, hour
        QUALIFY row_number() OVER (PARTITION BY member_id
                                   ORDER BY count(*) DESC, sum(net_minor) DESC, hour) = 1),
    by_category AS (
        SELECT member_id, category_id, sum(spend) AS spend, sum(lines) AS lines
        FROM pf_products GROUP BY member_id, category_id HAVING sum(spend) > 0),
    ranked_categories AS (
        SELECT *, spend / sum(spend) OVER (PARTITION BY member_id) AS share,
               row_number() OVER (PARTITION BY member_id
                                  ORDER BY spend DESC, lines DESC, category_id) AS rank
        FROM by_category),
    categories AS (
        SELECT member_id, count(*) AS categories,
               {_ranked("category_id", "share", top)},
               sum(spend) AS category_spend,
               coalesce(sum(spend) FILTER (WHERE category_id IN (
                   SELECT category_id FROM pf_family)), 0) AS family_spend
        FROM ranked_categories GROUP BY member_id),
    products AS (
        SELECT member_id, {_ranked("product_id", "quantity", top)}
        FROM (SELECT member_id, product_id, quantity,
                     row_number() OVER (PARTITION BY member_id ORDER BY quantity DESC,
                                        spend DESC, product_id) AS rank
              FROM pf_products
              QUALIFY rank <= {top})
        GROUP BY member_id),
    family AS (
        SELECT p.member_id,
               string_agg(DISTINCT f.signal, ',' ORDER BY f.signal) AS family_signals
        FROM (SELECT DISTINCT member_id, category_id FROM pf_products) p
        JOIN pf_family f ON f.category_id = p.category_id
        GROUP BY p.member_id),
    sent AS (
        SELECT m.member_id, m.channel, m.template,
               p.occurred_at IS NOT NULL
               AND p.occurred_at <= m.sent_at + INTERVAL {config.response_days} DAY AS acted
        FROM (SELECT * FROM messages WHERE sent_at >= {window_start}
                                       AND sent_at < {window_end}) m
        ASOF LEFT JOIN pf_sales p
          ON p.member_id = m.member_id AND p.occurred_at > m.sent_at),
    channels AS (
        SELECT member_id,
               count(*) FILTER (WHERE channel = 'sms') AS sms_messages,
               count(*) FILTER (WHERE channel = 'sms' AND acted) AS sms_acted,
               count(*) FILTER (WHERE channel = 'email') AS email_messages,
               count(*) FILTER (WHERE channel = 'email' AND acted) AS email_acted
        FROM sent GROUP BY member_id),
    templates AS (
        SELECT member_id, template AS best_template FROM sent
        GROUP BY member_id, template HAVING count(*) FILTER (WHERE acted) > 0
        QUALIFY row_number() OVER (PARTITION BY member_id ORDER BY
            count(*) FILTER (WHERE acted) DESC,
            count(*) FILTER (WHERE acted) / count(*) DESC, template) = 1)
    SELECT CAST(m.member_id AS VARCHAR) AS member_id,
           CAST(m.home_store_id AS VARCHAR) AS home_store_id,
           coalesce(b.sales, 0) AS sales, coalesce(b.sales_365, 0) AS sales_365,
           coalesce(b.spend_minor, 0) AS spend_minor, b.promo_minor, b.coupon_sales,
           b.discount_minor, b.gross_minor, b.weekend_sales, b.evening_sales,
           coalesce(b.stores, 0) AS stores,
           coalesce(c.categories, 0) AS categories,
           CAST(c.category_id_1 AS VARCHAR) AS top_category_id,
           c.share_1 AS top_category_share,
           {_favourites_json("c", "category_id", "share", top, "round({}, 4)")}
               AS favourite_categories,
           c.category_spend, c.family_spend,
           CAST(p.product_id_1 AS VARCHAR) AS top_product_id,
           {_favourites_json("p", "product_id", "quantity", top, "{}")} AS favourite_products,
           CAST(s.store_id AS VARCHAR) AS preferred_store_id, s.n AS preferred_store_sales,
           w.weekday AS preferred_weekday, h.hour AS preferred_hour,
           coalesce(ch.sms_messages, 0) AS sms_messages,
           coalesce(ch.sms_acted, 0) AS sms_acted,
           coalesce(ch.email_messages, 0) AS email_messages,
           coalesce(ch.email_acted, 0) AS email_acted,
           t.best_template,
           coalesce(f.family_signals, '') AS family_signals,
           bb.baby_first_on, coalesce(bb.baby_days, 0) AS baby_days
    FROM members m
    LEFT JOIN basics b ON b.member_id = m.member_id
    LEFT JOIN by_store s ON s.member_id = m.member_id
    LEFT JOIN by_weekday w ON w.member_id = m.member_id
    LEFT JOIN by_hour h ON h.member_id = m.member_id
    LEFT JOIN categories c ON c.member_id = m.member_id
    LEFT JOIN products p ON p.member_id = m.member_id
    LEFT JOIN family f ON f.member_id = m.member_id
    LEFT JOIN pf_baby bb ON bb.member_id = m.member_id
    LEFT JOIN channels ch ON ch.member_id = m.member_id
    LEFT JOIN templates t ON t.member_id = m.member_id
    WHERE m.status = 'active'
    ORDER BY m.member_id"""


def reference_collect(src: source.Source, config: ProfileConfig | None = None) -> Collected:
    """``profile.collect`` as it was written first (window ranks and joins on ids, one
    statement): the straightforward reference the restructured passes must equal."""
    config = config or ProfileConfig()
    duck = src.duck
    categories = [(str(i), c or "", n or "") for i, c, n in duck.execute(
        "SELECT category_id, code, name FROM categories").fetchall()]
    family = family_signals(categories, config.family_keywords)
    pairs = pa.table({
        "category_id": pa.array([c for c, signals in family.items() for _ in signals],
                                type=pa.string()),
        "signal": pa.array([s for signals in family.values() for s in signals],
                           type=pa.string())})
    duck.register("pf_family_arrow", pairs)
    duck.execute("CREATE OR REPLACE TEMP TABLE pf_family AS SELECT CAST(category_id AS UUID) "
                 "AS category_id, signal FROM pf_family_arrow")
    duck.unregister("pf_family_arrow")
    duck.execute(f"""
        CREATE OR REPLACE TEMP TABLE pf_sales AS
        SELECT s.member_id, s.store_id, s.occurred_at, s.occurred_on, s.net_minor,
               s.gross_minor, s.discount_minor, s.coupon_used, s.promoted,
               CAST(isodow(s.occurred_on) - 1 AS INTEGER) AS weekday,
               CAST((epoch_ms(s.occurred_at) // 1000 + {_utc_offset_sql(src, "st")}) // 3600 % 24
                    AS INTEGER) AS hour
        FROM sales s JOIN stores st ON st.store_id = s.store_id
        WHERE s.member_id IS NOT NULL AND s.net_minor > 0""")
    # one pass over the lines: per member and product (categories are sums of these)
    duck.execute("""
        CREATE OR REPLACE TEMP TABLE pf_products AS
        SELECT member_id, product_id, any_value(category_id) AS category_id,
               sum(quantity) AS quantity, sum(net_minor) AS spend, count(*) AS lines
        FROM lines WHERE member_id IS NOT NULL AND quantity > 0
        GROUP BY member_id, product_id""")
    # days with a baby category: a scan of only those lines (none without such categories)
    baby = sorted(c for c, signals in family.items() if "baby" in signals)
    listed = ", ".join(f"'{c}'" for c in baby) or "NULL"
    duck.execute(f"""
        CREATE OR REPLACE TEMP TABLE pf_baby AS
        SELECT member_id, min(occurred_on) AS baby_first_on,
               count(DISTINCT occurred_on) AS baby_days
        FROM lines
        WHERE member_id IS NOT NULL AND quantity > 0 AND {"true" if baby else "false"}
          AND category_id IN ({listed})
        GROUP BY member_id""")
    table = duck.execute(_reference_sql(src, config)).to_arrow_table()
    for name in ("pf_sales", "pf_products", "pf_baby", "pf_family"):
        duck.execute(f"DROP TABLE IF EXISTS {name}")
    names = {category_id: name or code for category_id, code, name in categories}
    return Collected(table=table, category_names=names, family_categories=family)


# ------------------------------------------------------------------ clustering reference

_REFERENCE_SMALL = 50_000  # members: below this, clustering runs on one thread


def reference_cluster(x: portraits.Floats, *, previous: Sequence[PreviousPortrait],
                      config: PortraitConfig) -> portraits.Clustering | None:
    """``portraits.cluster`` as it was before it ran on one thread at every size and
    scored the candidates on the probe's distances computed once (verbatim): the
    reference the faster form must equal, cluster for cluster and float for float."""
    n = x.shape[0]
    k_max = min(config.k_max, n // 10)
    if n < config.min_members or k_max < config.k_min:
        return None

    # Small inputs run single-threaded: OpenMP's thread start-up and spinning cost more
    # than the work there, and a lot more on a busy machine.
    with threadpool_limits(limits=1 if n < _REFERENCE_SMALL else None):
        return _reference_cluster(x, previous=previous, config=config, k_max=k_max)


def _reference_cluster(x: portraits.Floats, *, previous: Sequence[PreviousPortrait],
                       config: PortraitConfig, k_max: int) -> portraits.Clustering:
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics import silhouette_score

    n = x.shape[0]
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = (x - mean) / scale
    rng = np.random.default_rng(config.seed)
    sample = z[rng.choice(n, config.fit_sample, replace=False)] if n > config.fit_sample else z
    trial = sample[:config.choose_sample]  # the sample is in random order already
    probe = (trial[rng.choice(trial.shape[0], config.silhouette_sample, replace=False)]
             if trial.shape[0] > config.silhouette_sample else trial)

    def kmeans(k: int, init: Any | None = None) -> Any:
        return MiniBatchKMeans(n_clusters=k, init="k-means++" if init is None else init,
                               n_init=3 if init is None else 1, batch_size=4096,
                               random_state=config.seed, max_no_improvement=20)

    silhouettes: dict[int, float] = {}
    for k in range(config.k_min, k_max + 1):
        labels = kmeans(k).fit(trial).predict(probe)
        silhouettes[k] = (float(silhouette_score(probe, labels))
                          if len(np.unique(labels)) > 1 else -1.0)
    best = max(silhouettes, key=lambda k: (silhouettes[k], -k))
    previous_k = len(previous)
    if previous_k in silhouettes and \
            silhouettes[previous_k] >= silhouettes[best] - config.keep_k_margin:
        best = previous_k
    codes, init = portraits._previous_z(previous, mean, scale)
    warm = len(codes) == best
    model = kmeans(best, init if warm else None).fit(sample)
    labels = np.asarray(model.predict(z), dtype=np.int64)
    used = np.unique(labels)  # a cluster no member landed in is dropped
    labels = np.searchsorted(used, labels).astype(np.int64)
    k = int(used.shape[0])
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    centroids_z = np.stack([np.bincount(labels, weights=z[:, j], minlength=k) / counts
                            for j in range(z.shape[1])], axis=1)
    return portraits.Clustering(k=k, labels=labels, centroids=centroids_z * scale + mean,
                                centroids_z=centroids_z, mean=mean, scale=scale,
                                silhouettes=silhouettes, warm_start=warm)
