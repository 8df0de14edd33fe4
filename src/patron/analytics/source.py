"""The sales history as canonical columnar tables, in an in-process analytics engine.

Design overview
---------------
Analytics read the whole history at once (every member, every sale line), which the OLTP
database is not built for. ``open_source`` copies what analytics need, once, into an
in-process DuckDB, normalised to one representation whatever the OLTP backend, and hands
the canonical tables out as Ibis expressions. Everything above this module (scores,
views, reports) is written against those expressions, so it does not care whether the
history came from SQLite or PostgreSQL, and it could run on another Ibis backend (Spark)
over an exported history.

How the history gets in (the only backend-specific code in analytics):

* **SQLite**: a child process attaches the database file read-only with DuckDB's sqlite
  scanner (the extension shipped as a Python package, loaded from its path: no network)
  and builds the canonical tables, in one read transaction, into a temporary DuckDB file
  that this process then opens. The child is not optional: the scanner brings its own
  copy of the SQLite library, and two copies in one process corrupt each other's view of
  the WAL (``sqlite_extract`` explains; it crashed the app's next write with SIGBUS).
* **PostgreSQL**: each needed table (only its needed columns, filtered to the cutoff, and
  for ledgers only the last entry per account) is streamed with ``COPY (SELECT ...) TO
  STDOUT`` in one REPEATABLE READ snapshot to a temporary CSV file that DuckDB reads with
  explicit types; memory stays flat whatever the size of the history.

Normalisation: ids are DuckDB ``UUID`` (SQLite stores SQLAlchemy's ``Uuid`` as 32 hex
digits, PostgreSQL as ``uuid``); times are ``TIMESTAMPTZ`` in UTC (SQLite stores naive UTC
text); booleans are ``BOOLEAN`` (SQLite stores 0/1); money is BIGINT minor units.

Cost (``bench/analytics_load.py``): the load is a scan of the history plus the joins that
denormalise ``sales`` and ``lines`` and the writing of the DuckDB file. Three things it
does for speed, each proven by ``tests/analytics/test_source.py`` to give the same tables
as the plain SQL: the store-local day comes from the zones' UTC offsets, not a per-row
``timezone()`` (``canonical.local_day_sql``); SQLite's hex ids are parsed as hex; and the
file is written without bit-packing (``canonical.LOAD_COMPRESSION``).

Time: ``as_of`` is the last *local* day of history included, in the brand's time zone
(``Settings.default_timezone``); ``cutoff`` is the UTC instant that day ends. Everything is
read as it stood at the cutoff where the database keeps the history to do so: sales up to
the cutoff, refunds booked before it (a refund made later does not change an earlier
snapshot), points and stored-value balances from the ledgers' last entry before it, tiers
from the last tier change before it. States without a history (member status, a package's
visits left, saved preferences) are read as they are now.

The API (stable: ``views``, ``recommend``, ``economics`` and ``scores`` build on it)
----------------------------------------------------------------------------------------
::

    from patron.analytics import source

    with source.open_source(db, as_of=date(2026, 11, 22), timezone="Asia/Shanghai") as src:
        src.sales       # ibis.Table, one row per sale
        src.con         # the Ibis DuckDB backend (src.con.con: the raw DuckDB connection)
        src.cutoff      # aware UTC datetime, exclusive end of the history

``open_source(database, *, as_of, timezone, tables=None, progress=None,
memory_limit=None)`` accepts a ``core.db.Database``, an SQLAlchemy ``Engine`` or a URL.
``tables`` limits what is loaded (dependencies are added); by default
``canonical.SCORING_TABLES`` (all of ``CANONICAL_TABLES`` but the liabilities' and the
tier-migration report's own tables). ``src.table(name)`` returns any of them; the common
ones are also attributes. ``src.materialize(name, expr)`` computes an expression once
into a temporary table (``scores`` keeps the category cycles there; other modules may reuse them as
``src.table("member_category_cycles")`` after ``scores.category_cycles_table(src)``).

Canonical tables (column: type; ids are UUID, ``*_at`` TIMESTAMPTZ in UTC, ``*_on`` the
store-local DATE, money BIGINT minor units):

``sales``
    sale_id, member_id (NULL for walk-ins), store_id, occurred_at, occurred_on (the store's
    local day), gross_minor (list price of the lines), discount_minor, refunded_minor
    (refunds booked before the cutoff), net_minor (= gross - discount - refunded, what the
    shop kept), coupon_used (a coupon reduced the sale), promoted (a promotion did).
``lines``
    line_id, sale_id, member_id, store_id, product_id, category_id, occurred_at,
    occurred_on, quantity (kept: sold less refunded), unit_price_minor, discount_minor,
    net_minor (line total less its refunds).
``members``
    member_id, joined_at, home_store_id, enrolled_store_id, enrolled_by_id (a user; NULL
    for self sign-up or import), referred_by_id, status (active, merged, deleted: as now),
    tier_code (NULL without a tier), has_preferences. Members who joined after the cutoff
    are left out.
``inactive_members``
    member_id of every member who is not active (merged, deleted) or joined after the
    cutoff: those ``members`` leaves out or marks not active. All the purchase models need
    to know of the members, as every buyer is a member: ``patron analytics fit`` reads
    this, a few rows, instead of a million ``members`` rows (1 s on SQLite).
``surveys``
    member_id, store_id, answered_at, csat (1-5 or NULL), nps (0-10 or NULL).
``holdings``
    one row per member with what ties them to the shop at the cutoff (bond inputs):
    points_available, wallet_minor (principal + bonus), paid_membership (an active paid
    membership or a paid tier), unused_coupons, referrals_made, survey_replies,
    callback_calls (calls logged with the member), prepaid_packages (active with visits
    left), has_preferences.
``stores``
    store_id, code, name, timezone.
``products``
    product_id, sku, name, category_id, price_minor.
``categories``
    category_id, code, name, replenish_days.
``messages``
    member_id, channel (sms, email), template, sent_at: marketing messages that reached the
    provider (status sent or delivered; ``portraits`` reads them for channel
    responsiveness). Transactional ones (receipts, codes) and webhooks are left out.

Design choices worth knowing when writing queries: a sale with ``net_minor <= 0`` (fully
refunded, or free) is kept in ``sales`` but is not a purchase for the purchase models
(``scores`` filters it); ``occurred_on`` is the day in the *store's* zone, which is what
"the same day" means for customers (DESIGN.md rule 7).

This module reads other domains' tables directly, not through their services: it is the
analytics export path (the "exported transaction history" of DESIGN.md's scale path), one
read-only copy of many tables at once, which no row-at-a-time service could serve. Every
table and column it reads is listed in ``canonical.RAW_TABLES`` so a schema change shows up
there.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from patron.analytics.canonical import (  # noqa: F401 - re-exported: the stable API
    CANONICAL_SQL,
    CANONICAL_TABLES,
    LOAD_COMPRESSION,
    RAW_TABLES,
    Kind,
    RawTable,
    build_canonical,
    configure,
    cut_sql,
    needed,
    sqlite_scanner_path,
    ts_literal,
)
from patron.core.db import Database, make_engine
from patron.core.errors import ValidationFailed

#: Called when a table starts loading: (table name, index, number of tables).
LoadProgress = Callable[[str, int, int], None]


def cutoff_for(as_of: date, timezone: str) -> datetime:
    """The UTC instant the local day ``as_of`` ends in ``timezone`` (exclusive end)."""
    try:
        zone = ZoneInfo(timezone)
    except (KeyError, ValueError) as exc:
        raise ValidationFailed(f"unknown time zone {timezone!r}", "timezone") from exc
    return datetime.combine(as_of + timedelta(days=1), dtime(0), tzinfo=zone).astimezone(UTC)


def default_as_of(now: datetime, timezone: str) -> date:
    """The last complete local day before ``now``: yesterday in the brand's zone."""
    return now.astimezone(ZoneInfo(timezone)).date() - timedelta(days=1)


@dataclass
class Source:
    """The canonical tables of one cutoff in an in-process DuckDB (see the module docstring)."""

    con: Any  # ibis.backends.duckdb.Backend (ibis ships no type information)
    as_of: date
    cutoff: datetime
    timezone: str
    backend: str
    loaded: tuple[str, ...]
    timings: dict[str, float] = field(default_factory=dict)
    materialized: set[str] = field(default_factory=set)
    #: How the kept history was brought up to date, when it was read from a warehouse.
    warehouse: Any = None  # analytics.warehouse.Synced (imported lazily)

    @property
    def duck(self) -> duckdb.DuckDBPyConnection:
        """The raw DuckDB connection (for SQL the Ibis layer cannot express)."""
        connection: duckdb.DuckDBPyConnection = self.con.con
        return connection

    def table(self, name: str) -> Any:
        """A canonical (or materialized) table as an ``ibis.Table``."""
        if name not in self.loaded and name not in self.materialized:
            raise KeyError(f"{name!r} was not loaded (loaded: {', '.join(self.loaded)})")
        return self.con.table(name)

    @property
    def sales(self) -> Any:
        return self.table("sales")

    @property
    def lines(self) -> Any:
        return self.table("lines")

    @property
    def members(self) -> Any:
        return self.table("members")

    @property
    def surveys(self) -> Any:
        return self.table("surveys")

    @property
    def holdings(self) -> Any:
        return self.table("holdings")

    @property
    def stores(self) -> Any:
        return self.table("stores")

    @property
    def products(self) -> Any:
        return self.table("products")

    @property
    def categories(self) -> Any:
        return self.table("categories")

    def materialize(self, name: str, expr: Any) -> Any:
        """Compute an Ibis expression once into a table of this source and return it (for
        intermediate results several queries read; later calls return the same table)."""
        if name not in self.materialized:
            self.con.create_table(name, expr, temp=True)
            self.materialized.add(name)
        return self.con.table(name)

    def close(self) -> None:
        self.con.disconnect()


def _engine_of(database: Database | Engine | str) -> tuple[Engine, bool]:
    """(engine, whether we made it and must dispose of it)."""
    if isinstance(database, Database):
        return database.engine, False
    if isinstance(database, Engine):
        return database, False
    return make_engine(database), True


@contextlib.contextmanager
def open_source(database: Database | Engine | str, *, as_of: date, timezone: str,
                tables: Collection[str] | None = None, progress: LoadProgress | None = None,
                memory_limit: str | None = None, warehouse: Path | None = None,
                rebuild: bool = False) -> Iterator[Source]:
    """Load the canonical tables for ``as_of`` and yield them; everything is deleted after.

    The tables live in a temporary DuckDB database file (on SQLite, the one the reading
    child process wrote), so DuckDB pages them to disk rather than failing when memory is
    short; ``memory_limit`` (e.g. ``"4GB"``) caps what it keeps in memory.

    ``warehouse``: a DuckDB file kept between refreshes (``analytics.warehouse``). The
    ``sales`` and ``lines`` tables are then brought up to date in it (``rebuild``: from
    scratch) and read from it, with the per-member tables derived from those asked for
    (``warehouse.derived_for``; ``src.loaded`` names them), and only the small tables are
    loaded; when another process
    holds it, or ``as_of`` is before its day, the history is loaded the usual way.
    """
    import ibis

    from patron.analytics import warehouse as kept_history

    engine, owned = _engine_of(database)
    cutoff = cutoff_for(as_of, timezone)
    canonical, raw = needed(tables)
    workdir = tempfile.TemporaryDirectory(prefix="patron-analytics-")
    path = Path(workdir.name) / "analytics.duckdb"
    src: Source | None = None
    try:
        with contextlib.ExitStack() as held:
            started = time.perf_counter()
            synced = None
            timings: dict[str, float] = {}
            sqlite = engine.dialect.name == "sqlite"
            extracted = False  # the canonical tables the child builds are in ``path``
            if warehouse is not None and "sales" in canonical \
                    and held.enter_context(kept_history.acquire(warehouse)):
                if progress is not None:
                    progress("warehouse", 0, 1)
                # On SQLite the small tables are read by the child process while this one
                # brings the warehouse up to date: the two share nothing but the database
                # file, which both only read, and the two cores halve the load's wait.
                # On PostgreSQL a thread copies them: both drivers let go of the GIL while
                # they wait on the databases.
                small, _ = needed([n for n in canonical if n not in kept_history.KEPT])
                child = (held.enter_context(SqliteExtraction(
                    engine, path, small, cutoff, workdir.name, memory_limit))
                    if sqlite else None)
                copier = (None if sqlite else held.enter_context(
                    ThreadPoolExecutor(1, "analytics-copy")).submit(
                    _copy_postgresql_file, engine, path, small, cutoff, workdir.name,
                    memory_limit))
                synced = kept_history.sync(
                    engine, warehouse, cutoff=cutoff, rebuild=rebuild,
                    memory_limit=memory_limit, derived=kept_history.derived_for(canonical))
                if child is not None:
                    timings = child.wait()
                elif copier is not None:
                    timings = copier.result()
                extracted = synced is not None
                if not extracted:  # a backfill: the history is loaded the usual way
                    path.unlink(missing_ok=True)
            from_file = [n for n in canonical if n in kept_history.KEPT] if synced else []
            build, raw = needed([n for n in canonical if n not in from_file])
            if sqlite and not extracted:
                if progress is not None:
                    progress("sqlite", 0, 1)
                timings = extract_sqlite(engine, path, build, cutoff, workdir.name,
                                          memory_limit)
            con = ibis.duckdb.connect(str(path))
            duck: duckdb.DuckDBPyConnection = con.con
            configure(duck, workdir=workdir.name, memory_limit=memory_limit)
            derived = list(synced.derived) if synced is not None else []
            src = Source(con=con, as_of=as_of, cutoff=cutoff, timezone=timezone,
                         backend=engine.dialect.name,
                         loaded=(*canonical, *derived), warehouse=synced)
            if engine.dialect.name == "postgresql":
                if not extracted:
                    duck.execute(LOAD_COMPRESSION)
                    copy_postgresql(duck, engine, raw, cutoff, Path(workdir.name), progress)
                    timings = {"raw": time.perf_counter() - started,
                               **build_canonical(duck, build, cutoff)}
                    duck.execute("RESET disabled_compression_methods")  # later: the default
            elif engine.dialect.name != "sqlite":  # pragma: no cover - patron runs on these two
                raise ValidationFailed(f"analytics cannot read {engine.dialect.name}",
                                       "database")
            if synced is not None:
                duck.execute(f"ATTACH '{synced.path}' AS warehouse (READ_ONLY)")
                for name in [*from_file, *derived]:
                    duck.execute(f"CREATE VIEW {name} AS "  # noqa: S608 - our names
                                 f"SELECT * FROM warehouse.{name}")
                timings.update({f"warehouse_{k}": v for k, v in synced.timings.items()})
            src.timings.update(timings)
            src.timings["total"] = time.perf_counter() - started
            yield src
            src.close()
            src = None
    finally:
        if src is not None:
            src.close()
        workdir.cleanup()
        if owned:
            engine.dispose()


def extract_sqlite(engine: Engine, out: Path, canonical: list[str], cutoff: datetime,
                   workdir: str, memory_limit: str | None) -> dict[str, float]:
    """Build the canonical tables from the SQLite file in a child process, into ``out``."""
    with SqliteExtraction(engine, out, canonical, cutoff, workdir, memory_limit) as child:
        return child.wait()


class SqliteExtraction:
    """The child process of ``extract_sqlite``, started now and waited for later, so the
    caller can do other work meanwhile. As a context manager it kills a child nobody
    waited for (the caller failed first)."""

    def __init__(self, engine: Engine, out: Path, canonical: list[str], cutoff: datetime,
                 workdir: str, memory_limit: str | None) -> None:
        path = make_url(engine.url).database
        if not path or path == ":memory:":
            raise ValidationFailed("analytics need a SQLite database file, not :memory:",
                                   "database_url")
        self.database = path
        command = [sys.executable, "-m", "patron.analytics.sqlite_extract",
                   str(Path(path).resolve()), str(out), cutoff.astimezone(UTC).isoformat(),
                   "--workdir", workdir, *canonical]
        if memory_limit:
            command += ["--memory-limit", memory_limit]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE,  # noqa: S603
                                        stderr=subprocess.PIPE, text=True)

    def wait(self) -> dict[str, float]:
        """The child's timings once it has finished; raises if it failed."""
        out, err = self.process.communicate()
        if self.process.returncode != 0:
            raise RuntimeError(f"reading {self.database} failed (exit "
                               f"{self.process.returncode}): {err.strip()[-2000:]}")
        timings: dict[str, float] = json.loads(out)
        return timings

    def __enter__(self) -> SqliteExtraction:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.returncode is None:
            self.process.kill()
            self.process.communicate()


def _pg_select(spec: RawTable, cutoff: datetime) -> str:
    """The PostgreSQL SELECT for a raw table (COPY takes no parameters: the cutoff is a
    literal made from a datetime, never from user text)."""
    cols = ", ".join(f'"{c}"' for c, _ in spec.columns)
    literal = f"TIMESTAMPTZ '{cutoff.astimezone(UTC).isoformat()}'"
    conditions = [f'"{spec.before}" < {literal}'] if spec.before else []
    if spec.where:
        conditions.append(f"({spec.where.format(cutoff=literal)})")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    if spec.latest:
        part, order = spec.latest
        return (f'SELECT DISTINCT ON ("{part}") {cols} FROM "{spec.source}"{where} '  # noqa: S608 - our names
                f'ORDER BY "{part}", "{order}" DESC')
    return f'SELECT {cols} FROM "{spec.source}"{where}'  # noqa: S608 - our names


def _copy_postgresql_file(engine: Engine, out: Path, canonical: list[str], cutoff: datetime,
                          workdir: str, memory_limit: str | None) -> dict[str, float]:
    """Copy the raw tables of ``canonical`` out of PostgreSQL into the DuckDB file ``out``
    and build them there, as the SQLite child does (``SqliteExtraction``); seconds taken."""
    started = time.perf_counter()
    build, raw = needed(canonical)
    duck = duckdb.connect(str(out))
    try:
        configure(duck, workdir=workdir, memory_limit=memory_limit)
        duck.execute(LOAD_COMPRESSION)
        copy_postgresql(duck, engine, raw, cutoff, Path(workdir), None)
        timings = {"raw": time.perf_counter() - started, **build_canonical(duck, build, cutoff)}
    finally:
        duck.close()
    return timings


def copy_postgresql(duck: duckdb.DuckDBPyConnection, engine: Engine, raw: list[str],
                     cutoff: datetime, workdir: Path, progress: LoadProgress | None) -> None:
    """Stream each raw table out of PostgreSQL with COPY, one snapshot for all of them."""
    import psycopg

    pooled = engine.raw_connection()
    try:
        driver = pooled.driver_connection
        assert isinstance(driver, psycopg.Connection)
        driver.rollback()  # start from no transaction, so the settings below come first
        with driver.transaction(), driver.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur.execute("SET LOCAL TIME ZONE 'UTC'")
            for i, name in enumerate(raw):
                if progress is not None:
                    progress(name, i, len(raw))
                spec = RAW_TABLES[name]
                path = workdir / f"{name}.csv"
                query = f"COPY ({_pg_select(spec, cutoff)}) TO STDOUT WITH (FORMAT csv)"
                with path.open("wb") as out, cur.copy(query) as copy:
                    for chunk in copy:
                        out.write(chunk)
                columns = ", ".join(f"'{c}': '{k.value}'" for c, k in spec.columns)
                duck.execute(
                    f"CREATE TABLE {spec.raw_name} AS SELECT * FROM read_csv("  # noqa: S608 - our names
                    f"'{path}', header = false, auto_detect = false, "
                    f"allow_quoted_nulls = false, columns = {{{columns}}})")
                path.unlink()
    finally:
        pooled.close()

