"""Analytics refresh (the nightly scoring run) and reads of the latest snapshot.

Design overview
---------------
``refresh`` computes every active member's scores as of one day and stores them as a dated
snapshot, in five timed stages:

1. **load**: the canonical tables into an in-process DuckDB (``source``);
2. **summarise**: one row per member and per member × category (``scores``);
3. **fit**: BG/NBD and Gamma-Gamma on the compressed history;
4. **score**: the vectorised scores;
5. **write**: the snapshot rows, in chunks of short transactions, then the run is marked
   ``succeeded`` (from then on readers see it) and snapshots beyond the newest
   ``keep`` days are deleted: a snapshot is derived data, not a ledger.

A refresh owns its transactions (it is a job, like ``patron demo``), so it takes the
``Database``, not a session. Rewriting a day that already has a snapshot first marks the
old run ``superseded`` (readers fall back to the previous day meanwhile), so readers never
see half a snapshot. Two refreshes of the same day at once are refused.

Reads (``latest_scores``, ``scores_for``, ``segment_counts``, ``latest_run``) take a
session and look at the latest succeeded run's day.
"""

from __future__ import annotations

import io
import sqlite3
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pacsv
from sqlalchemy import CheckConstraint, Engine, delete, func, select, update
from sqlalchemy.orm import Session

from patron.analytics import aggregates, portraits, scores, source, spark
from patron.analytics.models.summary import TimeUnit
from patron.analytics.tables import AnalyticsRun, CategoryCycle, MemberScore
from patron.core.clock import Clock
from patron.core.db import Database
from patron.core.errors import Conflict, NotFound, ValidationFailed
from patron.core.models import Base

STAGES: tuple[str, ...] = ("load", "summarise", "fit", "score", "write")
DEFAULT_KEEP = 3
CHUNK_ROWS = 20_000  # rows per write transaction: well under a second of SQLite's lock
STALE_RUN = timedelta(hours=6)  # a "running" run older than this crashed

#: Called at the start of each stage with (stage, index, number of stages), and once more
#: with ("done", n, n) at the end.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RefreshResult:
    run_id: uuid.UUID
    as_of: date
    members: int
    category_cycles: int
    stages: dict[str, float]
    params: dict[str, Any]
    pruned: list[date] = field(default_factory=list)


def _start_run(db: Database, clock: Clock, as_of: date) -> uuid.UUID:
    now = clock.now()
    with db.write() as session:
        running = session.scalar(select(AnalyticsRun).where(
            AnalyticsRun.as_of == as_of, AnalyticsRun.status == "running",
            AnalyticsRun.started_at > now - STALE_RUN))
        if running is not None:
            raise Conflict(f"A refresh for {as_of} is already running (started "
                           f"{running.started_at:%Y-%m-%d %H:%M} UTC)", "as_of",
                           code="refresh_running")
        run = AnalyticsRun(as_of=as_of, started_at=now, status="running", stages={},
                           params={}, members=0, error="")
        session.add(run)
        session.flush()
        return run.id


def _finish_run(db: Database, clock: Clock, run_id: uuid.UUID, *, status: str,
                stages: dict[str, float], params: dict[str, Any], members: int = 0,
                error: str = "") -> None:
    with db.write() as session:
        run = session.get(AnalyticsRun, run_id)
        if run is None:  # pragma: no cover - the run row is ours
            return
        run.status, run.stages, run.params = status, dict(stages), dict(params)
        run.members, run.error, run.finished_at = members, error[:2000], clock.now()


def _supersede(db: Database, as_of: date, run_id: uuid.UUID) -> None:
    """Hide an earlier snapshot of the same day before its rows are replaced."""
    with db.write() as session:
        session.execute(update(AnalyticsRun).where(
            AnalyticsRun.as_of == as_of, AnalyticsRun.id != run_id,
            AnalyticsRun.status == "succeeded").values(status="superseded"))


def refresh(db: Database, clock: Clock, *, timezone: str, as_of: date | None = None,
            config: scores.ScoreConfig | None = None, keep: int = DEFAULT_KEEP,
            progress: Progress | None = None, memory_limit: str | None = None,
            portrait_config: portraits.PortraitConfig | None = None,
            engine: str = "duckdb", warehouse: Path | None = None,
            rebuild: bool = False) -> RefreshResult:
    """Score every active member as of ``as_of`` (default: yesterday in ``timezone``).

    ``timezone`` is the brand's zone (``Settings.default_timezone``): ``as_of`` is a local
    day and the history runs to its end. ``keep`` snapshots (days) are kept. The same run
    computes the members' profiles, tags and portraits (``portraits``, with
    ``portrait_config``), inside the summarise, score and write stages. ``engine``
    (``Settings.analytics_engine``) ``"spark"`` computes the member summaries on Spark over
    the exported tables (``analytics.spark``); portraits stay on DuckDB. ``warehouse``
    (``Settings.analytics_warehouse_path()``): the DuckDB file that keeps the sales history
    between refreshes, so the load reads only what changed (``analytics.warehouse``;
    ``rebuild`` builds it from scratch); None loads the whole history.
    """
    if keep < 1:
        raise ValidationFailed("keep at least one snapshot", "keep")
    config = config or scores.ScoreConfig()
    day = as_of or source.default_as_of(clock.now(), timezone)
    source.cutoff_for(day, timezone)  # validates the zone before anything is written
    spark.check_engine(engine)  # ... and the engine (``Settings.analytics_engine``)
    run_id = _start_run(db, clock, day)
    stages: dict[str, float] = {}
    params: dict[str, Any] = {"clv_months": config.clv_months, "margin": config.margin,
                              "monthly_discount": config.monthly_discount,
                              "timezone": timezone}
    current = STAGES[0]
    # seconds per part inside the stages (scores, portraits, dashboard): what the bench
    # and an operator need to see which part of a slow stage is slow
    parts: dict[str, float] = {}
    params["parts"] = parts
    # ... and their CPU seconds (this process, all threads): on a busy machine wall time
    # says more about the neighbours than about the part
    parts_cpu: dict[str, float] = {}
    params["parts_cpu"] = parts_cpu
    cpu_mark = time.process_time()

    def lap(name: str, since: float) -> float:
        nonlocal cpu_mark
        now = time.perf_counter()
        parts[name] = round(parts.get(name, 0.0) + now - since, 3)
        cpu = time.process_time()
        parts_cpu[name] = round(parts_cpu.get(name, 0.0) + cpu - cpu_mark, 3)
        cpu_mark = cpu
        return now

    def stage(name: str) -> float:
        nonlocal current, cpu_mark
        current = name
        if progress is not None:
            progress(name, STAGES.index(name), len(STAGES))
        cpu_mark = time.process_time()
        return time.perf_counter()

    try:
        began = stage("load")
        with source.open_source(db, as_of=day, timezone=timezone, memory_limit=memory_limit,
                                warehouse=warehouse, rebuild=rebuild) as src:
            stages["load"] = time.perf_counter() - began
            if src.warehouse is not None:
                params["warehouse"] = {"mode": src.warehouse.mode,
                                       "reason": src.warehouse.reason,
                                       "changed_sales": src.warehouse.changed_sales,
                                       "seconds": src.warehouse.timings}
            began = stage("summarise")
            with spark.engine_source(src, engine) as scored:  # DuckDB, or Spark over it
                history = scores.member_history(scored)
                cycles = scores.category_cycles(scored)
            mark = lap("scores", began)
            collected = portraits.collect(src, portrait_config)  # portraits hook (1/3)
            mark = lap("portraits", mark)
            # dashboard hook (1/3): history figures and next-best products from this source
            precomputed = aggregates.collect(src, as_of=day, timezone=timezone,
                                             clock_now=clock.now())
            lap("dashboard", mark)
        stages["summarise"] = time.perf_counter() - began
        began = stage("fit")
        fitted = scores.fit(history)
        params.update(fitted.params)
        stages["fit"] = time.perf_counter() - began
        began = stage("score")
        table = scores.score(history, fitted, config)
        mark = lap("scores", began)
        # portraits hook (2/3): profiles, tags and clusters of this snapshot
        computed = portraits.build(db, collected, table, as_of=day, config=portrait_config)
        params["portraits"] = computed.params
        lap("portraits", mark)
        stages["score"] = time.perf_counter() - began
        began = stage("write")
        _supersede(db, day, run_id)
        write_snapshot(db, as_of=day, member_scores=table, category_cycles=cycles)
        mark = lap("scores", began)
        portraits.write(db, as_of=day, computed=computed)  # portraits hook (3/3) ...
        mark = lap("portraits", mark)
        # dashboard hook (2/3): the snapshot's groups, the history figures, next-best
        aggregates.write(db, as_of=day, collected=precomputed, scores=table)
        lap("dashboard", mark)
        _finish_run(db, clock, run_id, status="succeeded", stages=stages, params=params,
                    members=table.num_rows)
        pruned = prune(db, keep=keep)
        portraits.prune(db)  # ... and its days follow the scores' days
        aggregates.prune(db)  # dashboard hook (3/3): so do the dashboard's and next-best's
        stages["write"] = time.perf_counter() - began
        _record_stages(db, run_id, stages)
    except Exception as exc:
        params["failed_stage"] = current
        detail = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
        _finish_run(db, clock, run_id, status="failed", stages=stages, params=params,
                    error=detail)
        raise
    if progress is not None:
        progress("done", len(STAGES), len(STAGES))
    return RefreshResult(run_id=run_id, as_of=day, members=table.num_rows,
                         category_cycles=cycles.num_rows, stages=stages, params=params,
                         pruned=pruned)


def _record_stages(db: Database, run_id: uuid.UUID, stages: dict[str, float]) -> None:
    """The write stage's time is known only after the run is marked succeeded."""
    with db.write() as session:
        run = session.get(AnalyticsRun, run_id)
        if run is not None:
            run.stages = dict(stages)


def nightly(db: Database, clock: Clock, *, timezone: str, day: date | None = None,
            keep: int = DEFAULT_KEEP, engine: str = "duckdb",
            warehouse: Path | None = None) -> dict[str, Any]:
    """The worker's nightly job: refresh as of the day before ``day`` (the local day the
    schedule fired; default today in ``timezone``) on ``engine``
    (``Settings.analytics_engine``), returning counts for the run log.

    Takes the ``Database`` because a refresh commits in chunks: call it outside any write
    session (inside the worker's ``db.write()`` block is fine as long as that session has
    not executed anything, so it holds no lock).
    """
    today = day or (source.default_as_of(clock.now(), timezone) + timedelta(days=1))
    result = refresh(db, clock, timezone=timezone, as_of=today - timedelta(days=1), keep=keep,
                     engine=engine, warehouse=warehouse)
    return {"members": result.members, "category_cycles": result.category_cycles,
            "pruned": len(result.pruned),
            "seconds": round(sum(result.stages.values()), 3)}


def fit_database(db: Database, clock: Clock, *, timezone: str, as_of: date | None = None,
                 unit: TimeUnit = TimeUnit.DAYS,
                 warehouse: Path | None = None) -> tuple[date, scores.Fit]:
    """Fit the models on the database's sales through ``as_of`` without writing anything
    to the database (``patron analytics fit`` without ``--data``). It reads what the
    purchase models need and nothing more: the sales, and who is not active. ``warehouse``:
    the kept history (``analytics.warehouse``), brought up to date as a refresh would
    (its purchase totals only; the rest catch up at the next refresh)."""
    day = as_of or source.default_as_of(clock.now(), timezone)
    with source.open_source(db, as_of=day, timezone=timezone, warehouse=warehouse,
                            tables=["sales", "inactive_members"]) as src:
        inputs = scores.model_inputs(src)
    return day, scores.fit(inputs, unit=unit)


# ---------------------------------------------------------------- writing


SCORE_COLUMNS: tuple[str, ...] = tuple(c.name for c in MemberScore.__table__.columns)
CYCLE_COLUMNS: tuple[str, ...] = tuple(c.name for c in CategoryCycle.__table__.columns)


def _with_as_of(table: pa.Table, as_of: date, columns: Sequence[str]) -> pa.Table:
    table = table.append_column("as_of", pa.array([as_of] * table.num_rows, type=pa.date32()))
    return table.select(list(columns))


def write_snapshot(db: Database, *, as_of: date, member_scores: pa.Table,
                   category_cycles: pa.Table) -> None:
    """Replace the rows of ``as_of`` with these, in chunks (see the module docstring)."""
    scores_rows = _with_as_of(member_scores, as_of, SCORE_COLUMNS)
    cycle_rows = _with_as_of(category_cycles, as_of, CYCLE_COLUMNS)
    delete_day(db, MemberScore, as_of)
    delete_day(db, CategoryCycle, as_of)
    _insert(db, MemberScore.__tablename__, scores_rows)
    _insert(db, CategoryCycle.__tablename__, cycle_rows)


def delete_day(db: Database, model: Any, as_of: date) -> None:
    """Delete one day's rows of a per-member snapshot table (``model`` has ``as_of`` and
    ``member_id`` leading its primary key: scores, cycles, profiles, next-best products) a
    chunk per transaction, a short lock each on SQLite: each chunk is a primary-key range,
    up to the member ``CHUNK_ROWS`` rows in."""
    while True:
        with db.write() as session:
            bound = session.scalar(select(model.member_id).where(model.as_of == as_of)
                                   .order_by(model.member_id).offset(CHUNK_ROWS).limit(1))
            doomed = delete(model).where(model.as_of == as_of)
            if bound is not None:
                doomed = doomed.where(model.member_id < bound)
            session.execute(doomed)
        if bound is None:
            return


def _insert(db: Database, name: str, table: pa.Table) -> None:
    """Append ``table``'s rows to the table ``name`` in chunks of short transactions."""
    if db.engine.dialect.name == "postgresql":
        _copy_postgresql(db.engine, name, table)
    else:
        _insert_sqlite(db, name, table)


def _sqlite_ready(table: pa.Table) -> pa.Table:
    """Values as SQLAlchemy stores them on SQLite: UUIDs as 32 hex digits, dates as text."""
    columns = []
    for name in table.column_names:
        col = table.column(name)
        if name.endswith("_id"):
            col = pc.replace_substring(col, "-", "")
        elif pa.types.is_date(col.type):
            col = col.cast(pa.string())
        columns.append(col)
    return pa.table(columns, names=table.column_names)


def _checks_hold(name: str, table: pa.Table) -> bool:
    """Whether every CHECK constraint of the table ``name`` holds on every row of ``table``.

    The constraints' own SQL is evaluated column-wise by DuckDB over the Arrow table (a
    CHECK passes when its expression is true or NULL). False when one fails, and also when
    DuckDB cannot evaluate one: the caller then leaves the checking to the database.
    """
    import duckdb

    schema = Base.metadata.tables.get(name)
    if schema is None:  # not a table patron declares: nothing to evaluate it against
        return False
    checks = [str(c.sqltext) for c in schema.constraints if isinstance(c, CheckConstraint)]
    if not checks:
        return True
    failing = ", ".join(f"count(*) FILTER (WHERE NOT coalesce(({check}), true))"
                        for check in checks)
    duck = duckdb.connect()
    try:
        duck.register("candidate_rows", table)
        counts = duck.execute(f"SELECT {failing} FROM candidate_rows").fetchone()  # noqa: S608
    except (duckdb.Error, pa.ArrowException):  # a type DuckDB cannot take, an odd check
        return False
    finally:
        duck.close()
    return counts is not None and not any(counts)


def _insert_sqlite(db: Database, name: str, table: pa.Table) -> None:
    """executemany per chunk, rows streamed from per-column lists.

    Two things make this several times faster than binding Arrow rows one by one:

    * evaluating the table's CHECK constraints row by row is most of SQLite's cost of an
      insert (35 columns, eight constraints on ``member_scores``). They are evaluated here
      once, column-wise (``_checks_hold``), and SQLite skips them for these statements
      (``PRAGMA ignore_check_constraints``, on this connection and only while it
      inserts). Should DuckDB find a violation, or be unable to evaluate a constraint,
      SQLite checks every row as usual and refuses the bad one.
    * rows are tuples zipped from plain Python lists as SQLite consumes them, never held
      all at once: a million live tuples would keep the garbage collector scanning.
    """
    ready = _sqlite_ready(table)
    skip_checks = _checks_hold(name, table)
    cols = ", ".join(f'"{c}"' for c in ready.column_names)
    marks = ", ".join("?" for _ in ready.column_names)
    sql = f'INSERT INTO "{name}" ({cols}) VALUES ({marks})'  # noqa: S608 - our own names
    for start in range(0, ready.num_rows, CHUNK_ROWS):
        chunk = ready.slice(start, CHUNK_ROWS)
        columns = [chunk.column(c).to_pylist() for c in chunk.column_names]
        with db.write() as session:
            driver = session.connection().connection.driver_connection
            assert isinstance(driver, sqlite3.Connection)
            if not skip_checks:
                driver.executemany(sql, zip(*columns, strict=True))
                continue
            driver.execute("PRAGMA ignore_check_constraints=ON")
            try:
                driver.executemany(sql, zip(*columns, strict=True))
            finally:
                driver.execute("PRAGMA ignore_check_constraints=OFF")


def _copy_postgresql(engine: Engine, name: str, table: pa.Table) -> None:
    """COPY the rows in as CSV, one transaction per chunk."""
    import psycopg

    cols = ", ".join(f'"{c}"' for c in table.column_names)
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    for start in range(0, table.num_rows, CHUNK_ROWS * 5):
        buffer = io.BytesIO()
        pacsv.write_csv(table.slice(start, CHUNK_ROWS * 5), buffer, options)
        pooled = engine.raw_connection()
        try:
            driver = pooled.driver_connection
            assert isinstance(driver, psycopg.Connection)
            sql = f'COPY "{name}" ({cols}) FROM STDIN WITH (FORMAT csv)'
            with driver.cursor() as cur, cur.copy(sql) as copy:
                copy.write(buffer.getvalue())
            pooled.commit()
        finally:
            pooled.close()


def prune(db: Database, *, keep: int) -> list[date]:
    """Delete snapshots beyond the newest ``keep`` succeeded days, and rows of days no
    succeeded run stands behind (a crashed write), except a day still being written."""
    with db.read() as session:
        good = list(session.scalars(select(AnalyticsRun.as_of).where(
            AnalyticsRun.status == "succeeded").distinct().order_by(
            AnalyticsRun.as_of.desc())))
        running = set(session.scalars(select(AnalyticsRun.as_of).where(
            AnalyticsRun.status == "running")))
        present = set(snapshot_days(session, MemberScore)) | set(
            snapshot_days(session, CategoryCycle))
    kept = set(good[:keep]) | running
    doomed = sorted(present - kept)
    for day in doomed:
        delete_day(db, MemberScore, day)
        delete_day(db, CategoryCycle, day)
    return doomed


def days_behind_scores(db: Database, *models: Any) -> list[date]:
    """The days the derived tables ``models`` (each with an ``as_of`` column) hold but the
    scores no longer do, except a day a refresh is still writing: what their ``prune``
    deletes, so that every derived day follows the scores' days (``prune`` decides)."""
    with db.read() as session:
        scored = set(snapshot_days(session, MemberScore))
        running = set(session.scalars(select(AnalyticsRun.as_of).where(
            AnalyticsRun.status == "running")))
        present: set[date] = set()
        for model in models:
            present |= set(snapshot_days(session, model))
    return sorted(present - scored - running)


def snapshot_days(session: Session, model: Any) -> list[date]:
    """The days a snapshot table (``model``, its ``as_of`` leading an index) holds, oldest
    first: one index seek per day (the smallest day after the last one found). A
    ``SELECT DISTINCT as_of`` reads every entry of the index instead, on SQLite 1.5 s for
    a million score rows and 10 s for the next-best products, every night, to find the
    three or four days a table keeps."""
    days: list[date] = []
    while True:
        first = select(func.min(model.as_of))
        if days:
            first = first.where(model.as_of > days[-1])
        day = session.scalar(first)
        if day is None:
            return days
        days.append(day)


# ---------------------------------------------------------------- reads


def latest_run(session: Session) -> AnalyticsRun | None:
    """The newest refresh of any outcome (for "when did analytics last run, and how");
    runs started at the same instant are told apart by their time-ordered ids."""
    return session.scalar(select(AnalyticsRun).order_by(AnalyticsRun.started_at.desc(),
                                                        AnalyticsRun.id.desc()).limit(1))


def latest_as_of(session: Session) -> date | None:
    """The day of the snapshot readers see: the latest succeeded run's."""
    return session.scalar(select(func.max(AnalyticsRun.as_of))
                          .where(AnalyticsRun.status == "succeeded"))


def latest_scores(session: Session, *, member_id: uuid.UUID) -> MemberScore | None:
    """A member's row in the latest snapshot, or None (no snapshot, or not scored)."""
    day = latest_as_of(session)
    if day is None:
        return None
    return session.get(MemberScore, (day, member_id))


def latest_scores_or_raise(session: Session, *, member_id: uuid.UUID) -> MemberScore:
    day = latest_as_of(session)
    if day is None:
        raise NotFound("No analytics snapshot yet: run `patron analytics refresh` (the "
                       "worker runs it nightly)", "member_id", code="no_snapshot")
    row = session.get(MemberScore, (day, member_id))
    if row is None:
        raise NotFound(f"This member has no scores in the snapshot of {day}: they joined "
                       "later, or are not an active member", "member_id", code="not_scored")
    return row


def scores_for(session: Session, *, member_ids: Iterable[uuid.UUID]
               ) -> dict[uuid.UUID, MemberScore]:
    """Latest-snapshot rows of several members (missing ones are left out)."""
    day = latest_as_of(session)
    wanted = list(dict.fromkeys(member_ids))
    if day is None or not wanted:
        return {}
    found: dict[uuid.UUID, MemberScore] = {}
    for start in range(0, len(wanted), 500):
        rows = session.scalars(select(MemberScore).where(
            MemberScore.as_of == day, MemberScore.member_id.in_(wanted[start:start + 500])))
        found.update((row.member_id, row) for row in rows)
    return found


def member_category_cycles(session: Session, *, member_id: uuid.UUID) -> list[CategoryCycle]:
    """A member's category cycles in the latest snapshot, soonest due first."""
    day = latest_as_of(session)
    if day is None:
        return []
    return list(session.scalars(select(CategoryCycle).where(
        CategoryCycle.as_of == day, CategoryCycle.member_id == member_id)
        .order_by(CategoryCycle.next_due_on)))


@dataclass(frozen=True)
class GroupTotals:
    """Members of one segment or stage and what they bought and are expected to be worth."""

    name: str | None  # None: members with no purchase (no RFM segment)
    members: int
    revenue_minor: int  # net, whole history
    revenue_365_minor: int  # net, last 365 days
    clv_minor: int
    mean_p_alive: float | None


@dataclass(frozen=True)
class SegmentReport:
    as_of: date
    members: int
    segments: list[GroupTotals]
    stages: list[GroupTotals]


def segment_counts(session: Session, *, as_of: date | None = None) -> SegmentReport | None:
    """Counts and revenue per RFM segment and per lifecycle stage in the latest snapshot
    (or the one of ``as_of``, if it succeeded); None when there is none."""
    day = latest_as_of(session)
    if as_of is not None:
        day = session.scalar(select(AnalyticsRun.as_of).where(
            AnalyticsRun.as_of == as_of, AnalyticsRun.status == "succeeded").limit(1))
    if day is None:
        return None

    def totals(column: Any) -> list[GroupTotals]:
        rows = session.execute(
            select(column, func.count(), func.coalesce(func.sum(MemberScore.total_net_minor), 0),
                   func.coalesce(func.sum(MemberScore.net_365_minor), 0),
                   func.coalesce(func.sum(MemberScore.clv_minor), 0),
                   func.avg(MemberScore.p_alive))
            .where(MemberScore.as_of == day).group_by(column)
            .order_by(func.sum(MemberScore.total_net_minor).desc()))
        return [GroupTotals(name=name, members=int(n), revenue_minor=int(revenue),
                            revenue_365_minor=int(recent), clv_minor=int(value),
                            mean_p_alive=None if alive is None else float(alive))
                for name, n, revenue, recent, value, alive in rows]

    segments = totals(MemberScore.rfm_segment)
    return SegmentReport(as_of=day, members=sum(g.members for g in segments),
                         segments=segments, stages=totals(MemberScore.lifecycle_stage))


# ---------------------------------------------------------------- reads for the member page
# (added for the member 360 page, issue 8)


def member_score_history(session: Session, *, member_id: uuid.UUID, limit: int = 30
                         ) -> list[MemberScore]:
    """A member's rows in the succeeded snapshots still kept, oldest first: the P(alive)
    trend on the member page (``refresh`` keeps the newest few days)."""
    days = list(session.scalars(select(AnalyticsRun.as_of)
                                .where(AnalyticsRun.status == "succeeded")
                                .group_by(AnalyticsRun.as_of)
                                .order_by(AnalyticsRun.as_of.desc()).limit(limit)))
    if not days:
        return []
    return list(session.scalars(select(MemberScore).where(
        MemberScore.as_of.in_(days), MemberScore.member_id == member_id)
        .order_by(MemberScore.as_of)))
