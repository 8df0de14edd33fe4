"""Customer portraits on 1,000,000 members: profiles, tags, clustering, words, the write.

A history of five planted behaviours (weekend families buying baby formula, weekday-evening
coffee regulars, deal seekers, big baskets gone quiet, occasional shoppers; about 7 sales
and 12 lines a member over two years, one marketing message a member) is generated inside
DuckDB as the raw tables the refresh reads, and turned into the canonical tables with the
production SQL (``canonical.build_canonical``): the same tables a refresh has in memory
after its load stage (loading them from SQLite or PostgreSQL is that stage, measured by
``bench/analytics.py``). The DuckDB file is kept in ``bench/out/`` and reused.

Then, timed stage by stage exactly as ``service.refresh`` runs them: the scores the
portraits need (shared with the refresh, shown for scale), ``portraits.collect`` (the
DuckDB summaries), the profile columns and tags, choosing k and clustering, labels and
words, and ``portraits.write`` into a migrated SQLite file. A second night (the same
history matched to the first night's portraits) shows the steady state.

    .venv/bin/python bench/portraits.py                    # 1,000,000 members
    .venv/bin/python bench/portraits.py --members 100000
    .venv/bin/python bench/portraits.py --no-write         # skip the SQLite write
    .venv/bin/python bench/portraits.py --rebuild          # regenerate the history
"""

from __future__ import annotations

import argparse
import importlib
import os
import resource
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from rich.console import Console
from rich.table import Table

from patron.analytics import portraits, scores, source, tags
from patron.analytics.canonical import CANONICAL_TABLES, RAW_TABLES, build_canonical, cut_sql
from patron.core import migrate
from patron.core.db import Database, make_engine

AS_OF = date(2026, 11, 22)
OUT = Path(__file__).resolve().parent / "out"
TZ = "Asia/Shanghai"
console = Console(width=max(120, Console().width))
T = TypeVar("T")


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def uid(kind: int, expr: str) -> str:
    """A deterministic UUID of the shape patron's ids have (version 7: no two neighbours
    share a prefix, no pattern DuckDB could compress) from a hash of ``kind`` and an
    integer expression. Ids laid out as ``kind-0000-…-counter`` bit-pack, and reading
    bit-packed 128-bit values cost the summaries several times what real ids cost."""
    a, b = f"hash({expr}, {kind})", f"hash({expr}, {kind + 100})"
    return (f"CAST(printf('%08x-%04x-7%03x-%04x-%012x', {a} >> 32, ({a} >> 16) & 65535, "
            f"{a} & 4095, 32768 | ({b} >> 50), {b} & 281474976710655) AS UUID)")


def u(i: str, salt: int) -> str:
    """A uniform number in [0, 1) from a hash of ``i`` (deterministic, unlike random())."""
    return f"((hash({i}, {salt}) % 1000003) / 1000003.0)"


GENERATE = """
CREATE TABLE base_stores AS
SELECT {store} AS id, 'S' || i AS code, 'Store ' || i AS name, '{tz}' AS timezone
FROM range(3) t(i);

CREATE TABLE base_categories AS
SELECT {category} AS id, 'C' || i AS code,
       ['Baby formula', 'Coffee', 'Snacks', 'Wine', 'Household', 'Beauty', 'Bakery',
        'Fruit'][i + 1] AS name, NULL::BIGINT AS replenish_days
FROM range(8) t(i);

CREATE TABLE base_products AS
SELECT {product} AS id, 'SKU' || i AS sku, 'Product ' || i AS name,
       {product_category} AS category_id, (500 + (i * 337) % 20000)::BIGINT AS price_minor
FROM range(80) t(i);

-- persona: 0 weekend family, 1 evening coffee, 2 deal seeker, 3 big basket gone quiet,
-- 4 occasional
CREATE TABLE gen_members AS
SELECT i, i % 5 AS persona, (i % 3) AS store,
       CAST([8, 10, 5, 3, 2][i % 5 + 1] + floor({u1} * [6, 9, 5, 3, 3][i % 5 + 1])
            AS BIGINT) AS n,
       [14, 5, 20, 45, 60][i % 5 + 1] AS gap,
       CAST(floor({u2} * [10, 6, 30, 200, 300][i % 5 + 1]) + [0, 0, 0, 250, 0][i % 5 + 1]
            AS BIGINT) AS last
FROM range({members}) t(i);

CREATE TABLE base_members AS
SELECT {member} AS id,
       timezone('{tz}', CAST(DATE '{as_of}' - INTERVAL (700 + i % 30) DAY AS TIMESTAMP))
           AS joined_at,
       {member_store} AS home_store_id, {member_store} AS enrolled_store_id,
       NULL::UUID AS enrolled_by_id, NULL::UUID AS referred_by_id, 'active' AS status,
       '' AS preferences
FROM gen_members;

CREATE TABLE gen_sales AS
WITH s AS (
    SELECT i, persona, store, gap, last, unnest(range(n)) AS k FROM gen_members),
d AS (
    SELECT row_number() OVER () - 1 AS sale_no, i, persona, store, k,
           CAST(DATE '{as_of}' - INTERVAL (last + k * gap + (hash(i, k) % 3)) DAY AS DATE)
               AS raw_day
    FROM s)
SELECT sale_no, i, persona, store,
       CASE WHEN persona = 0 AND isodow(raw_day) <= 5
                THEN raw_day - CAST(isodow(raw_day) AS INTEGER)
            WHEN persona IN (1, 2) AND isodow(raw_day) >= 6
                THEN raw_day - CAST(isodow(raw_day) - 5 AS INTEGER)
            ELSE raw_day END AS day,
       CAST([9, 18, 11, 12, 10][persona + 1] + hash(i, k, 7) % [4, 4, 5, 5, 10][persona + 1]
            AS INTEGER) AS hour,
       CASE WHEN persona = 2 AND hash(i, k, 9) % 100 < 85 THEN 1 ELSE 0 END AS promoted,
       CASE WHEN hash(i, k, 11) % 100 < 3 THEN 1 ELSE 0 END AS coupon
FROM d;

CREATE TABLE gen_lines AS
SELECT sale_no, i, persona, line_no,
       CASE persona
           WHEN 0 THEN (CASE WHEN line_no = 0 THEN 0 ELSE 20 END) + hash(sale_no, 3) % 10
           WHEN 1 THEN 10 + hash(sale_no, 3) % 10
           WHEN 2 THEN 20 + hash(sale_no, line_no) % 40
           WHEN 3 THEN 30 + hash(sale_no, line_no) % 50
           ELSE hash(sale_no, line_no) % 80 END AS product,
       1 + hash(sale_no, line_no, 5) % 2 AS quantity
FROM (SELECT sale_no, i, persona,
             unnest(range(CASE persona WHEN 1 THEN 1 WHEN 3 THEN 3 ELSE 2 END)) AS line_no
      FROM gen_sales);

CREATE TABLE base_sale_lines AS
SELECT {line} AS id, {line_sale} AS sale_id, {line_product} AS product_id,
       CAST(l.quantity AS BIGINT) AS quantity, p.price_minor AS unit_price_minor,
       0::BIGINT AS discount_minor, CAST(l.quantity * p.price_minor AS BIGINT) AS total_minor
FROM (SELECT row_number() OVER () - 1 AS line_id, * FROM gen_lines) l
JOIN (SELECT row_number() OVER () - 1 AS p, price_minor FROM base_products) p
  ON p.p = l.product;

CREATE TABLE base_sales AS
WITH totals AS (SELECT sale_id, sum(total_minor) AS subtotal FROM base_sale_lines
                GROUP BY sale_id)
SELECT {sale} AS id, {sale_store} AS store_id, {sale_member} AS member_id,
       timezone('{tz}', CAST(s.day AS TIMESTAMP) + INTERVAL (s.hour) HOUR) AS occurred_at,
       CAST(t.subtotal AS BIGINT) AS subtotal_minor,
       CAST((s.promoted * 0.25 + s.coupon * 0.1) * t.subtotal AS BIGINT) AS discount_minor,
       CAST(t.subtotal - CAST((s.promoted * 0.25 + s.coupon * 0.1) * t.subtotal AS BIGINT)
            AS BIGINT) AS total_minor
FROM gen_sales s JOIN totals t ON t.sale_id = {sale};

CREATE TABLE base_sale_discounts AS
SELECT {sale} AS sale_id, 'promotion' AS kind FROM gen_sales WHERE promoted = 1
UNION ALL SELECT {sale} AS sale_id, 'coupon' AS kind FROM gen_sales WHERE coupon = 1;

CREATE TABLE base_messages AS
SELECT {member} AS member_id, CASE WHEN i % 2 = 0 THEN 'sms' ELSE 'email' END AS channel,
       'marketing' AS purpose, 'campaign' AS template, 'sent' AS status,
       timezone('{tz}', CAST(DATE '{as_of}' - INTERVAL (10 + hash(i, 13) % 300) DAY
                             AS TIMESTAMP) + INTERVAL 10 HOUR) AS sent_at
FROM gen_members;
"""


def generate(duck: Any, members: int) -> None:
    sale_i = "sale_no"
    sql = GENERATE.format(
        tz=TZ, as_of=AS_OF, members=members,
        store=uid(1, "i"), category=uid(2, "i"), product=uid(3, "i"),
        product_category=uid(2, "i // 10"), member=uid(4, "i"),
        member_store=uid(1, "store"), u1=u("i", 1), u2=u("i", 2),
        sale=uid(5, sale_i), sale_store=uid(1, "s.store"), sale_member=uid(4, "s.i"),
        line=uid(6, "l.line_id"), line_sale=uid(5, "l.sale_no"),
        line_product=uid(3, "l.product"))
    for statement in sql.split(";"):
        if statement.strip():
            duck.execute(statement)
    for name, spec in RAW_TABLES.items():  # the tables this history leaves empty
        exists = duck.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?",
                              [f"base_{name}"]).fetchone()
        if exists is None or not exists[0]:
            cols = ", ".join(f'NULL::{k.value} AS "{c}"' for c, k in spec.columns)
            duck.execute(f"CREATE TABLE base_{name} AS SELECT {cols} LIMIT 0")
    cutoff = source.cutoff_for(AS_OF, TZ)
    for name, spec in RAW_TABLES.items():
        cols = ", ".join(f'"{c}"' for c, _ in spec.columns)
        duck.execute(f"CREATE VIEW {spec.raw_name} AS "
                     f"{cut_sql(spec, f'SELECT {cols} FROM base_{name}', cutoff)}")
    for name in ("gen_lines", "gen_sales", "gen_members"):
        duck.execute(f"DROP TABLE {name}")


def count(duck: Any) -> dict[str, int]:
    counts = {}
    for name in ("members", "sales", "lines", "messages"):
        row = duck.execute(f"SELECT count(*) FROM {name}").fetchone()
        counts[name] = int(row[0]) if row else 0
    return counts


def timed(marks: list[tuple[str, float, float, str]], label: str, what: str,
          work: Callable[[], T]) -> T:
    wall, used = time.perf_counter(), cpu()
    result = work()
    marks.append((label, time.perf_counter() - wall, cpu() - used, what))
    return result


def night(src: source.Source, member_scores: Any, previous: list[portraits.PreviousPortrait],
          marks: list[tuple[str, float, float, str]]) -> portraits.Computed:
    """``portraits.collect`` + ``portraits.compute``, step by step (the same calls)."""
    config = portraits.PortraitConfig()
    collected = timed(marks, "collect", "DuckDB: per-member summaries, favourites, local "
                      "time, as-of join of messages", lambda: portraits.collect(src, config))

    def profile_and_tags() -> tuple[portraits.Frame, Any]:
        frame = portraits.frame(collected, member_scores, AS_OF)
        return frame, tags.assign(frame.facts, config.tags)
    frame, bits = timed(marks, "profile + tags", "shares and rates, 14 tags (NumPy)",
                        profile_and_tags)
    x, buyers = portraits.features(frame)
    clusters = timed(marks, "choose k + cluster", f"{int(buyers.sum()):,} members, 9 "
                     "features: k = 3..8 on 50k, silhouette on 5k, k-means on 200k, assign all",
                     lambda: portraits.cluster(x, previous=previous, config=config))
    assert clusters is not None

    def words() -> portraits.Computed:
        names, moved = portraits.match_codes(clusters, previous,
                                             max_distance=config.match_distance)
        codes = np.full(len(frame.facts), None, dtype=object)
        codes[buyers] = np.array(names, dtype=object)[clusters.labels]
        rows = portraits.portrait_rows(frame, buyers, clusters, names, moved,
                                       category_names=collected.category_names,
                                       config=config)
        return portraits.Computed(profiles=portraits.profile_rows(frame, bits, codes),
                                  portraits=rows,
                                  params={"k": clusters.k, "silhouettes":
                                          clusters.silhouettes})
    return timed(marks, "labels, words, rows", "Hungarian matching, statistics per "
                 "portrait, the Arrow table of profiles", words)


def main() -> None:
    import ibis

    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--rebuild", action="store_true", help="regenerate the history")
    parser.add_argument("--memory-limit", help="DuckDB's, e.g. 4GB (the refresh's option)")
    args = parser.parse_args()
    load = os.getloadavg()
    OUT.mkdir(exist_ok=True)
    cached = OUT / f"portraits-{args.members}-v2.duckdb"  # v2: BIGINT money, v7-like ids
    if args.rebuild:
        cached.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="patron-bench-") as work:
        fresh = not cached.exists()
        con = ibis.duckdb.connect(str(cached))
        duck = con.con
        source.configure(duck, workdir=work, memory_limit=args.memory_limit)
        if fresh:
            started = time.perf_counter()
            generate(duck, args.members)
            build_canonical(duck, CANONICAL_TABLES, source.cutoff_for(AS_OF, TZ))
            duck.execute("CHECKPOINT")
            console.print(f"generated {cached.name} in {time.perf_counter() - started:.0f} s")
        counts = count(duck)
        src = source.Source(con=con, as_of=AS_OF, cutoff=source.cutoff_for(AS_OF, TZ),
                            timezone=TZ, backend="duckdb", loaded=CANONICAL_TABLES)
        marks: list[tuple[str, float, float, str]] = []

        def member_scores() -> Any:
            history = scores.member_history(src)
            return scores.score(history, scores.fit(history))
        table = timed(marks, "(scores: the refresh's, not portraits')",
                      "member_history + fit + score", member_scores)
        for module in ("sklearn.cluster", "sklearn.metrics"):  # imported outside the timings
            importlib.import_module(module)

        first_marks: list[tuple[str, float, float, str]] = []
        computed = night(src, table, [], first_marks)
        if not args.no_write:
            db = Database.from_url(f"sqlite:///{Path(work) / 'patron.db'}")
            migrate.upgrade(make_engine(f"sqlite:///{Path(work) / 'patron.db'}"))
            timed(first_marks, "write (SQLite)", f"{computed.profiles.num_rows:,} profile "
                  "rows + portraits, chunked transactions",
                  lambda: portraits.write(db, as_of=AS_OF, computed=computed))
            db.dispose()
        previous = [portraits.PreviousPortrait(code=r["code"], centroid=r["centroid"])
                    for r in computed.portraits]
        second_marks: list[tuple[str, float, float, str]] = []
        again = night(src, table, previous, second_marks)
        con.disconnect()

    title = (f"patron portraits: {args.members:,} members, {counts['sales']:,} sales, "
             f"{counts['lines']:,} lines, {counts['messages']:,} messages "
             f"({os.cpu_count()} cores, load average {load[0]:.1f} at the start)")
    out = Table("stage", "wall s", "CPU s", "what", title=title)
    for label, wall, used, what in marks:
        out.add_row(label, f"{wall:.2f}", f"{used:.2f}", what, style="dim")
    for name, group in (("first night", first_marks), ("next night (labels matched)",
                                                       second_marks)):
        for label, wall, used, what in group:
            out.add_row(label, f"{wall:.2f}", f"{used:.2f}", what)
        out.add_row(f"total, {name}", f"{sum(m[1] for m in group):.2f}",
                    f"{sum(m[2] for m in group):.2f}", "", style="bold")
    console.print(out)
    words = Table("code", "members", "revenue share", "retention", "CLV mean", "description",
                  title=f"Portraits found (k by silhouette: "
                        f"{ {k: round(v, 3) for k, v in computed.params['silhouettes'].items()} })")
    for row in computed.portraits:
        words.add_row(row["code"], f"{row['members']:,}", f"{row['revenue_share']:.1%}",
                      "" if row["retention"] is None else f"{row['retention']:.1%}",
                      str(row["clv_mean_minor"]), row["description_en"])
    console.print(words)
    same = Counter(zip(computed.profiles.column("portrait_code").to_pylist(),
                       again.profiles.column("portrait_code").to_pylist(), strict=True))
    kept = sum(n for (a, b), n in same.items() if a == b)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"next night: {kept / computed.profiles.num_rows:.2%} of members keep "
                  f"their code; peak RSS {peak:,.0f} MB")


if __name__ == "__main__":
    main()
