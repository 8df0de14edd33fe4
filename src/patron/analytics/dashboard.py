"""The owner's dashboard: every figure of the home page, assembled for one store scope and
period, cheaply enough to render a page in well under 300 ms at a million members.

Design overview
---------------
The figures come from three places with very different costs, so each is read the way its
cost allows:

1. **The nightly snapshot** (``member_scores``, written by ``service.refresh``): members at
   risk and their predicted value, the RFM grid and the lifecycle funnel, all sums over
   groups of (R score, FM score, segment, stage). The refresh writes those groups per home
   store (``aggregates``: ``dashboard_groups``, at most ~150 rows a store), so the page
   sums a few hundred rows for any set of stores; grouping a million score rows took 4.7 s.
   A snapshot without groups (written before they existed, or by hand) is grouped from its
   scores instead, joining ``members`` for the home store: a read of the members domain's
   table, like ``source``'s export path. The two give the same figures (a test compares
   them). The result depends only on the snapshot day and the scope, so it is kept in
   memory until a newer snapshot appears.
2. **The sales history** (``views`` over ``source``): active and new members, repeat rate,
   churn, the leaky bucket, cohorts, the Pareto curve and the liabilities at the period's
   end. These need the whole history (a member's spells start years back), which at a
   million members is a DuckDB load of tens of seconds. For the default period (the
   twelve months to the snapshot day) of every store and of each store the nightly refresh
   computes them in one grouped pass (``aggregates.store_histories``, equal to
   ``aggregates.history_numbers`` of each scope, which this module calls) and stores them,
   so the page shows them at once; any other scope or period is computed on request, once
   per (stores, period, time zone, local day), and kept in memory for that day. The
   history up to the period's last day does not change afterwards (refunds count when
   booked, the source reads them as of the cutoff), so a day-keyed entry is never stale in
   substance; the day in the key drops it at midnight in case history was imported late.
3. **Campaign results** (``campaigns.service.results``): the uplift of the period's
   campaigns with their confidence intervals, kept with the history figures of the day.

``HistoryCache`` computes a key once even when several requests ask at the same moment
(one waits for the other rather than loading the history twice). Nothing here writes.

Who sees what: the money figures are for owners and managers (staff users), checked here
(``require_role``); a manager's scope is the stores they work in, and asking for another
store is refused. Figures about members follow the home store; revenue (Pareto, member
share) follows the store of the sale, as in ``views``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from patron.analytics import aggregates, source, views
from patron.analytics.portraits import PortraitView, portrait_summary
from patron.analytics.service import latest_as_of
from patron.analytics.tables import (
    LIFECYCLE_STAGES,
    RFM_SEGMENTS,
    DashboardGroup,
    MemberScore,
)
from patron.analytics.views import Period
from patron.auth.enums import Role
from patron.auth.principal import Principal, require_role, require_store
from patron.campaigns import service as campaigns
from patron.core.clock import Clock, as_utc, local_today
from patron.core.db import Database
from patron.core.errors import PatronError, ValidationFailed
from patron.core.money import divide_round_half_up
from patron.members.models import Member

#: P(alive) below which a scored member counts as at risk (as ``views.revenue_at_risk``).
AT_RISK_P_ALIVE = aggregates.AT_RISK_P_ALIVE
#: The most months a dashboard period may span (the cohort grid grows with its square).
MAX_MONTHS = 36
#: Campaigns shown in the uplift summary: the most recently launched of the period.
MAX_CAMPAIGNS = 8
#: Campaign statuses that have an assignment (and so results).
LAUNCHED = ("sending", "sent", "recurring", "paused", "cancelled")
HISTORY_TABLES = ("sales", "members", "holdings")


# ---------------------------------------------------------------- scope


@dataclass(frozen=True)
class Scope:
    """The stores (None: every store) and local days the figures are about."""

    period: Period
    store_ids: frozenset[uuid.UUID] | None
    tz: str

    @property
    def key(self) -> tuple[Hashable, ...]:
        stores = None if self.store_ids is None else tuple(sorted(str(s) for s in self.store_ids))
        return (stores, self.period.first_on, self.period.last_on, self.tz)


def resolve_scope(*, actor: Principal, clock: Clock, tz: str, store_id: uuid.UUID | None = None,
                  first_on: date | None = None, last_on: date | None = None) -> Scope:
    """The scope a viewer asked for, checked: owners and managers only, a manager within
    their stores, a period of whole local days that ends by yesterday and spans at most
    ``MAX_MONTHS`` months. Default: the twelve calendar months ending yesterday."""
    require_role(actor, Role.MANAGER, users_only=True)
    yesterday = source.default_as_of(clock.now(), tz)
    last = last_on or yesterday
    if last > yesterday:
        raise ValidationFailed("The period must end by yesterday (today is not over yet)",
                               "last_on", code="period_ends_in_future")
    first = first_on or aggregates.default_period(last).first_on
    if first > last:
        raise ValidationFailed("The period ends before it starts", "first_on",
                               code="period_reversed")
    if views.month_index(last) - views.month_index(first) + 1 > MAX_MONTHS:
        raise ValidationFailed(f"The period may span at most {MAX_MONTHS} months", "first_on",
                               code="period_too_long")
    stores: frozenset[uuid.UUID] | None
    if store_id is not None:
        require_store(actor, store_id)
        stores = frozenset({store_id})
    else:
        stores = actor.visible_store_ids()
    return Scope(period=Period(first, last), store_ids=stores, tz=tz)


# ---------------------------------------------------------------- the snapshot


@dataclass(frozen=True)
class GroupFigures:
    """Members of one RFM segment or lifecycle stage and their value."""

    name: str
    members: int
    revenue_365_minor: int
    clv_minor: int


@dataclass(frozen=True)
class GridCell:
    """One cell of the R × FM grid (scores 1-5) and the segment it belongs to."""

    r_score: int
    fm_score: int
    segment: str
    members: int
    revenue_365_minor: int


@dataclass(frozen=True)
class SnapshotFigures:
    """What the nightly snapshot of ``as_of`` says about the scope's members."""

    as_of: date
    members_scored: int
    members_at_risk: int
    clv_total_minor: int
    clv_at_risk_minor: int
    segments: tuple[GroupFigures, ...]
    stages: tuple[GroupFigures, ...]
    grid: tuple[GridCell, ...]

    @property
    def at_risk_share(self) -> float | None:
        """Predicted value at risk over the predicted value of every scored member."""
        return self.clv_at_risk_minor / self.clv_total_minor if self.clv_total_minor > 0 \
            else None


def snapshot_figures(session: Session, *, actor: Principal, scope: Scope,
                     as_of: date | None = None, scan: bool = False) -> SnapshotFigures | None:
    """At-risk members, the RFM grid and the lifecycle funnel of the latest snapshot (or
    of ``as_of``) for the scope's members; None without one. Read from the groups the
    refresh wrote (``aggregates``: a few hundred rows), or, for a snapshot without them,
    by grouping its scores (``scan=True`` forces this: the two agree)."""
    require_role(actor, Role.MANAGER, users_only=True)
    _check_within(actor, scope)
    day = as_of or latest_as_of(session)
    if day is None:
        return None
    if not scan and aggregates.has_groups(session, day):
        rows = session.execute(_group_sums(day, scope))
    else:
        rows = session.execute(_score_scan(day, scope))
    return _snapshot(day, rows)


def _group_sums(day: date, scope: Scope) -> Select[*tuple[Any, ...]]:
    """The day's precomputed groups of the scope's home stores, summed over stores."""
    g = DashboardGroup
    stmt = (select(g.r_score, g.fm_score, g.rfm_segment, g.lifecycle_stage,
                   func.sum(g.members), func.sum(g.revenue_365_minor), func.sum(g.clv_minor),
                   func.sum(g.scored), func.sum(g.at_risk), func.sum(g.clv_scored_minor),
                   func.sum(g.clv_at_risk_minor))
            .where(g.as_of == day)
            .group_by(g.r_score, g.fm_score, g.rfm_segment, g.lifecycle_stage))
    if scope.store_ids is not None:
        stmt = stmt.where(g.store_id.in_(sorted(scope.store_ids)))
    return stmt


def _score_scan(day: date, scope: Scope) -> Select[*tuple[Any, ...]]:
    """The same sums grouped from the day's scores (one row per member)."""
    s = MemberScore
    risky = (s.p_alive.is_not(None)) & (s.p_alive < AT_RISK_P_ALIVE)
    scored = s.p_alive.is_not(None)
    clv = func.coalesce(s.clv_minor, 0)
    stmt = (select(s.r_score, s.fm_score, s.rfm_segment, s.lifecycle_stage,
                   func.count(),
                   func.coalesce(func.sum(s.net_365_minor), 0),
                   func.coalesce(func.sum(clv), 0),
                   func.coalesce(func.sum(case((scored, 1), else_=0)), 0),
                   func.coalesce(func.sum(case((risky, 1), else_=0)), 0),
                   func.coalesce(func.sum(case((scored, clv), else_=0)), 0),
                   func.coalesce(func.sum(case((risky, clv), else_=0)), 0))
            .where(s.as_of == day)
            .group_by(s.r_score, s.fm_score, s.rfm_segment, s.lifecycle_stage))
    if scope.store_ids is not None:
        # Scores carry no store: the member's home store decides, as in ``views``.
        stmt = stmt.join(Member, Member.id == s.member_id).where(
            Member.home_store_id.in_(sorted(scope.store_ids)))
    return stmt


def _snapshot(day: date, rows: Any) -> SnapshotFigures:
    segments: dict[str, list[int]] = {}
    stages: dict[str, list[int]] = {}
    grid: dict[tuple[int, int, str], list[int]] = {}
    totals = [0, 0, 0, 0, 0]  # members, scored, at risk, clv scored, clv at risk
    for r, fm, segment, stage, n, recent, value, n_scored, n_risky, v_scored, v_risky in rows:
        n, recent, value = int(n), int(recent), int(value)
        for part, add in enumerate((n, int(n_scored), int(n_risky), int(v_scored),
                                    int(v_risky))):
            totals[part] += add
        for bucket, name in ((segments, segment), (stages, stage)):
            if name is not None:
                acc = bucket.setdefault(name, [0, 0, 0])
                acc[0] += n
                acc[1] += recent
                acc[2] += value
        if r is not None and fm is not None and segment is not None:
            cell = grid.setdefault((int(r), int(fm), segment), [0, 0])
            cell[0] += n
            cell[1] += recent

    def groups(bucket: dict[str, list[int]], order: Sequence[str]) -> tuple[GroupFigures, ...]:
        rank = {name: i for i, name in enumerate(order)}
        return tuple(GroupFigures(name=name, members=v[0], revenue_365_minor=v[1],
                                  clv_minor=v[2])
                     for name, v in sorted(bucket.items(),
                                           key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))

    return SnapshotFigures(
        as_of=day, members_scored=totals[1], members_at_risk=totals[2],
        clv_total_minor=totals[3], clv_at_risk_minor=totals[4],
        segments=groups(segments, RFM_SEGMENTS), stages=groups(stages, LIFECYCLE_STAGES),
        grid=tuple(GridCell(r_score=r, fm_score=fm, segment=seg, members=v[0],
                            revenue_365_minor=v[1])
                   for (r, fm, seg), v in sorted(grid.items())))


def _check_within(actor: Principal, scope: Scope) -> None:
    """A scope built by hand must still lie within the actor's stores."""
    visible = actor.visible_store_ids()
    if visible is None:
        return
    if scope.store_ids is None or not scope.store_ids <= visible:
        require_store(actor, next(iter(sorted((scope.store_ids or frozenset()) - visible)),
                                  None))


# ---------------------------------------------------------------- the history


@dataclass(frozen=True)
class HistoryFigures:
    """The history-based figures of a scope, as of the end of its period's last day.

    ``active_members``: members active on the last day (a purchase within the lapse
    window, ``views.leaky_bucket``); ``new_members``: members who joined in the period;
    ``churn_rate``: the period's monthly churn, pooled (members lapsed among those active
    at the start of each month, summed over the months); liabilities: points available at
    the cutoff at the programme's redemption value, and stored value (principal + bonus).
    """

    scope: Scope
    computed_at: datetime
    seconds: float
    active_members: int
    new_members: int
    repeat: views.RepeatRate
    churn_rate: float | None
    pareto: views.ParetoReport
    bucket: views.LeakyBucket
    cohorts: views.CohortReport
    points_outstanding: int
    points_liability_minor: int
    stored_value_minor: int
    campaigns: tuple[CampaignUplift, ...] = field(default=())


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class CampaignUplift:
    """One campaign's measured effect: treatment minus control, with a 95 % interval."""

    campaign_id: uuid.UUID
    name: str
    launched_on: date
    treatment: int
    control: int
    conversion: Interval | None  # proportion points (0.021 = 2.1 points)
    revenue_per_member_minor: Interval | None
    verdict: str


def history_figures(db: Database, *, clock: Clock, actor: Principal, scope: Scope,
                    points_per_major_redeemed: int, minor_per_major: int) -> HistoryFigures:
    """Compute the history figures (the expensive part: loads the history into DuckDB).

    Takes the ``Database``, like ``service.refresh``: the load reads the database file in
    a child process (SQLite) or one COPY snapshot (PostgreSQL), outside the caller's
    session. The figures are ``aggregates.history_numbers``, which the nightly refresh
    also stores for the default period (``stored_history_figures``).
    """
    require_role(actor, Role.MANAGER, users_only=True)
    _check_within(actor, scope)
    _check_rate(points_per_major_redeemed)
    started = time.perf_counter()
    with source.open_source(db, as_of=scope.period.last_on, timezone=scope.tz,
                            tables=HISTORY_TABLES) as src:
        numbers = aggregates.history_numbers(src, period=scope.period, tz=scope.tz,
                                             store_ids=scope.store_ids)
    return _figures(scope, numbers, computed_at=clock.now(),
                    seconds=time.perf_counter() - started,
                    points_per_major_redeemed=points_per_major_redeemed,
                    minor_per_major=minor_per_major)


def stored_history_figures(session: Session, *, actor: Principal, scope: Scope,
                           points_per_major_redeemed: int, minor_per_major: int
                           ) -> HistoryFigures | None:
    """The history figures the nightly refresh stored for this scope (the default period
    of every store or of one store, as of a succeeded snapshot), or None: a few rows read,
    nothing loaded. Liabilities are valued at today's redemption rate."""
    require_role(actor, Role.MANAGER, users_only=True)
    _check_within(actor, scope)
    _check_rate(points_per_major_redeemed)
    stored = aggregates.stored_history(session, period=scope.period, tz=scope.tz,
                                       store_ids=scope.store_ids)
    if stored is None:
        return None
    return _figures(scope, stored.numbers, computed_at=stored.computed_at,
                    seconds=stored.seconds,
                    points_per_major_redeemed=points_per_major_redeemed,
                    minor_per_major=minor_per_major)


def _check_rate(points_per_major_redeemed: int) -> None:
    if points_per_major_redeemed <= 0:
        raise ValidationFailed("points per currency unit must be positive",
                               "points_per_major_redeemed")


def _figures(scope: Scope, numbers: aggregates.HistoryNumbers, *, computed_at: datetime,
             seconds: float, points_per_major_redeemed: int, minor_per_major: int
             ) -> HistoryFigures:
    points = numbers.points_outstanding
    return HistoryFigures(
        scope=scope, computed_at=computed_at, seconds=seconds,
        active_members=numbers.active_members, new_members=numbers.new_members,
        repeat=numbers.repeat, churn_rate=numbers.churn_rate, pareto=numbers.pareto,
        bucket=numbers.bucket, cohorts=numbers.cohorts, points_outstanding=points,
        points_liability_minor=divide_round_half_up(points * minor_per_major,
                                                    points_per_major_redeemed),
        stored_value_minor=numbers.stored_value_minor)


def campaign_uplift(session: Session, *, clock: Clock, actor: Principal, scope: Scope,
                    currency: str, limit: int = MAX_CAMPAIGNS) -> tuple[CampaignUplift, ...]:
    """The most recent campaigns launched in the period that the actor may see (and, with
    a store filter, that target that store), with their measured uplift."""
    require_role(actor, Role.MANAGER, users_only=True)
    start, end = scope.period.bounds(scope.tz)
    chosen = []
    for c in campaigns.list_campaigns(session, actor=actor):
        if c.status not in LAUNCHED or c.launched_at is None:
            continue
        launched = as_utc(c.launched_at)
        if not start <= launched < end:
            continue
        if scope.store_ids is not None and c.store_ids and \
                not {str(s) for s in scope.store_ids} & set(c.store_ids):
            continue  # limited to other stores (a brand-wide campaign reaches every store)
        chosen.append((launched, c))
    chosen.sort(key=lambda pair: pair[0], reverse=True)
    out = []
    for launched, c in chosen[:limit]:
        try:
            result = campaigns.results(session, clock=clock, actor=actor, campaign_id=c.id,
                                       currency=currency)
        except PatronError:
            continue

        def interval(value: Any) -> Interval | None:
            return None if value is None else Interval(float(value.estimate),
                                                        float(value.low), float(value.high))

        out.append(CampaignUplift(
            campaign_id=c.id, name=c.name,
            launched_on=launched.astimezone(views.zone(scope.tz)).date(),
            treatment=result.treatment.members, control=result.control.members,
            conversion=interval(result.uplift.conversion),
            revenue_per_member_minor=interval(result.uplift.revenue_per_member_minor),
            verdict=result.conversion_verdict.code))
    return tuple(out)


# ---------------------------------------------------------------- caching

V = TypeVar("V")


class FigureCache(Generic[V]):
    """A small in-process LRU of computed figures with one computation per key at a time.

    Keys carry what makes an entry valid (the scope and the local day, or the snapshot
    day), so entries never need invalidating; old ones fall out by size.
    """

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()
        self._computing: dict[Hashable, threading.Lock] = {}

    def peek(self, key: Hashable) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def get_or_compute(self, key: Hashable, compute: Callable[[], V]) -> V:
        value = self.peek(key)
        if value is not None:
            return value
        with self._lock:
            gate = self._computing.setdefault(key, threading.Lock())
        with gate:  # a second caller waits for the first and then finds the entry
            value = self.peek(key)
            if value is None:
                value = compute()
                with self._lock:
                    self._entries[key] = value
                    self._entries.move_to_end(key)
                    while len(self._entries) > self.size:
                        self._entries.popitem(last=False)
            with self._lock:
                self._computing.pop(key, None)
            return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


HISTORY_CACHE: FigureCache[HistoryFigures] = FigureCache(32)
SNAPSHOT_CACHE: FigureCache[SnapshotFigures] = FigureCache(64)


def history_key(*, db: Database, actor: Principal, scope: Scope, clock: Clock
                ) -> tuple[Hashable, ...]:
    """Valid for one local day; campaigns depend on who looks (managers see their own)."""
    visible = actor.visible_store_ids()
    who = None if visible is None else tuple(sorted(str(s) for s in visible))
    return ("history", str(db.engine.url), scope.key, local_today(clock, scope.tz), who)


def cached_history(db: Database, *, clock: Clock, actor: Principal, scope: Scope,
                   points_per_major_redeemed: int, minor_per_major: int, currency: str,
                   cache: FigureCache[HistoryFigures] = HISTORY_CACHE) -> HistoryFigures:
    """The history figures and campaign uplift of the scope, once a day: those the
    nightly refresh stored when it has them, else computed (the history load)."""
    from dataclasses import replace

    def compute() -> HistoryFigures:
        with db.read() as session:
            figures = stored_history_figures(
                session, actor=actor, scope=scope,
                points_per_major_redeemed=points_per_major_redeemed,
                minor_per_major=minor_per_major)
        if figures is None:
            figures = history_figures(db, clock=clock, actor=actor, scope=scope,
                                      points_per_major_redeemed=points_per_major_redeemed,
                                      minor_per_major=minor_per_major)
        with db.read() as session:
            uplift = campaign_uplift(session, clock=clock, actor=actor, scope=scope,
                                     currency=currency)
        return replace(figures, campaigns=uplift)

    return cache.get_or_compute(history_key(db=db, actor=actor, scope=scope, clock=clock),
                                compute)


def peek_history(db: Database, *, clock: Clock, actor: Principal, scope: Scope,
                 cache: FigureCache[HistoryFigures] = HISTORY_CACHE) -> HistoryFigures | None:
    """The cached history figures of the scope, or None (nothing is computed)."""
    require_role(actor, Role.MANAGER, users_only=True)
    _check_within(actor, scope)
    return cache.peek(history_key(db=db, actor=actor, scope=scope, clock=clock))


def ready_history(session: Session, db: Database, *, clock: Clock, actor: Principal,
                  scope: Scope, points_per_major_redeemed: int, minor_per_major: int,
                  currency: str, cache: FigureCache[HistoryFigures] = HISTORY_CACHE
                  ) -> HistoryFigures | None:
    """The history figures of the scope if they cost no history load: cached, or stored
    by the nightly refresh (then cached, with the campaign uplift); else None, and the
    page fetches them (``cached_history``) after it has rendered."""
    found = peek_history(db, clock=clock, actor=actor, scope=scope, cache=cache)
    if found is not None:
        return found
    if aggregates.scope_key(scope.store_ids) is None:
        return None  # never stored: no need to look
    stored = stored_history_figures(session, actor=actor, scope=scope,
                                    points_per_major_redeemed=points_per_major_redeemed,
                                    minor_per_major=minor_per_major)
    if stored is None:
        return None
    return cached_history(db, clock=clock, actor=actor, scope=scope,
                          points_per_major_redeemed=points_per_major_redeemed,
                          minor_per_major=minor_per_major, currency=currency, cache=cache)


def cached_snapshot(session: Session, db: Database, *, actor: Principal, scope: Scope,
                    cache: FigureCache[SnapshotFigures] = SNAPSHOT_CACHE
                    ) -> SnapshotFigures | None:
    """``snapshot_figures`` of the latest snapshot, kept until a newer one succeeds."""
    require_role(actor, Role.MANAGER, users_only=True)
    _check_within(actor, scope)
    day = latest_as_of(session)
    if day is None:
        return None
    stores = None if scope.store_ids is None else tuple(sorted(str(s) for s in scope.store_ids))
    key = ("snapshot", str(db.engine.url), day, stores)
    return cache.get_or_compute(key, lambda: _snapshot_or_fail(session, actor, scope, day))


def _snapshot_or_fail(session: Session, actor: Principal, scope: Scope,
                      day: date) -> SnapshotFigures:
    figures = snapshot_figures(session, actor=actor, scope=scope, as_of=day)
    if figures is None:  # pragma: no cover - the day came from a succeeded run
        raise ValidationFailed("the snapshot disappeared", "as_of")
    return figures




PORTRAIT_CACHE: FigureCache[list[PortraitView]] = FigureCache(64)


def cached_portraits(session: Session, db: Database, *, actor: Principal, scope: Scope,
                     cache: FigureCache[list[PortraitView]] = PORTRAIT_CACHE
                     ) -> list[PortraitView]:
    """The portraits of the latest snapshot with the scope's figures ([] before any),
    kept until a newer snapshot succeeds (a store scope recounts over a million rows)."""
    require_role(actor, Role.MANAGER, users_only=True)
    _check_within(actor, scope)
    day = latest_as_of(session)
    if day is None:
        return []
    stores = None if scope.store_ids is None else tuple(sorted(str(s) for s in scope.store_ids))
    key = ("portraits", str(db.engine.url), day, stores)
    return cache.get_or_compute(key, lambda: portrait_summary(session,
                                                              store_ids=scope.store_ids))
