"""The sales history kept between refreshes in a DuckDB file, brought up to date each night.

Why: a refresh reads the whole history, and at a million members building the canonical
``sales`` and ``lines`` tables (7 M sales, 10.6 M lines: the scan, the joins that put each
sale's member, store and local day on its lines, the writing of the columnar file) was
most of the load stage, every night, for a day that added one 730th of it. The warehouse
keeps those two tables, exactly as ``canonical`` builds them, in a DuckDB file next to
the database, and each night rebuilds only the sales that changed; ``source.open_source``
then reads them from the file and loads the small tables as before.

What changes a sale after the night it was first seen, and how the sync finds it:

* **a new sale** of the new day, or one patron learned of late (an offline till, an
  import: ``recorded_at`` is when patron learned of it): the sales that happened since the
  last cutoff, and those recorded since the last sync (less a margin for transactions in
  flight), whatever day they happened;
* **a refund**: the sales with a refund booked since the last cutoff are rebuilt with all
  their refunds before the new one (refunds are counted by the day they are booked, as in
  a full load);
* **a member merge** moves the duplicate's sales to the survivor: every merge is replayed
  on the kept member ids (followed to the last survivor) whenever the set of merges has
  changed;
* **a product moved to another category**: the lines' ``category_id`` is set again from the
  products whenever a product's category differs from the warehouse's;
* **a store's time zone changed**: every sale's local day may move, so the file is rebuilt.

Then a check: the number of sales before the cutoff and the sum of their refunds are
counted in the database (in the same read snapshot as the changes) and in the warehouse.
Any difference (a sale the rules above did not foresee, a restored backup, an edit by
hand) and the file is rebuilt in full, which is what a refresh did every night before.
The file is also rebuilt every ``REBUILD_DAYS`` days of cutoffs, for what no count can see,
when it belongs to another database, when its format is older, and when asked
(``patron analytics refresh --rebuild``). A refresh for a day *before* the warehouse's
cutoff (a backfill) does not touch it and loads the history as before.

Consistency: the sync reads the database in one snapshot, and the small tables are loaded
in another (on SQLite by the load's child process, at the same time). Everything is cut
at the same cutoff, which is in the past, so the two agree except for a member merged in
between: the survivor gets the duplicate's sales the next night (a full load read both
in one snapshot).

Beside the two tables the file keeps what the scores derive from one member's history
alone, none of it depending on the day scored (``DERIVED``): each member's purchase totals
(``scores.purchase_totals_expr``: purchases, first and last purchase, first and total
net), the gaps between their purchase days in each category and each such pair's own
figures (``scores.category_gaps_expr``, ``scores.pair_cycles_expr``). A sync recomputes
them for the members whose sales it rebuilt or moved (every member's gaps when a product
changed category), and the scores read them instead of summing the whole history. Only
the derived tables the reader asked for are recomputed (``sync(derived=...)``:
``patron analytics fit`` reads the purchase totals alone); the others note who changed in
``derived_pending`` and catch up at the next sync that needs them, and ``Synced.derived``
says which tables are up to date, the only ones ``source.open_source`` hands out.

One process at a time: the sync and the refresh that reads the file hold an exclusive lock
on ``<file>.lock``; a second refresh meanwhile loads the history the old way rather than
wait (``acquire``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import functools
import hashlib
import tempfile
import time
import uuid
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import (
    ARRAY,
    Connection,
    Engine,
    String,
    Text,
    Uuid,
    any_,
    cast,
    exists,
    func,
    literal,
    select,
    type_coerce,
)
from sqlalchemy.engine import make_url

from patron.analytics.canonical import (
    CANONICAL_SQL,
    LOAD_COMPRESSION,
    RAW_TABLES,
    Kind,
    build_canonical,
    configure,
    local_day_sql,
    needed,
    ts_literal,
)
from patron.core import collector

#: The format of the file; another number and the file is rebuilt.
VERSION = 3
#: The canonical tables the warehouse keeps and ``open_source`` reads from it.
KEPT: tuple[str, ...] = ("sales", "lines")
#: The per-member purchase totals it keeps beside them (``scores.purchase_totals_expr``).
TOTALS = "member_purchases"
#: ... the gaps between purchase days per member and category, and each pair's own
#: figures (``scores.category_gaps_expr``, ``scores.pair_cycles_expr``).
GAPS = "member_category_gaps"
PAIRS = "member_category_own"
#: Per derived table, in the order they are built: the table it is computed from (a kept
#: one, or a derived one built before it).
_OVER: dict[str, str] = {TOTALS: "sales", GAPS: "lines", PAIRS: GAPS}
#: The per-member tables derived from the kept ones, in the order they are built.
DERIVED: tuple[str, ...] = tuple(_OVER)
#: What the file holds: the kept tables and the small ones a sync compares with the database.
BUILT: tuple[str, ...] = ("stores", "products", *KEPT)
#: How much earlier than the last sync's newest ``recorded_at`` the next sync looks: a
#: checkout's row carries the time it was recorded but becomes visible when it commits.
MARGIN = timedelta(hours=1)
#: Rebuild in full once the cutoff has moved this many days since the last full build.
REBUILD_DAYS = 7
#: Ids per ``IN (...)`` when reading changed rows (SQLite's limit is 32,766 parameters,
#: PostgreSQL's 65,535). Each statement costs a millisecond or two of SQLAlchemy's work
#: beside the rows: at 500 a night of 13,000 changed sales took 110 statements.
CHUNK = 5000
#: The raw tables a sync reads for the changed sales.
_SALE_TABLES: tuple[str, ...] = ("sales", "sale_lines", "sale_discounts", "refunds",
                                 "refund_lines")


@dataclass(frozen=True)
class Meta:
    """What the file holds: the cutoff it is up to date with and how it got there."""

    version: int
    database: str
    cutoff: datetime
    built_cutoff: datetime  # the cutoff of the last full build
    recorded_mark: datetime | None  # the newest sale ``recorded_at`` seen by the last sync
    merges: str  # a digest of every (merged, survivor) pair replayed
    categories: str  # a digest of every (product, category) pair applied


@dataclass
class Synced:
    """The outcome of ``sync``: what was done and how long each step took."""

    path: Path
    cutoff: datetime
    mode: str  # "full" or "incremental"
    reason: str  # why a full build, or "" for an incremental sync
    changed_sales: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    #: The derived tables that are up to date in the file (the others wait for a sync
    #: that asks for them).
    derived: tuple[str, ...] = DERIVED


class _Stale(Exception):
    """The file cannot be brought up to date incrementally (the message says why)."""


def identity(engine: Engine) -> str:
    """Which database a file belongs to: the URL without its password, and the id of the
    database's first analytics run (a refresh records its run before it loads). A database
    emptied, or replaced by another at the same URL, has another first run (or none), so
    its file is rebuilt rather than trusted to a count that might happen to agree."""
    runs = _table("analytics_runs")
    with engine.connect() as conn:
        first = conn.execute(select(runs.c.id).order_by(runs.c.started_at, runs.c.id)
                             .limit(1)).scalar()
    url = make_url(engine.url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        url = url.set(database=str(Path(url.database).resolve()))  # ./patron.db or not
    return f"{url.render_as_string(hide_password=True)}#{first or '-'}"


@contextlib.contextmanager
def acquire(path: Path) -> Iterator[bool]:
    """Hold the warehouse's lock for the block; yields False (and holds nothing) when
    another process has it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with Path(f"{path}.lock").open("ab") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def read_meta(path: Path) -> Meta | None:
    """The file's ``Meta``, or None if there is no usable file."""
    if not path.exists():
        return None
    try:
        duck = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return None
    try:
        row = duck.execute("SELECT version, database, cutoff, built_cutoff, recorded_mark, "
                           "merges, categories FROM warehouse_meta").fetchone()
    except duckdb.Error:
        return None
    finally:
        duck.close()
    if row is None or row[0] != VERSION:
        return None
    return Meta(version=row[0], database=row[1], cutoff=datetime.fromisoformat(row[2]),
                built_cutoff=datetime.fromisoformat(row[3]),
                recorded_mark=datetime.fromisoformat(row[4]) if row[4] else None,
                merges=row[5], categories=row[6])


@dataclass(frozen=True)
class Summary:
    """What ``patron analytics warehouse`` shows."""

    cutoff: datetime
    built_cutoff: datetime
    sales: int
    lines: int
    size_bytes: int


def describe(path: Path) -> Summary | None:
    """The file's state, or None without a usable file. Waits for no lock: a sync in
    progress holds its own write connection, and then the file cannot be read."""
    meta = read_meta(path)
    if meta is None:
        return None
    try:
        duck = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return None
    try:
        sales = duck.execute("SELECT count(*) FROM sales").fetchone()
        lines = duck.execute("SELECT count(*) FROM lines").fetchone()
    finally:
        duck.close()
    return Summary(cutoff=meta.cutoff, built_cutoff=meta.built_cutoff,
                   sales=int(sales[0]) if sales else 0, lines=int(lines[0]) if lines else 0,
                   size_bytes=path.stat().st_size)


def _kept_source(name: str) -> str:
    """The kept table a derived one comes from, through the derived ones between."""
    while name in _OVER:
        name = _OVER[name]
    return name


def derived_for(tables: Collection[str]) -> tuple[str, ...]:
    """The derived tables computed from the kept ``tables`` (what a reader of those can
    use, and so what its sync brings up to date)."""
    return tuple(name for name in DERIVED if _kept_source(name) in tables)


def _with_inputs(names: Collection[str]) -> tuple[str, ...]:
    """``names`` and the derived tables they are computed from, in ``DERIVED`` order."""
    wanted = set(names)
    for name in reversed(DERIVED):
        if name in wanted and _OVER[name] in _OVER:
            wanted.add(_OVER[name])
    return tuple(name for name in DERIVED if name in wanted)


def sync(engine: Engine, path: Path, *, cutoff: datetime, rebuild: bool = False,
         memory_limit: str | None = None,
         derived: Collection[str] = DERIVED) -> Synced | None:
    """Bring the file at ``path`` up to ``cutoff``; None when ``cutoff`` is before the
    file's (a backfill: the caller loads the history itself). Call inside ``acquire``.

    ``derived``: the derived tables to bring up to date as well (and what they are
    computed from); a full build makes all of them."""
    unknown = set(derived) - set(DERIVED)
    if unknown:
        raise ValueError(f"no such derived table: {', '.join(sorted(unknown))}")
    meta = read_meta(path)
    database = identity(engine)
    reason = ""
    if rebuild:
        reason = "asked"
    elif meta is None:
        reason = "no warehouse yet" if not path.exists() else "unreadable or older format"
    elif meta.database != database:
        reason = "it belonged to another database"
    elif cutoff < meta.cutoff:
        return None
    elif cutoff - meta.built_cutoff >= timedelta(days=REBUILD_DAYS):
        reason = f"last full build {(cutoff - meta.built_cutoff).days} days ago"
    if not reason and meta is not None:
        try:
            with collector.paused():  # tens of thousands of rows read as tuples
                return _incremental(engine, path, meta, cutoff, memory_limit,
                                    _with_inputs(derived))
        except _Stale as exc:
            reason = str(exc)
        except duckdb.Error as exc:  # a damaged file: it is derived data, build it again
            reason = f"the file could not be updated ({type(exc).__name__}: {exc})"[:300]
    return _full(engine, path, database, cutoff, reason, memory_limit)


# ---------------------------------------------------------------- full build


def _full(engine: Engine, path: Path, database: str, cutoff: datetime, reason: str,
          memory_limit: str | None) -> Synced:
    """Build the kept tables from scratch into a new file, then put it in place."""
    began = time.perf_counter()
    fresh = Path(f"{path}.new")
    fresh.unlink(missing_ok=True)
    canonical, raw = needed(BUILT)
    with engine.connect() as conn:  # before the snapshot: the next sync looks from here
        mark, merges, categories = _marks(conn)
    with tempfile.TemporaryDirectory(prefix="patron-warehouse-") as workdir:
        if engine.dialect.name == "sqlite":
            from patron.analytics.source import extract_sqlite  # the load's child process

            timings = extract_sqlite(engine, fresh, canonical, cutoff, workdir, memory_limit)
        else:
            timings = _build_postgresql(engine, fresh, canonical, raw, cutoff, workdir,
                                        memory_limit)
        duck = duckdb.connect(str(fresh))
        try:
            configure(duck, workdir=workdir, memory_limit=memory_limit)
            for name in DERIVED:
                began_derived = time.perf_counter()
                duck.execute(f"CREATE TABLE {name} AS {_derived_sql(name, _OVER[name])}")
                timings[name] = time.perf_counter() - began_derived
            duck.execute(_PENDING_TABLE)
            _write_meta(duck, Meta(version=VERSION, database=database, cutoff=cutoff,
                                   built_cutoff=cutoff, recorded_mark=mark, merges=merges,
                                   categories=categories))
            duck.execute("CHECKPOINT")
        finally:
            duck.close()
    Path(f"{path}.wal").unlink(missing_ok=True)
    fresh.replace(path)
    timings["total"] = time.perf_counter() - began
    return Synced(path=path, cutoff=cutoff, mode="full", reason=reason, timings=timings)


def _build_postgresql(engine: Engine, out: Path, canonical: list[str], raw: list[str],
                      cutoff: datetime, workdir: str,
                      memory_limit: str | None) -> dict[str, float]:
    from patron.analytics.source import copy_postgresql  # the COPY route of the load

    began = time.perf_counter()
    duck = duckdb.connect(str(out))
    try:
        configure(duck, workdir=workdir, memory_limit=memory_limit)
        duck.execute(LOAD_COMPRESSION)
        copy_postgresql(duck, engine, raw, cutoff, Path(workdir), None)
        timings = {"raw": time.perf_counter() - began,
                   **build_canonical(duck, canonical, cutoff)}
        for name in raw:
            duck.execute(f"DROP TABLE IF EXISTS {RAW_TABLES[name].raw_name}")
        duck.execute("CHECKPOINT")
        return timings
    finally:
        duck.close()


# ---------------------------------------------------------------- incremental sync


def _incremental(engine: Engine, path: Path, meta: Meta, cutoff: datetime,
                 memory_limit: str | None, wanted: tuple[str, ...]) -> Synced:
    """Rebuild the sales that changed since the file's cutoff (the module docstring), and
    the ``wanted`` derived tables of the members they belong to."""
    timings: dict[str, float] = {}
    began = lap = time.perf_counter()

    def mark(step: str) -> None:
        nonlocal lap
        now = time.perf_counter()
        timings[step] = round(now - lap, 4)
        lap = now

    with engine.connect() as conn, \
            concurrent.futures.ThreadPoolExecutor(1, "warehouse-count") as counter:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        new_mark, merges_digest, categories_digest = _marks(conn)
        stores = _fetch(conn, "stores")
        products = _fetch(conn, "products")
        store_ids = [uuid.UUID(str(row[0])) for row in stores]  # RAW_TABLES["stores"]: id first
        changed = _changed_sales(conn, meta, cutoff, store_ids)
        rows = _fetch_sales(conn, changed, cutoff)
        merges = _merges(conn) if merges_digest != meta.merges else []
        # The check's count, in the same snapshot, while this thread works in DuckDB: the
        # count is a walk of an index of every sale (a quarter of a second at 7 M), and
        # both drivers let go of the GIL while they wait on the database. Nothing else
        # touches ``conn`` until the result is in.
        counted = counter.submit(_database_counts, conn, cutoff, store_ids)
        mark("read")
        with tempfile.TemporaryDirectory(prefix="patron-warehouse-") as workdir:
            duck = duckdb.connect(str(path))
            try:
                configure(duck, workdir=workdir, memory_limit=memory_limit)
                _stage(duck, "stores", stores)
                moved = duck.execute(
                    "SELECT count(*) FROM stores s JOIN raw_stores r ON r.id = s.store_id "
                    "WHERE r.timezone IS DISTINCT FROM s.timezone").fetchone()
                if moved is not None and moved[0]:
                    raise _Stale("a store's time zone changed")
                _stage(duck, "products", products)
                for name in _SALE_TABLES:
                    _stage(duck, name, rows[name], text_times=True)
                mark("stage")
                duck.execute("BEGIN TRANSACTION")
                _replace_small(duck)
                duck.execute("CREATE OR REPLACE TEMP TABLE touched (member_id UUID)")
                _replace_sales(duck, changed, cutoff)
                if categories_digest != meta.categories:
                    _apply_categories(duck)
                if merges:
                    _apply_merges(duck, merges)
                mark("apply")
                _update_derived(duck, every=categories_digest != meta.categories,
                                wanted=wanted)
                mark("derived")
                kept = _warehouse_counts(duck)
                database_counts = counted.result()
                if kept != database_counts:
                    duck.execute("ROLLBACK")
                    raise _Stale(f"the check found (sales, refunded) {database_counts} in "
                                 f"the database and {kept} in the warehouse")
                _write_meta(duck, Meta(version=VERSION, database=meta.database, cutoff=cutoff,
                                       built_cutoff=meta.built_cutoff,
                                       recorded_mark=new_mark or meta.recorded_mark,
                                       merges=merges_digest, categories=categories_digest))
                duck.execute("COMMIT")
                duck.execute("CHECKPOINT")
                mark("check")
            finally:
                duck.close()
    timings["total"] = round(time.perf_counter() - began, 4)
    return Synced(path=path, cutoff=cutoff, mode="incremental", reason="",
                  changed_sales=len(changed), timings=timings, derived=wanted)


def _table(name: str) -> Any:
    from patron.core.registry import Base  # every model, so every table is known

    return Base.metadata.tables[name]


def _marks(conn: Connection) -> tuple[datetime | None, str, str]:
    """(newest sale ``recorded_at``, digest of the merges, digest of product categories)."""
    sales, merges, products = _table("sales"), _table("member_merges"), _table("products")
    newest = conn.execute(select(func.max(sales.c.recorded_at))).scalar()
    pairs = conn.execute(select(merges.c.merged_id, merges.c.survivor_id)
                         .order_by(merges.c.merged_id)).all()
    cats = conn.execute(select(products.c.id, products.c.category_id)
                        .order_by(products.c.id)).all()
    return (_aware(newest) if newest is not None else None, _digest(pairs), _digest(cats))


def _digest(rows: Sequence[Any]) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update(("|".join(str(v) for v in row) + "\n").encode())
    return h.hexdigest()


def _changed_sales(conn: Connection, meta: Meta, cutoff: datetime,
                   store_ids: list[Any]) -> list[Any]:
    """Ids of the sales to (re)build: happened since the last cutoff, recorded since the
    last sync, or refunded since the last cutoff; all before ``cutoff``. Ids as the
    driver gives them (``_fetch``), the way ``_fetch_sales`` passes them back."""
    sales, refunds = _table("sales"), _table("refunds")
    sale_id, refund_sale_id = type_coerce(sales.c.id, String), type_coerce(refunds.c.sale_id,
                                                                           String)
    found: set[Any] = set()
    # store by store, so the (store_id, occurred_at) index serves the range
    found.update(conn.execute(select(sale_id).where(
        sales.c.store_id.in_(store_ids), sales.c.occurred_at >= meta.cutoff,
        sales.c.occurred_at < cutoff)).scalars())
    if meta.recorded_mark is not None:
        found.update(conn.execute(select(sale_id).where(
            sales.c.recorded_at >= meta.recorded_mark - MARGIN,
            sales.c.occurred_at < cutoff)).scalars())
    found.update(conn.execute(select(refund_sale_id).where(
        refunds.c.occurred_at >= meta.cutoff, refunds.c.occurred_at < cutoff)).scalars())
    return sorted(found, key=str)


def _fetch(conn: Connection, name: str, where: Any = None, *,
           text_times: bool = False) -> list[tuple[Any, ...]]:
    """Rows of a raw table, its ``RAW_TABLES`` columns in order, ids as text: on SQLite
    as it stores them (32 hex digits), on PostgreSQL cast to text by the database (psycopg
    would make a ``uuid.UUID`` of each: a third of reading a night's changed sales);
    DuckDB reads either. ``text_times``: times too, as SQLite stores them (naive UTC
    text) or as PostgreSQL writes a ``timestamptz`` (with its offset)."""
    table = _table(RAW_TABLES[name].source)
    as_text = (Kind.UUID, Kind.TS) if text_times else (Kind.UUID,)
    written = conn.dialect.name == "postgresql"

    def column(col: str, kind: Kind) -> Any:
        if kind not in as_text:
            return table.c[col]
        return cast(table.c[col], Text) if written else type_coerce(table.c[col], String)

    query = select(*(column(col, kind) for col, kind in RAW_TABLES[name].columns))
    if where is not None:
        query = query.where(where)
    return [tuple(row) for row in conn.execute(query)]


def _fetch_sales(conn: Connection, ids: list[Any],
                 cutoff: datetime) -> dict[str, list[tuple[Any, ...]]]:
    """The raw rows of the sales ``ids`` (as the driver gives them) as the canonical SQL
    reads them, cut at ``cutoff``, times as text: they go to DuckDB's C casts instead of
    Python's parse (a third of a night's read on SQLite) and Arrow's conversion (its
    staging). The ids go back to the driver as they came, which takes them as it gave
    them, with no conversion on either side: on SQLite in ``IN`` lists of ``CHUNK``; on
    PostgreSQL as one ``uuid[]`` (``= ANY``), one statement a table, where ``IN`` lists of
    thousands of parameters took twice as long."""
    written = conn.dialect.name == "postgresql"

    def among(name: str, col: str, some: list[Any]) -> Any:
        if written:
            return _table(name).c[col] == any_(literal(some, ARRAY(Uuid())))
        return type_coerce(_table(name).c[col], String).in_(some)

    def pieces(some: list[Any]) -> list[list[Any]]:
        step = (len(some) or 1) if written else CHUNK
        return [some[start:start + step] for start in range(0, len(some), step)]

    sales, refunds = _table("sales"), _table("refunds")
    rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in _SALE_TABLES}
    fetch = functools.partial(_fetch, conn, text_times=True)
    for chunk in pieces(ids):
        rows["sales"] += fetch("sales", among("sales", "id", chunk)
                               & (sales.c.occurred_at < cutoff))
        rows["sale_lines"] += fetch("sale_lines", among("sale_lines", "sale_id", chunk))
        rows["sale_discounts"] += fetch("sale_discounts",
                                        among("sale_discounts", "sale_id", chunk))
        found = fetch("refunds", among("refunds", "sale_id", chunk)
                      & (refunds.c.occurred_at < cutoff))
        rows["refunds"] += found
        refund_ids = [r[0] for r in found]  # RAW_TABLES["refunds"]: id first, as text
        if written:  # where uuid = text is no operator
            refund_ids = [uuid.UUID(i) for i in refund_ids]
        for inner in pieces(refund_ids):
            rows["refund_lines"] += fetch("refund_lines",
                                          among("refund_lines", "refund_id", inner))
    return rows


def _merges(conn: Connection) -> list[tuple[str, str]]:
    """Every merge as (duplicate, final survivor): chains followed to their end."""
    merges = _table("member_merges")
    into = {str(m): str(s) for m, s in conn.execute(
        select(merges.c.merged_id, merges.c.survivor_id))}
    resolved = []
    for merged in into:
        survivor, seen = into[merged], {merged}
        while survivor in into and survivor not in seen:
            seen.add(survivor)
            survivor = into[survivor]
        resolved.append((merged, survivor))
    return resolved


def _database_counts(conn: Connection, cutoff: datetime,
                     store_ids: list[Any]) -> tuple[int, int]:
    """(sales before the cutoff, their refunds booked before it).

    Counted as every sale less those from the cutoff on: a count of the whole table reads
    its narrowest index, and the later ones are few and found by (store, time); a count
    with the time condition reads every row (0.55 s per 700,000 sales on SQLite here, the
    two counts 0.01 s). Sale amounts never change once written (a refund is a row of its
    own), so the number of sales and the refunds are what can drift.
    """
    sales, refunds = _table("sales"), _table("refunds")
    every = conn.execute(select(func.count()).select_from(sales)).scalar_one()
    later = conn.execute(select(func.count()).select_from(sales).where(
        sales.c.store_id.in_(store_ids), sales.c.occurred_at >= cutoff)).scalar_one()
    # from the refunds (few) to their sale by its key; a join let SQLite walk every sale
    refunded = conn.execute(
        select(func.coalesce(func.sum(refunds.c.amount_minor), 0))
        .where(refunds.c.occurred_at < cutoff,
               exists().where(sales.c.id == refunds.c.sale_id,
                              sales.c.occurred_at < cutoff))).scalar_one()
    return int(every) - int(later), int(refunded)


def _warehouse_counts(duck: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    row = duck.execute("SELECT count(*), coalesce(sum(refunded_minor), 0) FROM sales").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


_ARROW: dict[Kind, pa.DataType] = {
    Kind.UUID: pa.string(), Kind.TS: pa.timestamp("us", tz="UTC"), Kind.INT: pa.int64(),
    Kind.BOOL: pa.bool_(), Kind.TEXT: pa.string(), Kind.DATE: pa.date32()}


def _aware(value: datetime) -> datetime:
    """UTC-aware (SQLite hands back naive UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _stage(duck: duckdb.DuckDBPyConnection, name: str, rows: list[tuple[Any, ...]], *,
           text_times: bool = False) -> None:
    """Put a raw table's rows in a temporary ``raw_<name>`` with the canonical types.

    Column by column: ids as text (as ``_fetch`` reads them) cast by DuckDB; times
    as Arrow reads them (a naive time is UTC, an aware one is converted to it), or with
    ``text_times`` as text (``_fetch``) cast by DuckDB, whose session is in UTC
    (``configure``): naive text is UTC, text with an offset is converted."""
    spec = RAW_TABLES[name]
    values = list(zip(*rows, strict=True)) if rows else [() for _ in spec.columns]
    arrays = {}
    for (col, kind), column in zip(spec.columns, values, strict=True):
        as_text = kind is Kind.UUID or (text_times and kind is Kind.TS)
        arrays[col] = pa.array(column, type=pa.string() if as_text else _ARROW[kind])
    arrow = pa.table(arrays)
    view = f"arrow_{name}"
    duck.register(view, arrow)

    def typed(col: str, kind: Kind) -> str:
        if kind is Kind.UUID:
            return f'CAST("{col}" AS UUID) AS "{col}"'
        if text_times and kind is Kind.TS:
            return f'CAST("{col}" AS TIMESTAMPTZ) AS "{col}"'
        return f'"{col}"'

    casts = ", ".join(typed(col, kind) for col, kind in spec.columns)
    duck.execute(f"CREATE OR REPLACE TEMP TABLE {spec.raw_name} AS "  # noqa: S608 - our names
                 f"SELECT {casts} FROM {view}")
    duck.unregister(view)


def _replace_small(duck: duckdb.DuckDBPyConnection) -> None:
    """The warehouse's ``stores`` and ``products`` as they are now."""
    for name in ("stores", "products"):
        duck.execute(f"DELETE FROM {name}")  # noqa: S608 - our names
        duck.execute(f"INSERT INTO {name} {CANONICAL_SQL[name][2]}")


def _replace_sales(duck: duckdb.DuckDBPyConnection, changed: list[Any],
                   cutoff: datetime) -> None:
    """Delete the changed sales and their lines, then insert them rebuilt by the same SQL
    as a full load (so each comes out as a full load would have built it)."""
    ids = pa.table({"sale_id": pa.array([str(i) for i in changed], type=pa.string())})
    duck.register("arrow_changed", ids)
    duck.execute("CREATE OR REPLACE TEMP TABLE changed AS "
                 "SELECT CAST(sale_id AS UUID) AS sale_id FROM arrow_changed")
    duck.unregister("arrow_changed")
    touched = ("INSERT INTO touched SELECT member_id FROM sales "
               "WHERE sale_id IN (SELECT sale_id FROM changed) AND member_id IS NOT NULL")
    duck.execute(touched)  # their members before ...
    duck.execute("DELETE FROM lines WHERE sale_id IN (SELECT sale_id FROM changed)")
    duck.execute("DELETE FROM sales WHERE sale_id IN (SELECT sale_id FROM changed)")
    zones = [z for (z,) in duck.execute("SELECT DISTINCT timezone FROM stores "
                                        "WHERE timezone IS NOT NULL").fetchall()]
    occurred_on = local_day_sql("s.occurred_at", "st.timezone", zones, cutoff)
    literal = ts_literal(cutoff)
    duck.execute("INSERT INTO sales " + CANONICAL_SQL["sales"][2].format(
        cutoff=literal, occurred_on=occurred_on))
    duck.execute("INSERT INTO lines " + CANONICAL_SQL["lines"][2].format(
        cutoff=literal, occurred_on=occurred_on))
    duck.execute(touched)  # ... and after


def _apply_categories(duck: duckdb.DuckDBPyConnection) -> None:
    """Lines take their product's category as it is now, as a full load would."""
    duck.execute("UPDATE lines SET category_id = p.category_id FROM products p "
                 "WHERE lines.product_id = p.product_id "
                 "AND lines.category_id IS DISTINCT FROM p.category_id")


def _apply_merges(duck: duckdb.DuckDBPyConnection, merges: list[tuple[str, str]]) -> None:
    """A merged member's sales and lines belong to the survivor, as in the database."""
    pairs = pa.table({"merged": pa.array([m for m, _ in merges], type=pa.string()),
                      "survivor": pa.array([s for _, s in merges], type=pa.string())})
    duck.register("arrow_merges", pairs)
    duck.execute("CREATE OR REPLACE TEMP TABLE merges AS SELECT CAST(merged AS UUID) AS "
                 "merged, CAST(survivor AS UUID) AS survivor FROM arrow_merges")
    duck.unregister("arrow_merges")
    duck.execute("INSERT INTO touched SELECT merged FROM merges UNION ALL "
                 "SELECT survivor FROM merges")
    for name in KEPT:
        duck.execute(f"UPDATE {name} SET member_id = m.survivor FROM merges m "  # noqa: S608 - our names
                     f"WHERE {name}.member_id = m.merged")


@functools.cache
def _derived_sql(name: str, relation: str) -> str:
    """The SQL that builds the derived table ``name`` from ``relation``, a relation of its
    source's rows (``_OVER``). It is the Ibis expression the scores use without a
    warehouse, compiled for DuckDB, so the two cannot differ; compiled once per process
    (10-30 ms each time otherwise, every night)."""
    import ibis

    from patron.analytics import scores  # it imports this module

    ids = {"member_id": "uuid", "category_id": "uuid", "occurred_on": "date"}
    expr, columns = {
        TOTALS: (scores.purchase_totals_expr, {
            "member_id": "uuid", "occurred_on": "date", "occurred_at": "timestamp('UTC')",
            "net_minor": "int64"}),
        GAPS: (scores.category_gaps_expr, {**ids, "quantity": "int64"}),
        PAIRS: (scores.pair_cycles_expr, {**ids, "gap": "int64"}),
    }[name]
    return str(ibis.to_sql(expr(ibis.table(columns, name=relation)), dialect="duckdb"))


#: Who changed since a derived table was last brought up to date, for the tables a sync
#: was not asked for (a NULL member: everyone, after a product moved category).
_PENDING_TABLE = "CREATE TABLE IF NOT EXISTS derived_pending (name VARCHAR, member_id UUID)"


def _update_derived(duck: duckdb.DuckDBPyConnection, *, every: bool,
                    wanted: Collection[str]) -> None:
    """Recompute the ``wanted`` derived tables' rows of the members whose sales changed
    (``touched``: the members of the rebuilt sales before and after, and both sides of
    every merge replayed; nobody else's can have changed), and of those left pending by
    earlier syncs; note the others' changed members as pending. ``every``: products moved
    to other categories, so every member's category gaps change."""
    duck.execute("CREATE OR REPLACE TEMP TABLE touched_ids AS "
                 "SELECT DISTINCT member_id FROM touched")
    for name in DERIVED:
        over = _OVER[name]
        moved = every and name != TOTALS  # the totals do not read categories
        if name not in wanted:
            if moved:
                duck.execute("INSERT INTO derived_pending VALUES (?, NULL)", [name])
            duck.execute("INSERT INTO derived_pending SELECT ?, member_id FROM touched_ids "
                         "EXCEPT SELECT name, member_id FROM derived_pending WHERE name = ?",
                         [name, name])
            continue
        everyone = duck.execute("SELECT count(*) FROM derived_pending "
                                "WHERE name = ? AND member_id IS NULL", [name]).fetchone()
        if moved or (everyone is not None and everyone[0]):
            duck.execute(f"DELETE FROM {name}")  # noqa: S608 - our names
            duck.execute(f"INSERT INTO {name} BY NAME {_derived_sql(name, over)}")
        else:
            duck.execute("CREATE OR REPLACE TEMP TABLE due AS SELECT member_id FROM "
                         "touched_ids UNION SELECT member_id FROM derived_pending "
                         "WHERE name = ?", [name])
            duck.execute(f"DELETE FROM {name} WHERE member_id IN "  # noqa: S608 - our names
                         "(SELECT member_id FROM due)")
            duck.execute(f"CREATE OR REPLACE TEMP VIEW due_{over} AS "  # noqa: S608 - our names
                         f"SELECT * FROM {over} WHERE member_id IN (SELECT member_id FROM due)")
            duck.execute(f"INSERT INTO {name} BY NAME {_derived_sql(name, f'due_{over}')}")
        duck.execute("DELETE FROM derived_pending WHERE name = ?", [name])


def _write_meta(duck: duckdb.DuckDBPyConnection, meta: Meta) -> None:
    """One row; times as ISO text (DuckDB hands TIMESTAMPTZ to Python through pytz)."""
    duck.execute("CREATE TABLE IF NOT EXISTS warehouse_meta (version INTEGER, database "
                 "VARCHAR, cutoff VARCHAR, built_cutoff VARCHAR, recorded_mark VARCHAR, "
                 "merges VARCHAR, categories VARCHAR)")
    duck.execute("DELETE FROM warehouse_meta")
    mark = meta.recorded_mark.astimezone(UTC).isoformat() if meta.recorded_mark else None
    duck.execute("INSERT INTO warehouse_meta VALUES (?, ?, ?, ?, ?, ?, ?)",
                 [meta.version, meta.database, meta.cutoff.astimezone(UTC).isoformat(),
                  meta.built_cutoff.astimezone(UTC).isoformat(), mark, meta.merges,
                  meta.categories])
