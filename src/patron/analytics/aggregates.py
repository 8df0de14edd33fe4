"""The dashboard's figures and every member's next-best products, precomputed by the
nightly refresh so that a page reads a few hundred rows instead of a million.

Design overview
---------------
At a million members the dashboard cannot aggregate at request time: grouping the
snapshot's ``member_scores`` took 4.7 s, and the history figures (a DuckDB load of the
whole sales history) 48-90 s. The refresh already has both in hand, so it writes:

* ``dashboard_groups``: the snapshot's scored members grouped by (home store, R score, FM
  score, RFM segment, lifecycle stage) with their counts and sums (``group_rows``): at
  most ~150 rows a store. Every snapshot figure is a sum of these, so any set of stores
  is answered by summing the rows of its stores: the same numbers as the scan.
* ``dashboard_history``: the history figures (``history_numbers``) of the dashboard's
  default period, the twelve months to the snapshot day, for every store together and
  for each store alone, from the Source the refresh has open, and stored as JSON
  (``encode`` / ``decode`` round-trip exactly, floats included). ``store_histories``
  computes every scope in one grouped pass per view (``views.leaky_buckets`` and its
  siblings): the same numbers as ``history_numbers``, which the dashboard calls on demand
  for one scope (a test compares them), at about the cost of one scope instead of one
  pass per store plus one for all of them.
* ``next_best_products``: the top ``NEXT_BEST`` products of every member with history
  (``recommend.precompute``: the baskets from the engine, the item-to-item scores in
  NumPy; the same picks as ``recommend.recommendations`` over the whole member base).

``collect`` runs while the refresh's Source is open (the history views and the
recommendations need it), ``write`` in its write stage (the groups need the scores), and
``prune`` follows the scores' days, as the portraits do. Rows of a day become visible with
its run (readers go through the latest succeeded run's day), like the scores.

What a reader gets when the precompute is missing (a snapshot written before this table
existed, or by hand): the dashboard falls back to the scan and to the on-demand history,
the member page to on-demand recommendations (``recommend.next_best``).
"""

from __future__ import annotations

import dataclasses
import re
import time
import types
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Union, get_args, get_origin, get_type_hints

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from patron.analytics import recommend, views
from patron.analytics.source import Source
from patron.analytics.tables import (
    AnalyticsRun,
    DashboardGroup,
    DashboardHistory,
    NextBestProduct,
)
from patron.analytics.views import Period
from patron.core.db import Database

#: P(alive) below which a scored member counts as at risk (as ``views.revenue_at_risk``).
AT_RISK_P_ALIVE = 0.5
#: Next-best products kept per member and snapshot (the member page shows five).
NEXT_BEST = 5
#: ``dashboard_history.scope`` of every store together (one store: its id, 32 hex digits).
ALL_STORES = "all"


def default_period(last_on: date) -> Period:
    """The dashboard's default period: the twelve calendar months ending ``last_on``."""
    return Period(views.month_start(views.month_index(last_on) - 11), last_on)


def scope_key(store_ids: Collection[uuid.UUID] | None) -> str | None:
    """The ``dashboard_history.scope`` of a set of stores, or None when such a scope is
    not precomputed (several stores, but not all of them)."""
    if store_ids is None:
        return ALL_STORES
    if len(store_ids) == 1:
        return next(iter(store_ids)).hex
    return None


# ---------------------------------------------------------------- the history figures


@dataclass(frozen=True)
class HistoryNumbers:
    """What the sales history says about a scope and period (see
    ``dashboard.HistoryFigures``, which adds the scope, liabilities and campaigns)."""

    active_members: int
    new_members: int
    repeat: views.RepeatRate
    churn_rate: float | None
    pareto: views.ParetoReport
    bucket: views.LeakyBucket
    cohorts: views.CohortReport
    points_outstanding: int
    stored_value_minor: int


def history_numbers(src: Source, *, period: Period, tz: str,
                    store_ids: Collection[uuid.UUID] | None) -> HistoryNumbers:
    """Every history figure of the dashboard for one scope, from an open Source (which
    must hold ``sales``, ``members`` and ``holdings``)."""
    bucket = views.leaky_bucket(src.sales, src.members, period=period, tz=tz,
                                store_ids=store_ids)
    cohorts = views.cohort_retention(src.sales, src.members, period=period, tz=tz,
                                     store_ids=store_ids)
    repeat = views.repeat_rate(src.sales, src.members, period=period, tz=tz,
                               store_ids=store_ids)
    pareto = views.pareto(src.sales, period=period, tz=tz, store_ids=store_ids)
    holdings = views.members_in_scope(src.members, store_ids).select("member_id").join(
        src.holdings, "member_id")
    rows = holdings.aggregate(points=holdings.points_available.sum(),
                              wallet=holdings.wallet_minor.sum()).to_pyarrow().to_pylist()
    held: dict[str, object] = rows[0] if rows else {}
    return _numbers(bucket=bucket, cohorts=cohorts, repeat=repeat, pareto=pareto,
                    points=_as_int(held.get("points")), wallet=_as_int(held.get("wallet")))


def store_histories(src: Source, *, period: Period, tz: str,
                    store_ids: Collection[uuid.UUID]) -> dict[uuid.UUID | None, HistoryNumbers]:
    """``history_numbers`` of every store (key None) and of each of ``store_ids`` alone,
    with one grouped pass per view instead of one pass per scope (``views.leaky_buckets``
    and its siblings explain why the numbers are the same)."""
    ids = sorted(store_ids, key=str)
    days = src.materialize(
        "dashboard_days_" + "_".join((period.first_on.strftime("%Y%m%d"),
                                      period.last_on.strftime("%Y%m%d"),
                                      re.sub(r"\W", "_", tz))),
        views.purchase_days(src.sales, None, None, tz=tz, around=period))
    buckets = views.leaky_buckets(src.sales, src.members, period=period, tz=tz,
                                  store_ids=ids, days=days)
    cohorts = views.cohort_retentions(src.sales, src.members, period=period, tz=tz,
                                      store_ids=ids, days=days)
    repeats = views.repeat_rates(src.sales, src.members, period=period, tz=tz, store_ids=ids)
    paretos = views.paretos(src.sales, period=period, tz=tz, store_ids=ids)
    m = src.members
    held = m.select(member_id=m.member_id, home=m.home_store_id.cast("string")).join(
        src.holdings, "member_id")
    by_home: dict[str | None, tuple[int, int]] = {
        None if r["home"] is None else str(r["home"]):
            (_as_int(r["points"]), _as_int(r["wallet"]))
        for r in held.group_by("home").aggregate(
            points=held.points_available.sum(),
            wallet=held.wallet_minor.sum()).to_pyarrow().to_pylist()}
    out: dict[uuid.UUID | None, HistoryNumbers] = {}
    for store in (None, *ids):
        key = None if store is None else str(store)
        mine = list(by_home.values()) if key is None else \
            [by_home[key]] if key in by_home else []
        out[store] = _numbers(bucket=buckets[key], cohorts=cohorts[key], repeat=repeats[key],
                              pareto=paretos[key], points=sum(p for p, _ in mine),
                              wallet=sum(w for _, w in mine))
    return out


def _numbers(*, bucket: views.LeakyBucket, cohorts: views.CohortReport,
             repeat: views.RepeatRate, pareto: views.ParetoReport, points: int,
             wallet: int) -> HistoryNumbers:
    active_start = sum(p.active_start for p in bucket.periods)
    churned = sum(p.churned for p in bucket.periods)
    return HistoryNumbers(
        active_members=bucket.periods[-1].active_end if bucket.periods else 0,
        new_members=sum(p.joined for p in bucket.periods), repeat=repeat,
        churn_rate=churned / active_start if active_start else None,
        pareto=pareto, bucket=bucket, cohorts=cohorts,
        points_outstanding=points, stored_value_minor=wallet)


def _as_int(value: object) -> int:
    return int(value) if isinstance(value, int | float | Decimal) else 0


def encode(value: Any) -> Any:
    """A dataclass of figures as JSON values (dates as ISO text, enums as their value)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [encode(v) for v in value]
    return value


def decode(kind: Any, raw: Any) -> Any:
    """The inverse of ``encode`` for the type ``kind`` (a dataclass, or a field's type)."""
    origin = get_origin(kind)
    if origin is Union or origin is types.UnionType:
        if raw is None:
            return None
        return decode(next(a for a in get_args(kind) if a is not type(None)), raw)
    if origin is tuple:
        return tuple(decode(get_args(kind)[0], v) for v in raw)
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        hints = get_type_hints(kind)
        return kind(**{f.name: decode(hints[f.name], raw[f.name])
                       for f in dataclasses.fields(kind) if f.name in raw})
    if kind is datetime:
        return datetime.fromisoformat(raw)
    if kind is date:
        return date.fromisoformat(raw)
    if isinstance(kind, type) and issubclass(kind, Enum):
        return kind(raw)
    if kind is float:
        return float(raw)
    if kind is int:
        return int(raw)
    return raw


@dataclass(frozen=True)
class StoredHistory:
    """A precomputed history of one scope: the numbers, when and in how long."""

    numbers: HistoryNumbers
    computed_at: datetime
    seconds: float


def stored_history(session: Session, *, period: Period, tz: str,
                   store_ids: Collection[uuid.UUID] | None) -> StoredHistory | None:
    """The precomputed history figures of this scope, if a succeeded refresh of the
    period's last day wrote them for this period and time zone; else None."""
    key = scope_key(store_ids)
    if key is None:
        return None
    row = session.scalar(
        select(DashboardHistory).where(DashboardHistory.as_of == period.last_on,
                                       DashboardHistory.scope == key)
        .where(select(AnalyticsRun.id).where(AnalyticsRun.as_of == period.last_on,
                                             AnalyticsRun.status == "succeeded").exists()))
    if row is None or row.first_on != period.first_on or row.timezone != tz:
        return None
    figures = row.figures
    return StoredHistory(numbers=decode(HistoryNumbers, figures["numbers"]),
                         computed_at=datetime.fromisoformat(figures["computed_at"]),
                         seconds=float(row.seconds))


# ---------------------------------------------------------------- the snapshot groups

GROUP_KEYS = ("store_id", "r_score", "fm_score", "rfm_segment", "lifecycle_stage")
GROUP_SUMS = ("members", "revenue_365_minor", "clv_minor", "scored", "at_risk",
              "clv_scored_minor", "clv_at_risk_minor")


def group_rows(scores: pa.Table, home_stores: pa.Table) -> pa.Table:
    """The ``dashboard_groups`` rows of a day (without ``as_of`` and ``seq``) from the
    refresh's score table and (member_id, store_id) of every member, ids as text."""
    joined = scores.select(["member_id", "r_score", "fm_score", "rfm_segment",
                            "lifecycle_stage", "net_365_minor", "clv_minor", "p_alive"]
                           ).join(home_stores, keys="member_id", join_type="left outer")
    scored = pc.is_valid(joined.column("p_alive"))
    risky = pc.and_(scored, pc.fill_null(pc.less(joined.column("p_alive"), AT_RISK_P_ALIVE),
                                         False))
    clv = pc.fill_null(joined.column("clv_minor").cast(pa.int64()), 0)
    zero = pa.scalar(0, pa.int64())
    work = pa.table({
        "store_id": joined.column("store_id"),
        "r_score": joined.column("r_score").cast(pa.int64()),
        "fm_score": joined.column("fm_score").cast(pa.int64()),
        "rfm_segment": joined.column("rfm_segment"),
        "lifecycle_stage": joined.column("lifecycle_stage"),
        "one": pa.array([1] * joined.num_rows, pa.int64()),
        "net": joined.column("net_365_minor").cast(pa.int64()),
        "clv": clv,
        "scored": pc.if_else(scored, 1, zero),
        "risky": pc.if_else(risky, 1, zero),
        "clv_scored": pc.if_else(scored, clv, zero),
        "clv_risky": pc.if_else(risky, clv, zero),
    })
    grouped = work.group_by(list(GROUP_KEYS), use_threads=False).aggregate(
        [(c, "sum") for c in ("one", "net", "clv", "scored", "risky", "clv_scored",
                              "clv_risky")])
    grouped = grouped.rename_columns(
        {"one_sum": "members", "net_sum": "revenue_365_minor", "clv_sum": "clv_minor",
         "scored_sum": "scored", "risky_sum": "at_risk", "clv_scored_sum": "clv_scored_minor",
         "clv_risky_sum": "clv_at_risk_minor"})
    return grouped.sort_by([(k, "ascending") for k in GROUP_KEYS]).select(
        [*GROUP_KEYS, *GROUP_SUMS])


def has_groups(session: Session, day: date) -> bool:
    """Whether the refresh of ``day`` wrote its dashboard groups."""
    return session.scalar(select(DashboardGroup.seq).where(DashboardGroup.as_of == day)
                          .limit(1)) is not None


# ---------------------------------------------------------------- the refresh's hooks


@dataclass
class Collected:
    """What ``collect`` took from the Source: home stores, history figures, next-best."""

    timezone: str
    home_stores: pa.Table  # member_id, store_id (text)
    history: list[tuple[str, StoredHistory]] = field(default_factory=list)
    next_best: pa.Table | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def collect(src: Source, *, as_of: date, timezone: str, clock_now: datetime,
            top_n: int = NEXT_BEST) -> Collected:
    """Compute, from the refresh's open Source, the default period's history figures of
    every store and each store, and every member's next-best products."""
    started = time.perf_counter()
    members = src.members
    home = members.select(member_id=members.member_id.cast("string"),
                          store_id=members.home_store_id.cast("string")).to_pyarrow()
    out = Collected(timezone=timezone, home_stores=home)
    period = default_period(as_of)
    stores = sorted(uuid.UUID(str(s)) for s in
                    src.stores.select("store_id").to_pyarrow().column("store_id").to_pylist())
    numbers = store_histories(src, period=period, tz=timezone, store_ids=stores)
    seconds = time.perf_counter() - started  # one pass for every scope: each took it all
    for store, figures in numbers.items():
        key = scope_key(None if store is None else frozenset({store}))
        assert key is not None  # every store, or one
        out.history.append((key, StoredHistory(numbers=figures, computed_at=clock_now,
                                               seconds=seconds)))
    out.seconds["history"] = time.perf_counter() - started
    began = time.perf_counter()
    out.next_best = recommend.precompute(src, as_of=as_of, tz=timezone, top_n=top_n)
    out.seconds["next_best"] = time.perf_counter() - began
    return out


def write(db: Database, *, as_of: date, collected: Collected, scores: pa.Table) -> None:
    """Replace the day's dashboard groups, history figures and next-best products."""
    from patron.analytics import service as analytics  # the snapshot writer (no cycle)

    began = time.perf_counter()
    _delete_day(db, as_of)
    groups = group_rows(scores, collected.home_stores)
    history = [DashboardHistory(as_of=as_of, scope=key, timezone=collected.timezone,
                                first_on=default_period(as_of).first_on,
                                figures={"numbers": encode(stored.numbers),
                                         "computed_at": stored.computed_at.isoformat()},
                                seconds=stored.seconds)
               for key, stored in collected.history]
    with db.write() as session:
        session.add_all(history)
    rows = groups.to_pylist()
    with db.write() as session:
        session.add_all(DashboardGroup(as_of=as_of, seq=i + 1,
                                       **{**row, "store_id": _uuid(row["store_id"])})
                        for i, row in enumerate(rows))
    picks = collected.next_best
    if picks is not None and picks.num_rows:
        # in primary-key order (as_of, member_id, rank): SQLite then appends to the key's
        # B-tree instead of inserting at random places of it; UUID text with dashes sorts
        # as their 32 hex digits. ``recommend.top_products`` gives them in that order
        # already (a sort of the 5 M rows of a million members took ~3 CPU s)
        if not _in_key_order(picks):
            picks = picks.sort_by([("member_id", "ascending"), ("rank", "ascending")])
        table = pa.table({
            "as_of": pa.array([as_of] * picks.num_rows, pa.date32()),
            "member_id": picks.column("member_id").cast(pa.string()),
            "rank": picks.column("rank").cast(pa.int64()),
            "product_id": picks.column("product_id").cast(pa.string()),
            "because_id": picks.column("because").cast(pa.string()),
            "score": picks.column("score").cast(pa.float64()),
        })
        analytics._insert(db, NextBestProduct.__tablename__, table)
    collected.seconds["write"] = time.perf_counter() - began


def _in_key_order(picks: pa.Table) -> bool:
    """Whether the picks are sorted by (member_id, rank): a linear check instead of a
    sort of millions of rows."""
    if picks.num_rows < 2:
        return True
    members = picks.column("member_id").cast(pa.string())
    ranks = picks.column("rank")
    before, after = members.slice(0, picks.num_rows - 1), members.slice(1)
    ordered = pc.or_(pc.less(before, after), pc.and_(
        pc.equal(before, after),
        pc.less(ranks.slice(0, picks.num_rows - 1), ranks.slice(1))))
    return bool(pc.all(ordered, skip_nulls=False).as_py())


def _uuid(raw: object) -> uuid.UUID | None:
    return uuid.UUID(str(raw)) if raw else None


def _delete_day(db: Database, as_of: date) -> None:
    """Delete one day's rows; the next-best products a primary-key range per transaction."""
    with db.write() as session:
        session.execute(delete(DashboardGroup).where(DashboardGroup.as_of == as_of))
        session.execute(delete(DashboardHistory).where(DashboardHistory.as_of == as_of))
    from patron.analytics import service  # the snapshot's owner (no import cycle)

    service.delete_day(db, NextBestProduct, as_of)


def prune(db: Database) -> list[date]:
    """Delete the days whose scores are gone (``service.prune`` decides which days stay),
    except a day a refresh is still writing."""
    from patron.analytics import service  # the snapshot's owner (no import cycle)

    doomed = service.days_behind_scores(db, DashboardGroup, DashboardHistory, NextBestProduct)
    for day in doomed:
        _delete_day(db, day)
    return doomed


def day_counts(session: Session, day: date) -> dict[str, int]:
    """Rows of each precomputed table for ``day`` (for tests and ``patron doctor``)."""
    counts: dict[str, int] = {}
    for model in (DashboardGroup, DashboardHistory, NextBestProduct):
        counts[model.__tablename__] = int(session.scalar(
            select(func.count()).select_from(model).where(model.as_of == day)) or 0)
    return counts

