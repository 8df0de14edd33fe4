"""Business views of the customer base: Pareto, cohorts, the leaky bucket, churn, liabilities.

Design overview
---------------
Every view is one function over the canonical Ibis tables (``patron.analytics.source``)
and returns a small frozen dataclass ready for JSON, CSV (``rows()``) and charts. The heavy
work — grouping millions of sales, window functions over purchase days, range joins — is
an Ibis expression executed by the tables' backend (embedded DuckDB today, Spark for a
history that outgrows one machine); only aggregates come back to Python, where dense
grids (every cohort × month, every month of a period) are filled in.

Canonical columns used here:

* ``sales``: sale_id, member_id (null for walk-ins), store_id, occurred_at (UTC),
  net_minor (total less refunds), discount_minor, gross_minor, coupon_used;
* ``members``: member_id, joined_at (UTC), home_store_id, status, tier_code;
* inputs the caller builds: a scores table (member_id, p_alive, clv), a tier history
  (member_id, from_tier, to_tier, at), points lots (member_id, remaining, is_pending,
  expires_at) and wallet accounts (member_id, principal_minor, bonus_minor).

Conventions that hold in every view:

* a **purchase** is a sale with ``net_minor > 0``: a sale refunded in full (or that cost
  nothing) is not a visit. A **purchase day** is a member's local calendar day with at
  least one purchase: several sales on one day are one visit, as in the BG/NBD summary.
* days and months are the store's **local** calendar (``tz``, DESIGN rule 7). Ibis has no
  portable time-zone conversion, so ``local_time`` adds the zone's UTC offset with a CASE
  over the zone's offset changes around the period (no change at all for Asia/Shanghai);
  history more than ``TZ_MARGIN_YEARS`` before the period takes the earliest offset.
* a ``Period`` is a range of local days, both ends included. Monthly views cover whole
  months from the month of ``first_on``; the last month ends at ``last_on``.
* **store filters**: figures about members (cohorts, repeat rate, leaky bucket, churn,
  tiers, liabilities, revenue at risk) keep members whose *home store* is in
  ``store_ids`` and count their purchases at any store; revenue (Pareto) keeps sales
  *made at* those stores. ``None`` means every store.
* money stays in integer minor units; shares and rates are floats in [0, 1], None when
  the denominator is zero.

For the nightly refresh, which wants the dashboard's figures of every store and of each
store, ``leaky_buckets``, ``cohort_retentions``, ``repeat_rates`` and ``paretos`` give all
of those scopes from one grouped pass (see "Every store and each store in one pass").
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import ibis
import ibis.expr.types as ir

from patron.analytics import canonical
from patron.core.errors import ValidationFailed
from patron.core.money import divide_round_half_up

EPOCH = date(1970, 1, 1)
TZ_MARGIN_YEARS = 10
DEFAULT_LAPSE_DAYS = 90
StoreIds = Collection[uuid.UUID | str] | None
Cell = str | int | float | bool | date | None


# ---------------------------------------------------------------------------------------
# Periods, local time and scopes


@dataclass(frozen=True)
class Period:
    """Local calendar days ``first_on`` … ``last_on``, both included."""

    first_on: date
    last_on: date

    def __post_init__(self) -> None:
        if self.last_on < self.first_on:
            raise ValidationFailed("the period ends before it starts", "last_on")

    def bounds(self, tz: str) -> tuple[datetime, datetime]:
        """[start, end) in UTC: local midnight of ``first_on`` to that after ``last_on``."""
        return local_midnight(self.first_on, tz), local_midnight(
            self.last_on + timedelta(days=1), tz)

    @property
    def first_month(self) -> int:
        return month_index(self.first_on)

    @property
    def last_month(self) -> int:
        return month_index(self.last_on)


def month_index(day: date) -> int:
    """Months since year 0 (year × 12 + month − 1): consecutive months differ by one."""
    return day.year * 12 + day.month - 1


def month_start(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def day_number(day: date) -> int:
    """Days since 1970-01-01, the integer form of a local day in the expressions."""
    return (day - EPOCH).days


def zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationFailed(f"unknown time zone {tz!r}", "tz") from exc


def local_midnight(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone(tz)).astimezone(UTC)


@lru_cache(maxsize=64)
def offset_changes(tz: str, start_s: int, end_s: int) -> tuple[int, tuple[tuple[int, int],
                                                                           ...]]:
    """The zone's UTC offset (seconds) at ``start_s`` and each (instant, new offset) after
    (``canonical.utc_offsets``, remembered: views ask for the same zones and periods)."""
    first, changes = canonical.utc_offsets(tz, start_s, end_s)
    return first, tuple(changes)


def local_time(ts: ir.TimestampValue, tz: str, *, around: Period) -> ir.TimestampValue:
    """UTC ``ts`` as the wall-clock time in ``tz`` (exact within the period's margin)."""
    if tz == "UTC":
        return ts
    start, end = around.bounds(tz)
    first, changes = offset_changes(
        tz, int(start.timestamp()) - TZ_MARGIN_YEARS * 366 * 86_400, int(end.timestamp()))
    if not changes:
        return ts + ibis.interval(seconds=first) if first else ts
    branches: list[tuple[ir.BooleanValue, ir.TimestampValue]] = []
    current = first
    for at_s, new in changes:
        branches.append((ts < ibis.timestamp(datetime.fromtimestamp(at_s, UTC)),
                         ts + ibis.interval(seconds=current)))
        current = new
    result: ir.TimestampValue = ibis.cases(*branches,
                                           else_=ts + ibis.interval(seconds=current))
    return result


def local_month(ts: ir.TimestampValue, tz: str, *, around: Period) -> ir.IntegerValue:
    """The local calendar month of ``ts`` as ``month_index``."""
    return date_month(local_time(ts, tz, around=around).date())


def date_month(day: ir.DateValue) -> ir.IntegerValue:
    month: ir.IntegerValue = day.year() * 12 + day.month() - 1
    return month


def date_number(day: ir.DateValue) -> ir.IntegerValue:
    number: ir.IntegerValue = day.delta(ibis.date(EPOCH), unit="day")
    return number


def sale_day(sales: ir.Table, tz: str, *, around: Period) -> ir.DateValue:
    """A sale's local day: the canonical ``occurred_on`` (the store's own zone) when the
    table has it, else ``occurred_at`` shifted to ``tz``."""
    if "occurred_on" in sales.columns:
        day: ir.DateValue = sales.occurred_on
        return day
    local: ir.DateValue = local_time(sales.occurred_at, tz, around=around).date()
    return local


def sales_in(sales: ir.Table, period: Period, tz: str) -> ir.Table:
    """The sales of the period's local days."""
    if "occurred_on" in sales.columns:
        return sales.filter(sales.occurred_on.between(period.first_on, period.last_on))
    start, end = period.bounds(tz)
    return sales.filter((sales.occurred_at >= start) & (sales.occurred_at < end))


def _ids(store_ids: Collection[uuid.UUID | str]) -> list[str]:
    return [str(s) for s in store_ids]


def members_in_scope(members: ir.Table, store_ids: StoreIds) -> ir.Table:
    """Members whose home store is one of ``store_ids`` (all members for None)."""
    if store_ids is None:
        return members
    return members.filter(members.home_store_id.cast("string").isin(_ids(store_ids)))


def purchases(sales: ir.Table) -> ir.Table:
    """Sales that count as a purchase: something was paid and not all of it refunded."""
    return sales.filter(sales.net_minor > 0)


def member_purchases(sales: ir.Table, members: ir.Table | None,
                     store_ids: StoreIds) -> ir.Table:
    """Purchases by members (any store) whose home store is in scope."""
    bought = purchases(sales)
    bought = bought.filter(bought.member_id.notnull())
    if store_ids is None:
        return bought
    if members is None:
        raise ValidationFailed("a store filter on member figures needs the members table",
                               "store_ids")
    scope = members_in_scope(members, store_ids).select("member_id")
    return bought.semi_join(scope, "member_id")


def purchase_days(sales: ir.Table, members: ir.Table | None, store_ids: StoreIds, *,
                  tz: str, around: Period) -> ir.Table:
    """Distinct (member_id, day, month) of purchases: local ``day_number``, ``month_index``."""
    bought = member_purchases(sales, members, store_ids)
    local = sale_day(bought, tz, around=around)
    return bought.select(member_id=bought.member_id, day=date_number(local),
                         month=date_month(local)).distinct()


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float | Decimal) else 0


def _one_row(table: ir.Table) -> dict[str, object]:
    rows: list[dict[str, object]] = table.to_pyarrow().to_pylist()
    return rows[0] if rows else {}


# ---------------------------------------------------------------------------------------
# Every store and each store in one pass
#
# The nightly refresh wants each member figure for every store together and for each
# store alone. A member figure follows the *home* store, and every member has one home
# store (or none), so the members split into disjoint parts by home store: every count
# of members (active, joined, cohort sizes, repeaters, ...) of one store is its part's,
# and of every store the sum of all parts (members without a home store, and buyers the
# members table does not have, are a part of their own: counted for every store only).
# The grouped views (``leaky_buckets``, ``cohort_retentions``, ``repeat_rates``) compute
# the parts in one pass, grouped by the home store, and add them up in Python: integers,
# so exactly the numbers the one-scope views give. Revenue (``paretos``) follows the
# store of the sale and its curve ranks members by their revenue in the scope, which is
# not a sum of parts: the member revenues of every store and of each store are ranked in
# one query, partitioned by scope.

#: A scope of the grouped views: a store's id as text, or None for every store.
ScopeKey = str | None
HomeKey = str | None  # a home store's id as text; None: members without one
T = TypeVar("T")
K = TypeVar("K")


def member_homes(members: ir.Table) -> ir.Table:
    """(home_member_id, home): every member's home store id as text (null without one)."""
    return members.select(home_member_id=members.member_id,
                          home=members.home_store_id.cast("string"))


def with_home(table: ir.Table, homes: ir.Table) -> ir.Table:
    """``table`` (with member_id) and ``home``: the member's home store (``member_homes``),
    null for a buyer the members table does not have."""
    joined = table.left_join(homes, table.member_id == homes.home_member_id)
    return joined.select(*table.columns, "home")


def _grouped(table: ir.Table, keys: Sequence[str], **aggregates: ir.Value) -> ir.Table:
    """``table`` aggregated by ``keys`` (by nothing: one row)."""
    if keys:
        return table.group_by(list(keys)).aggregate(**aggregates)
    return table.aggregate(**aggregates)


def _home(row: dict[str, object]) -> HomeKey:
    home = row.get("home")
    return None if home is None else str(home)


def scope_keys(store_ids: Collection[uuid.UUID | str]) -> list[ScopeKey]:
    """Every store (None), then each store's id as text: the keys the grouped views
    return."""
    return [None, *_ids(store_ids)]


def _parts(by_home: dict[HomeKey, T], key: ScopeKey) -> list[T]:
    """The home-store parts a scope adds up: all of them for every store, else its own."""
    if key is None:
        return list(by_home.values())
    return [by_home[key]] if key in by_home else []


def _add(parts: Sequence[dict[K, int]]) -> dict[K, int]:
    total: dict[K, int] = {}
    for part in parts:
        for k, v in part.items():
            total[k] = total.get(k, 0) + v
    return total


# ---------------------------------------------------------------------------------------
# Pareto


@dataclass(frozen=True)
class ParetoPoint:
    member_share: float
    revenue_share: float


@dataclass(frozen=True)
class ParetoReport:
    """How concentrated revenue is among members.

    The curve runs from (0, 0) to (1, 1): ``member_share`` of the purchasing members,
    taken from the biggest spender down, brought ``revenue_share`` of their revenue. A
    purchasing member is one whose net revenue in the period is positive. ``top_share``
    is the revenue share of the top ``top_fraction`` of them, read off the exact curve (a
    fractional member counts in proportion: the top 20 % of 7 members is 1.4 members).
    ``member_revenue_share`` is members' revenue over all revenue, walk-ins included.
    """

    period: Period
    total_revenue_minor: int
    member_revenue_minor: int
    walk_in_revenue_minor: int
    member_revenue_share: float | None
    purchasing_members: int
    top_fraction: float
    top_share: float | None
    curve: tuple[ParetoPoint, ...]

    def rows(self) -> list[dict[str, Cell]]:
        return [{"member_share": p.member_share, "revenue_share": p.revenue_share}
                for p in self.curve]


def pareto(sales: ir.Table, *, period: Period, tz: str = "UTC", store_ids: StoreIds = None,
           top_fraction: float = 0.2, points: int = 100) -> ParetoReport:
    """Revenue concentration over the period's sales (at ``store_ids``).

    The curve has at most ``points`` + 1 points: the member at each 1/``points`` step (the
    last member of each step), so a chart gets a fixed size whatever the member count.
    """
    _check_pareto(top_fraction, points)
    s = sales_in(sales, period, tz)
    if store_ids is not None:
        s = s.filter(s.store_id.cast("string").isin(_ids(store_ids)))
    return _paretos(s, period=period, stores=[], top_fraction=top_fraction,
                    points=points)[None]


def paretos(sales: ir.Table, *, period: Period, tz: str = "UTC",
            store_ids: Collection[uuid.UUID | str], top_fraction: float = 0.2,
            points: int = 100) -> dict[ScopeKey, ParetoReport]:
    """``pareto`` of every store (key None) and of each of ``store_ids`` (key: its id as
    text), in one pass: the same reports as one call per scope."""
    _check_pareto(top_fraction, points)
    return _paretos(sales_in(sales, period, tz), period=period, stores=_ids(store_ids),
                    top_fraction=top_fraction, points=points)


def _check_pareto(top_fraction: float, points: int) -> None:
    if not 0.0 < top_fraction <= 1.0:
        raise ValidationFailed("the top fraction is a share between 0 and 1", "top_fraction")
    if not 1 <= points <= 10_000:
        raise ValidationFailed("between 1 and 10000 curve points", "points")


WHOLE = "*"  # the scope of all the sales ``_paretos`` is given (never a store id)


def _paretos(s: ir.Table, *, period: Period, stores: list[str], top_fraction: float,
             points: int) -> dict[ScopeKey, ParetoReport]:
    """The reports of the sales ``s`` (key None) and, for each of ``stores``, of its sales
    (key: the id as text)."""
    store = s.store_id.cast("string")
    sums = {"total": s.net_minor.sum(),
            "members": s.net_minor.sum(where=s.member_id.notnull()),
            "walk_ins": s.net_minor.sum(where=s.member_id.isnull())}
    by_store: dict[str | None, dict[str, object]] = {}
    if stores:
        for r in s.group_by(store=store).aggregate(**sums).to_pyarrow().to_pylist():
            by_store[None if r["store"] is None else str(r["store"])] = r
    else:
        by_store[None] = _one_row(s.aggregate(**sums))

    bought = s.filter(s.member_id.notnull())
    spend = bought.group_by("member_id").aggregate(revenue=bought.net_minor.sum())
    spend = spend.select(scope=ibis.literal(WHOLE, "string"), member_id=spend.member_id,
                         revenue=spend.revenue)
    if stores:
        mine = bought.filter(bought.store_id.cast("string").isin(stores))
        mine = mine.group_by(scope=mine.store_id.cast("string"), member_id=mine.member_id
                             ).aggregate(revenue=mine.net_minor.sum())
        spend = spend.union(mine.select("scope", "member_id", "revenue"))
    spend = spend.filter(spend.revenue > 0)
    order = [ibis.desc(spend.revenue), spend.member_id]
    ranked = spend.mutate(
        rank=ibis.row_number().over(ibis.window(group_by="scope", order_by=order)) + 1,
        cum=spend.revenue.sum().over(ibis.cumulative_window(group_by="scope",
                                                            order_by=order)),
        n=spend.revenue.count().over(ibis.window(group_by="scope")),
    )
    # The member at rank k covers the members' interval [(k-1)/n, k/n]; its part inside
    # the top fraction is clip(f·n − (k−1), 0, 1): 1 for the members wholly inside, a
    # fraction for at most one member. The top revenue is their integer sum plus that one
    # product, added once in Python: the same float whatever order an engine sums in.
    inside = (ranked.n * top_fraction - (ranked.rank - 1)).clip(lower=0, upper=1)
    partly = (inside > 0) & (inside < 1)
    step = (ranked.rank * points + ranked.n - 1) // ranked.n  # ceil(rank·points / n)
    # one grouped pass for the curve and the summaries (the ranking windows are most of
    # the cost, and a second query over ``ranked`` computed them again): a scope's sums
    # are the sums of its steps' (integers), and ``part`` is one step's value or none
    summaries: dict[str, dict[str, object]] = {}
    curves: dict[str, list[tuple[int, int, int]]] = {}
    for r in ranked.group_by(scope=ranked.scope, step=step).aggregate(
            rank=ranked.rank.max(), cum=ranked.cum.max(), n=ranked.count(),
            positive=ranked.revenue.sum(), whole=ranked.revenue.sum(where=inside >= 1),
            part=(ranked.revenue * inside).sum(where=partly)).to_pyarrow().to_pylist():
        scope = str(r["scope"])
        curves.setdefault(scope, []).append((int(r["step"]), int(r["rank"]), int(r["cum"])))
        summary = summaries.setdefault(scope, {"n": 0, "positive": 0, "whole": 0,
                                               "part": None})
        for name in ("n", "positive", "whole"):
            summary[name] = _int(summary[name]) + _int(r[name])
        if r["part"] is not None:  # inside (0, 1) for at most one rank of a scope
            summary["part"] = r["part"]

    out: dict[ScopeKey, ParetoReport] = {}
    for key in [None, *stores]:
        rows = list(by_store.values()) if key is None else \
            [by_store[key]] if key in by_store else []
        total = sum(_int(r.get("total")) for r in rows)
        member_total = sum(_int(r.get("members")) for r in rows)
        walk_ins = sum(_int(r.get("walk_ins")) for r in rows)
        summary = summaries.get(WHOLE if key is None else key, {})
        n, positive = _int(summary.get("n")), _int(summary.get("positive"))
        curve = [ParetoPoint(0.0, 0.0)]
        if n and positive:
            curve += [ParetoPoint(rank / n, cum / positive) for _, rank, cum in
                      sorted(curves.get(WHOLE if key is None else key, []))]
        top = float(_int(summary.get("whole"))) + _float(summary.get("part"))
        out[key] = ParetoReport(
            period=period, total_revenue_minor=total, member_revenue_minor=member_total,
            walk_in_revenue_minor=walk_ins,
            member_revenue_share=_rate(member_total, total) if total > 0 else None,
            purchasing_members=n, top_fraction=top_fraction,
            top_share=top / positive if positive else None, curve=tuple(curve))
    return out


# ---------------------------------------------------------------------------------------
# Cohorts


class CohortBasis(StrEnum):
    """What puts a member in a monthly cohort: the join month or the first purchase."""

    JOINED = "joined"
    FIRST_PURCHASE = "first_purchase"


@dataclass(frozen=True)
class Cohort:
    """One cohort: ``active[k]`` members bought in the k-th month after the cohort month."""

    month: date
    size: int
    active: tuple[int, ...]
    retention: tuple[float, ...]


@dataclass(frozen=True)
class CohortReport:
    """Cohorts of the period's months × months since the cohort month, up to ``last_on``.

    A member is active in month k when they made a purchase (at any store) in the k-th
    calendar month after their cohort month (k = 0 is the cohort month itself). Retention
    is active / cohort size. With ``first_purchase`` cohorts month 0 is 100 % by
    construction; with ``joined`` cohorts it is the share who bought in their join month.
    """

    period: Period
    basis: CohortBasis
    cohorts: tuple[Cohort, ...]

    def rows(self) -> list[dict[str, Cell]]:
        return [{"cohort_month": c.month, "cohort_size": c.size, "months_since": k,
                 "active": a, "retention": r}
                for c in self.cohorts for k, (a, r) in enumerate(zip(c.active, c.retention,
                                                                     strict=True))]


def cohort_retention(sales: ir.Table, members: ir.Table, *, period: Period, tz: str = "UTC",
                     store_ids: StoreIds = None,
                     basis: CohortBasis = CohortBasis.JOINED) -> CohortReport:
    """Monthly acquisition cohorts (of members at ``store_ids``) and their monthly activity."""
    scope = members_in_scope(members, store_ids)
    days = purchase_days(sales, scope, store_ids, tz=tz, around=period)
    parts = _cohort_counts(days, scope, period=period, tz=tz, basis=basis, by_home=False)
    return _cohort_report(period, basis, _parts(parts, None))


def cohort_retentions(sales: ir.Table, members: ir.Table, *, period: Period,
                      tz: str = "UTC", store_ids: Collection[uuid.UUID | str],
                      basis: CohortBasis = CohortBasis.JOINED,
                      days: ir.Table | None = None) -> dict[ScopeKey, CohortReport]:
    """``cohort_retention`` of every store (key None) and of each of ``store_ids`` (key:
    its id as text) in one pass, grouped by home store. ``days``: ``purchase_days`` of
    every member (no store filter), if the caller has them at hand."""
    if days is None:
        days = purchase_days(sales, None, None, tz=tz, around=period)
    parts = _cohort_counts(days, members, period=period, tz=tz, basis=basis, by_home=True)
    return {key: _cohort_report(period, basis, _parts(parts, key))
            for key in scope_keys(store_ids)}


CohortCounts = tuple[dict[int, int], dict[tuple[int, int], int]]  # sizes, active


def _cohort_counts(days: ir.Table, scope: ir.Table, *, period: Period, tz: str,
                   basis: CohortBasis, by_home: bool) -> dict[HomeKey, CohortCounts]:
    """Cohort sizes and active members (cohort, months since) of the members ``scope``
    and the purchase ``days``, per home store (``by_home``) or all together (key None)."""
    end = period.bounds(tz)[1]
    to_date = days.filter(days.day <= day_number(period.last_on))
    # a cohort is a month of the period and k ≥ 0: only the period's months are active
    # in one (the first purchase month, though, is the member's whole history's)
    active = to_date.filter(to_date.month >= period.first_month).select(
        "member_id", "month").distinct()
    if basis is CohortBasis.JOINED:
        joined = scope.filter(scope.joined_at < end)
        cohorts = joined.select(member_id=joined.member_id,
                                cohort=local_month(joined.joined_at, tz, around=period),
                                home=joined.home_store_id.cast("string"))
    else:
        cohorts = to_date.group_by("member_id").aggregate(cohort=to_date.month.min())
        if by_home:
            cohorts = with_home(cohorts, member_homes(scope))
    keys = ["home"] if by_home else []
    cohorts = cohorts.select("member_id", "cohort", *keys)
    cohorts = cohorts.filter((cohorts.cohort >= period.first_month)
                             & (cohorts.cohort <= period.last_month))
    out: dict[HomeKey, CohortCounts] = {}
    for r in cohorts.group_by([*keys, "cohort"]).aggregate(
            size=cohorts.count()).to_pyarrow().to_pylist():
        out.setdefault(_home(r), ({}, {}))[0][int(r["cohort"])] = int(r["size"])
    j = active.join(cohorts, "member_id")
    j = j.mutate(k=j.month - j.cohort).filter(lambda t: t.k >= 0)
    # a member has one home store: distinct members per home store add up to distinct
    # members over all of them
    for r in j.group_by([*keys, "cohort", "k"]).aggregate(
            active=j.member_id.nunique()).to_pyarrow().to_pylist():
        out.setdefault(_home(r), ({}, {}))[1][(int(r["cohort"]), int(r["k"]))] = \
            int(r["active"])
    return out


def _cohort_report(period: Period, basis: CohortBasis,
                   parts: Sequence[CohortCounts]) -> CohortReport:
    sizes = _add([p[0] for p in parts])
    counts = _add([p[1] for p in parts])
    out = []
    for cohort in sorted(sizes):
        size = sizes[cohort]
        active_k = tuple(counts.get((cohort, k), 0)
                         for k in range(period.last_month - cohort + 1))
        out.append(Cohort(month=month_start(cohort), size=size, active=active_k,
                          retention=tuple(a / size for a in active_k)))
    return CohortReport(period=period, basis=basis, cohorts=tuple(out))


# ---------------------------------------------------------------------------------------
# Repeat purchase rate


@dataclass(frozen=True)
class RepeatRate:
    """Of the members who bought in the period, the share who bought on two days or more."""

    period: Period
    purchasers: int
    repeaters: int
    rate: float | None


def repeat_rate(sales: ir.Table, members: ir.Table | None, *, period: Period,
                tz: str = "UTC", store_ids: StoreIds = None) -> RepeatRate:
    """Repeat purchase rate: members with ≥ 2 purchase days in the period / with ≥ 1."""
    days = purchase_days(sales_in(sales, period, tz), members, store_ids, tz=tz, around=period)
    return _repeat_report(period, _parts(_repeat_counts(days, None), None))


def repeat_rates(sales: ir.Table, members: ir.Table, *, period: Period, tz: str = "UTC",
                 store_ids: Collection[uuid.UUID | str]) -> dict[ScopeKey, RepeatRate]:
    """``repeat_rate`` of every store (key None) and of each of ``store_ids`` (key: its id
    as text) in one pass, grouped by home store."""
    days = purchase_days(sales_in(sales, period, tz), None, None, tz=tz, around=period)
    parts = _repeat_counts(days, member_homes(members))
    return {key: _repeat_report(period, _parts(parts, key)) for key in scope_keys(store_ids)}


def _repeat_counts(days: ir.Table, homes: ir.Table | None) -> dict[HomeKey, dict[str, int]]:
    """Purchasers and repeaters of the purchase ``days``, per home store (with ``homes``)
    or all together (key None)."""
    per_member = days.group_by("member_id").aggregate(days=days.count())
    keys = []
    if homes is not None:
        per_member = with_home(per_member, homes)
        keys = ["home"]
    rows = _grouped(per_member, keys, purchasers=per_member.count(),
                    repeaters=(per_member.days >= 2).cast("int64").sum())
    return {_home(r): {"purchasers": _int(r.get("purchasers")),
                       "repeaters": _int(r.get("repeaters"))}
            for r in rows.to_pyarrow().to_pylist()}


def _repeat_report(period: Period, parts: Sequence[dict[str, int]]) -> RepeatRate:
    counts = _add(parts)
    purchasers, repeaters = counts.get("purchasers", 0), counts.get("repeaters", 0)
    return RepeatRate(period=period, purchasers=purchasers, repeaters=repeaters,
                      rate=_rate(repeaters, purchasers))


# ---------------------------------------------------------------------------------------
# Leaky bucket and churn


class Grain(StrEnum):
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"

    @property
    def months(self) -> int:
        return {"month": 1, "quarter": 3, "year": 12}[self.value]


@dataclass(frozen=True)
class BucketPeriod:
    """One month (quarter, year) of the leaky bucket; see ``leaky_bucket`` for the terms."""

    starts_on: date
    ends_on: date
    active_start: int
    joined: int
    purchasers: int
    new: int
    returning: int
    reactivated: int
    lapsed: int
    churned: int
    net_change: int
    active_end: int
    churn_rate: float | None


@dataclass(frozen=True)
class LeakyBucket:
    period: Period
    grain: Grain
    lapse_days: int
    periods: tuple[BucketPeriod, ...]

    def rows(self) -> list[dict[str, Cell]]:
        return [dict(vars(p)) for p in self.periods]


def leaky_bucket(sales: ir.Table, members: ir.Table, *, period: Period, tz: str = "UTC",
                 store_ids: StoreIds = None, lapse_days: int = DEFAULT_LAPSE_DAYS,
                 grain: Grain = Grain.MONTH) -> LeakyBucket:
    """Where the active base came from and where it went, month by month.

    With N = ``lapse_days``, a member is **active** on a local day when they made a
    purchase on it or on one of the N − 1 days before. Each purchase day p keeps them
    active through p + N − 1, so their history splits into *spells*: runs of purchase days
    less than or equally N days apart, active from the spell's first purchase day to N − 1
    days after its last. Over each month (or quarter, year) of the period:

    * ``active_start`` / ``active_end``: members active on the day before the month
      begins / on its last day (the last month ends at ``period.last_on``);
    * ``new``: members whose first purchase ever falls in the month;
    * ``reactivated``: members who bought in the month after more than N days without a
      purchase (at least N whole days between the two purchase days), i.e. who start a
      spell other than their first;
    * ``lapsed``: members whose N days since their last purchase ran out in the month:
      they had bought within the previous N days but no longer within the last N days,
      counted on the day they crossed (last purchase day + N);
    * ``net_change`` = new + reactivated − lapsed, and
      active_end = active_start + net_change exactly (every change of a member's state
      is one of these events);
    * ``churned``: members active at the start who lapsed during the month, and
      ``churn_rate`` = churned / active_start — members who joined and lapsed within
      the month are in ``lapsed`` but not in the churn rate, so it stays in [0, 1];
    * ``returning``: members who bought in the month and in the month before (calendar
      months, not spells); ``purchasers``: members who bought in the month; ``joined``:
      members whose join date is in the month (with or without a purchase).

    Members are those of ``store_ids`` (home store); their purchases count at any store.
    Counts are of members: with N ≥ 31 a member has at most one event of a kind per
    month (for shorter N, events are counted, and a member may lapse twice).
    """
    _check_lapse(lapse_days)
    scope = members_in_scope(members, store_ids)
    days = purchase_days(sales, members, store_ids, tz=tz, around=period)
    parts = _bucket_counts(days, scope, period=period, tz=tz, lapse_days=lapse_days,
                           grain=grain, homes=None)
    return _bucket_report(period, grain, lapse_days, _parts(parts, None))


def leaky_buckets(sales: ir.Table, members: ir.Table, *, period: Period, tz: str = "UTC",
                  store_ids: Collection[uuid.UUID | str],
                  lapse_days: int = DEFAULT_LAPSE_DAYS, grain: Grain = Grain.MONTH,
                  days: ir.Table | None = None) -> dict[ScopeKey, LeakyBucket]:
    """``leaky_bucket`` of every store (key None) and of each of ``store_ids`` (key: its
    id as text) in one pass, grouped by home store. ``days``: ``purchase_days`` of every
    member (no store filter), if the caller has them at hand."""
    _check_lapse(lapse_days)
    if days is None:
        days = purchase_days(sales, None, None, tz=tz, around=period)
    parts = _bucket_counts(days, members, period=period, tz=tz, lapse_days=lapse_days,
                           grain=grain, homes=member_homes(members))
    return {key: _bucket_report(period, grain, lapse_days, _parts(parts, key))
            for key in scope_keys(store_ids)}


def _check_lapse(lapse_days: int) -> None:
    if not 1 <= lapse_days <= 3660:
        raise ValidationFailed("lapse days are between 1 and 3660", "lapse_days")


def _buckets(period: Period, grain: Grain) -> list[tuple[int, int, int]]:
    """(bucket, first day number, day number after its last) of the period's months
    (quarters, years); the last ends after ``period.last_on``."""
    last_n = day_number(period.last_on)
    span = grain.months
    buckets = []
    for index in range(period.first_month // span, period.last_month // span + 1):
        first = month_start(index * span)
        following = month_start((index + 1) * span)
        buckets.append((index, day_number(first), min(day_number(following), last_n + 1)))
    return buckets


def _bucket_counts(days: ir.Table, scope: ir.Table, *, period: Period, tz: str,
                   lapse_days: int, grain: Grain, homes: ir.Table | None
                   ) -> dict[HomeKey, dict[int, dict[str, int]]]:
    """Every count of the leaky bucket, by bucket, of the purchase ``days`` and the
    members ``scope`` (joins), per home store (with ``homes``) or all together (None)."""
    last_n = day_number(period.last_on)
    span = grain.months
    buckets = _buckets(period, grain)
    bucket_table = ibis.memtable(
        {"bucket": [b[0] for b in buckets], "first_n": [b[1] for b in buckets],
         "next_n": [b[2] for b in buckets]},
        schema={"bucket": "int64", "first_n": "int64", "next_n": "int64"})
    keys = [] if homes is None else ["home"]
    out: dict[HomeKey, dict[int, dict[str, int]]] = {}

    def add(rows: list[dict[str, object]]) -> None:
        for r in rows:
            counts = out.setdefault(_home(r), {}).setdefault(_int(r["bucket"]), {})
            counts.update({k: _int(v) for k, v in r.items() if k not in ("home", "bucket")})

    days = days.filter(days.day <= last_n)
    if lapse_days >= max(next_n - first_n for _, first_n, next_n in buckets):
        _add_spell_edges(out, days, homes, buckets, lapse_days)
    else:
        _add_spells(out, days, homes, bucket_table, lapse_days, add)
    # the period's buckets need the visits from the bucket before its first on: earlier
    # ones only change the rows of buckets before it, which the report leaves out
    first_bucket = buckets[0][0]
    recent = days.filter(days.month >= (first_bucket - 1) * span)
    visits = recent.select(member_id=recent.member_id, bucket=recent.month // span).distinct()
    visits = visits.mutate(previous=visits.bucket.lag().over(
        ibis.window(group_by="member_id", order_by="bucket")))
    if homes is not None:
        visits = with_home(visits, homes)
    visits = visits.filter(visits.bucket >= first_bucket)
    add(visits.group_by([*keys, "bucket"]).aggregate(
        purchasers=visits.count(),
        returning=(visits.previous == visits.bucket - 1).fill_null(False).cast("int64").sum()
    ).to_pyarrow().to_pylist())

    end = period.bounds(tz)[1]
    joined = scope.filter(scope.joined_at < end)
    joined = joined.mutate(bucket=local_month(joined.joined_at, tz, around=period) // span,
                           home=joined.home_store_id.cast("string"))
    add(joined.group_by([*keys, "bucket"]).aggregate(joined=joined.count())
        .to_pyarrow().to_pylist())
    return out


def _add_spell_edges(out: dict[HomeKey, dict[int, dict[str, int]]], days: ir.Table,
                     homes: ir.Table | None, buckets: Sequence[tuple[int, int, int]],
                     lapse_days: int) -> None:
    """The spell counts of the leaky bucket (``active_start``, ``new``, ``reactivated``,
    ``lapsed``, ``churned``, ``active_end``) from the spells' edges, when ``lapse_days``
    is at least the longest bucket's days.

    A spell starts on a purchase day with no purchase day in the N days before (``new``
    when it has none before at all) and ends N days after a purchase day with none in
    the N days after: one window (previous and next purchase day, one sort) marks them,
    and the engine counts the edges by (home, day), a few thousand rows. Then every
    count is a sum of edges: spells active at a day d started before it and did not end
    before it, so ``active_start`` = starts before the first day − ends before it (and
    ``active_end`` the same at the next bucket's first day). A spell lasts at least N
    days, longer than a bucket: none starts and ends within one, so ``churned`` (ended
    in the bucket, started before it) is ``lapsed``. The same counts as ``_add_spells``,
    which numbers the spells with a second window and joins them to the buckets."""
    by_member = ibis.window(group_by="member_id", order_by="day")
    edges = days.mutate(previous=days.day.lag().over(by_member),
                        following=days.day.lead().over(by_member))
    edges = edges.mutate(
        opens_first=edges.previous.isnull().cast("int64"),
        opens_again=(edges.day - edges.previous > lapse_days).fill_null(False).cast("int64"),
        closes=(edges.following.isnull()
                | (edges.following - edges.day > lapse_days).fill_null(False)).cast("int64"))
    edges = edges.filter(edges["opens_first"] + edges["opens_again"] + edges["closes"] > 0)
    keys: list[str] = []
    if homes is not None:
        edges = with_home(edges, homes)
        keys = ["home"]
    found: dict[HomeKey, list[tuple[int, int, int, int]]] = {}
    for r in edges.group_by([*keys, "day"]).aggregate(
            first=edges["opens_first"].sum(), again=edges["opens_again"].sum(),
            ends=edges["closes"].sum()).to_pyarrow().to_pylist():
        found.setdefault(_home(r), []).append(
            (_int(r["day"]), _int(r["first"]), _int(r["again"]), _int(r["ends"])))
    for home, rows in found.items():
        part = out.setdefault(home, {})
        for index, first_n, next_n in buckets:
            started = sum(f + a for d, f, a, _ in rows if d < first_n)
            ended = sum(e for d, _, _, e in rows if d + lapse_days < first_n)
            lapsed = sum(e for d, _, _, e in rows if first_n <= d + lapse_days < next_n)
            part.setdefault(index, {}).update(
                active_start=started - ended,
                new=sum(f for d, f, _, _ in rows if first_n <= d < next_n),
                reactivated=sum(a for d, _, a, _ in rows if first_n <= d < next_n),
                lapsed=lapsed, churned=lapsed,
                active_end=sum(f + a for d, f, a, _ in rows if d < next_n)
                - sum(e for d, _, _, e in rows if d + lapse_days < next_n))


def _add_spells(out: dict[HomeKey, dict[int, dict[str, int]]], days: ir.Table,
                homes: ir.Table | None, bucket_table: ir.Table, lapse_days: int,
                add: Callable[[list[dict[str, object]]], None]) -> None:
    """The spell counts of the leaky bucket for any ``lapse_days``: the spells numbered
    (a window of gaps, a running sum of them) and joined to the buckets they touch."""
    keys = [] if homes is None else ["home"]
    by_member = ibis.window(group_by="member_id", order_by="day")
    gaps = days.mutate(previous=days.day.lag().over(by_member))
    gaps = gaps.mutate(opens=(gaps.previous.isnull()
                              | (gaps.day - gaps.previous > lapse_days)).cast("int64"))
    numbered = gaps.mutate(spell=gaps.opens.sum().over(
        ibis.cumulative_window(group_by="member_id", order_by="day")))
    spells = numbered.group_by(["member_id", "spell"]).aggregate(
        start_n=numbered.day.min(), end_n=numbered.day.max() + lapse_days)
    if homes is not None:
        spells = with_home(spells, homes)

    b = bucket_table
    j = spells.join(b, [spells.start_n < b.next_n, spells.end_n >= b.first_n])
    starts_inside = j.start_n >= j.first_n
    ends_inside = j.end_n < j.next_n
    add(j.group_by([*keys, "bucket"]).aggregate(
        active_start=(j.start_n < j.first_n).cast("int64").sum(),
        new=(starts_inside & (j.spell == 1)).cast("int64").sum(),
        reactivated=(starts_inside & (j.spell > 1)).cast("int64").sum(),
        lapsed=ends_inside.cast("int64").sum(),
        churned=(ends_inside & ~starts_inside).cast("int64").sum(),
        active_end=(~ends_inside).cast("int64").sum(),
    ).to_pyarrow().to_pylist())


def _bucket_report(period: Period, grain: Grain, lapse_days: int,
                   parts: Sequence[dict[int, dict[str, int]]]) -> LeakyBucket:
    """The leaky bucket of the sum of home-store parts (``_bucket_counts``)."""
    by_bucket: dict[int, dict[str, int]] = {}
    for part in parts:
        for index, counts in part.items():
            into = by_bucket.setdefault(index, {})
            for k, v in counts.items():
                into[k] = into.get(k, 0) + v
    out = []
    for index, first_n, next_n in _buckets(period, grain):
        e = by_bucket.get(index, {})
        active_start = e.get("active_start", 0)
        new, reactivated, lapsed = e.get("new", 0), e.get("reactivated", 0), e.get("lapsed", 0)
        churned = e.get("churned", 0)
        out.append(BucketPeriod(
            starts_on=EPOCH + timedelta(days=first_n),
            ends_on=EPOCH + timedelta(days=next_n - 1),
            active_start=active_start, joined=e.get("joined", 0),
            purchasers=e.get("purchasers", 0), new=new, returning=e.get("returning", 0),
            reactivated=reactivated, lapsed=lapsed, churned=churned,
            net_change=new + reactivated - lapsed, active_end=e.get("active_end", 0),
            churn_rate=_rate(churned, active_start)))
    return LeakyBucket(period=period, grain=grain, lapse_days=lapse_days, periods=tuple(out))


@dataclass(frozen=True)
class ChurnPeriod:
    starts_on: date
    ends_on: date
    active_start: int
    churned: int
    churn_rate: float | None


def churn(sales: ir.Table, members: ir.Table, *, period: Period, tz: str = "UTC",
          store_ids: StoreIds = None, lapse_days: int = DEFAULT_LAPSE_DAYS,
          grain: Grain = Grain.MONTH) -> tuple[ChurnPeriod, ...]:
    """Churn rate per month (quarter, year): lapsed among those active at its start.

    The leaky bucket's ``churned`` / ``active_start``: of the members active on the day
    before the period began, the share whose N days without a purchase ran out during it.
    """
    bucket = leaky_bucket(sales, members, period=period, tz=tz, store_ids=store_ids,
                          lapse_days=lapse_days, grain=grain)
    return tuple(ChurnPeriod(starts_on=p.starts_on, ends_on=p.ends_on,
                             active_start=p.active_start, churned=p.churned,
                             churn_rate=p.churn_rate) for p in bucket.periods)


# ---------------------------------------------------------------------------------------
# Revenue at risk


@dataclass(frozen=True)
class RevenueAtRisk:
    """Predicted value of members the model thinks are slipping away.

    ``clv_at_risk_minor`` sums the CLV of scored members with P(alive) below the
    threshold; ``share`` is that over the CLV of every scored member.
    """

    threshold: float
    members_scored: int
    members_at_risk: int
    clv_total_minor: int
    clv_at_risk_minor: int
    share: float | None


def revenue_at_risk(scores: ir.Table, *, threshold: float = 0.5,
                    members: ir.Table | None = None,
                    store_ids: StoreIds = None) -> RevenueAtRisk:
    """Sum of CLV (minor units) of members with ``p_alive < threshold``.

    ``scores`` has member_id, p_alive and ``clv_minor`` (as the scores snapshot keeps it;
    a column named ``clv`` is read the same way); members without a p_alive are left out.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValidationFailed("the P(alive) threshold is between 0 and 1", "threshold")
    s = scores.filter(scores.p_alive.notnull())
    if store_ids is not None:
        if members is None:
            raise ValidationFailed("a store filter needs the members table", "store_ids")
        s = s.semi_join(members_in_scope(members, store_ids).select("member_id"),
                        "member_id")
    clv = (s.clv_minor if "clv_minor" in s.columns else s.clv).fill_null(0)
    risky = s.p_alive < threshold
    row = _one_row(s.aggregate(scored=s.count(), at_risk=risky.cast("int64").sum(),
                               total=clv.sum(), risk=clv.sum(where=risky)))
    total, risk = _float(row.get("total")), _float(row.get("risk"))
    return RevenueAtRisk(
        threshold=threshold, members_scored=_int(row.get("scored")),
        members_at_risk=_int(row.get("at_risk")), clv_total_minor=round(total),
        clv_at_risk_minor=round(risk), share=risk / total if total > 0 else None)


def _float(value: object) -> float:
    return float(value) if isinstance(value, int | float | Decimal) else 0.0


# ---------------------------------------------------------------------------------------
# Tier migration


@dataclass(frozen=True)
class TierFlow:
    """``members`` went from ``from_tier`` at the period's start to ``to_tier`` at its end.

    ``from_tier`` is None for members who joined during the period; either side is None
    for a member who held no tier then.
    """

    from_tier: str | None
    to_tier: str | None
    members: int


@dataclass(frozen=True)
class TierMigration:
    period: Period
    flows: tuple[TierFlow, ...]
    tiers: tuple[str, ...] = field(default=())

    def rows(self) -> list[dict[str, Cell]]:
        return [{"from_tier": f.from_tier, "to_tier": f.to_tier, "members": f.members}
                for f in self.flows]

    def matrix(self) -> list[list[int]]:
        """Counts with rows = ``tiers`` at the start and columns = ``tiers`` at the end."""
        index = {t: i for i, t in enumerate(self.tiers)}
        grid = [[0] * len(self.tiers) for _ in self.tiers]
        for f in self.flows:
            if f.from_tier in index and f.to_tier in index:
                grid[index[f.from_tier]][index[f.to_tier]] += f.members
        return grid


def tier_at(changes: ir.Table, members: ir.Table, at: datetime) -> ir.Table:
    """(member_id, tier) for members who had joined by ``at``.

    The tier after the member's last change before ``at``; failing that, the tier before
    their first change after it; failing that (never changed), their current tier.
    """
    m = members.filter(members.joined_at < at).select("member_id", "tier_code")
    before = changes.filter(changes.at < at)
    last_before = before.group_by("member_id").aggregate(
        tier_before=before.to_tier.argmax(before.at), has_before=before.count())
    after = changes.filter(changes.at >= at)
    first_after = after.group_by("member_id").aggregate(
        tier_after=after.from_tier.argmin(after.at), has_after=after.count())
    j = m.left_join(last_before, "member_id").left_join(first_after, "member_id")
    tier = ibis.cases((j.has_before.notnull(), j.tier_before),
                      (j.has_after.notnull(), j.tier_after),
                      else_=j.tier_code)
    return j.select(member_id=j.member_id, tier=tier)


def tier_migration(changes: ir.Table, members: ir.Table, *, period: Period,
                   tz: str = "UTC", store_ids: StoreIds = None,
                   tiers: Sequence[str] = ()) -> TierMigration:
    """Members by tier at the period's start × tier at its end.

    ``changes`` is the tier history (member_id, from_tier, to_tier, at); ``members``
    gives join dates, home stores and the current tier. ``tiers`` (lowest first) orders
    the flows and the ``matrix()``; tiers met in the data but not listed come after.
    """
    start, end = period.bounds(tz)
    scope = members_in_scope(members, store_ids)
    at_start = tier_at(changes, scope, start).rename(from_tier="tier")
    at_end = tier_at(changes, scope, end).rename(to_tier="tier")
    j = at_end.left_join(at_start, "member_id")
    flows = j.group_by(["from_tier", "to_tier"]).aggregate(members=j.count())
    found = [TierFlow(from_tier=r["from_tier"], to_tier=r["to_tier"], members=int(r["members"]))
             for r in flows.to_pyarrow().to_pylist()]
    order = list(tiers)
    for f in found:
        for t in (f.from_tier, f.to_tier):
            if t is not None and t not in order:
                order.append(t)
    rank = {t: i for i, t in enumerate(order)}

    def key(f: TierFlow) -> tuple[int, int]:
        return (-1 if f.from_tier is None else rank[f.from_tier],
                -1 if f.to_tier is None else rank[f.to_tier])

    return TierMigration(period=period, flows=tuple(sorted(found, key=key)),
                         tiers=tuple(order))


# ---------------------------------------------------------------------------------------
# Liabilities


@dataclass(frozen=True)
class PointsLiability:
    """What the outstanding points would cost if redeemed, and what expires soon.

    Outstanding points are the ``remaining`` of lots not expired at ``as_of`` (pending
    lots included: they become spendable unless the sale is returned). Value =
    points × minor units per major unit / points per major unit redeemed, rounded half
    away from zero (core/money). Expiring: lots expiring in (as_of, as_of + days].
    """

    as_of: datetime
    outstanding_points: int
    available_points: int
    pending_points: int
    liability_minor: int
    expiring_within_days: int
    expiring_points: int
    expiring_liability_minor: int


@dataclass(frozen=True)
class StoredValueLiability:
    """Money held for members: principal (paid in) is owed; bonus is promotional credit."""

    accounts: int
    principal_minor: int
    bonus_minor: int
    total_minor: int


def points_liability(lots: ir.Table, *, as_of: datetime, points_per_major_redeemed: int,
                     minor_per_major: int = 100, expiring_within_days: int = 90,
                     members: ir.Table | None = None,
                     store_ids: StoreIds = None) -> PointsLiability:
    """Outstanding points and their redemption value, from points lots.

    ``lots`` has member_id, remaining, is_pending and expires_at (null = never).
    ``points_per_major_redeemed`` is the programme's rate (100 points = 1 yuan).
    """
    if points_per_major_redeemed <= 0:
        raise ValidationFailed("points per currency unit must be positive",
                               "points_per_major_redeemed")
    if minor_per_major <= 0:
        raise ValidationFailed("minor units per currency unit must be positive",
                               "minor_per_major")
    if not 1 <= expiring_within_days <= 3660:
        raise ValidationFailed("expiry window is between 1 and 3660 days",
                               "expiring_within_days")
    if as_of.tzinfo is None:
        raise ValidationFailed("as_of must carry a time zone (UTC)", "as_of")
    horizon = as_of + timedelta(days=expiring_within_days)
    live = _scoped(lots, members, store_ids)
    live = live.filter((live.remaining > 0)
                       & (live.expires_at.isnull() | (live.expires_at > as_of)))
    row = _one_row(live.aggregate(
        outstanding=live.remaining.sum(),
        pending=live.remaining.sum(where=live.is_pending),
        expiring=live.remaining.sum(where=live.expires_at.notnull()
                                    & (live.expires_at <= horizon)),
    ))
    outstanding, pending = _int(row.get("outstanding")), _int(row.get("pending"))
    expiring = _int(row.get("expiring"))

    def value(points: int) -> int:
        return divide_round_half_up(points * minor_per_major, points_per_major_redeemed)

    return PointsLiability(
        as_of=as_of, outstanding_points=outstanding, available_points=outstanding - pending,
        pending_points=pending, liability_minor=value(outstanding),
        expiring_within_days=expiring_within_days, expiring_points=expiring,
        expiring_liability_minor=value(expiring))


def stored_value_liability(accounts: ir.Table, *, members: ir.Table | None = None,
                           store_ids: StoreIds = None) -> StoredValueLiability:
    """Wallet balances owed to members (``accounts``: member_id, principal_minor, bonus_minor)."""
    a = _scoped(accounts, members, store_ids)
    a = a.filter((a.principal_minor != 0) | (a.bonus_minor != 0))
    row = _one_row(a.aggregate(n=a.count(), principal=a.principal_minor.sum(),
                               bonus=a.bonus_minor.sum()))
    principal, bonus = _int(row.get("principal")), _int(row.get("bonus"))
    return StoredValueLiability(accounts=_int(row.get("n")), principal_minor=principal,
                                bonus_minor=bonus, total_minor=principal + bonus)


def _scoped(table: ir.Table, members: ir.Table | None, store_ids: StoreIds) -> ir.Table:
    if store_ids is None:
        return table
    if members is None:
        raise ValidationFailed("a store filter needs the members table", "store_ids")
    return table.semi_join(members_in_scope(members, store_ids).select("member_id"),
                           "member_id")
