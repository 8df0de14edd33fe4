"""Team performance: how each store and each staff member looked after members in a period.

Design overview
---------------
One report, ``team_performance``, for owners (every store) and managers (their own stores
only: a manager naming another store is refused, as everywhere in patron). It answers,
per store, per staff member, for the chain in total and per calendar month of the period:
who enrolled members and did those members come back; did the store's own members keep
buying; were callbacks made, complaints resolved in time, customers satisfied; and did
campaigns move the store's members.

Every figure is an aggregate SQL query over the OLTP tables (SQLite and PostgreSQL alike):
like the rest of analytics this module reads other domains' tables directly, read-only and
in aggregate, which no row-at-a-time service could serve. Only small per-group results (and
the comparatively few complaints and survey answers of the period) come back to Python.
The monthly trend applies the same definitions to each calendar month (clipped to the
period): repeat rate and churn of the period and of all its months come from one pass over
the purchases (``_home_members``), the cheap indexed counts are run once per month.

Days and months are **local** (DESIGN rule 7): each store's own time zone. Stores are
grouped by zone and each group is queried with the period's UTC bounds in that zone; a
local day number (days since 1970-01-01 on the local calendar) is computed in SQL from
``sales.queries.epoch_us`` plus the zone's UTC offset (a CASE over the zone's offset
changes, constant for Asia/Shanghai). A member's days are counted in the zone of the store
that figure is about: the enrolling store for "came back", the home store for repeat rate
and churn.

Definitions (``RETURN_DAYS`` = ``LAPSE_DAYS`` = 90)
--------------------------------------------------
* **purchase**: a sale whose total less refunds is above zero (a sale refunded in full is
  not a visit), at any store; a **purchase day** is a local day with at least one.
* **enrolled**: members whose ``joined_at`` falls in the period, credited to
  ``enrolled_store_id`` and, for staff, to ``enrolled_by_id`` (self sign-ups and imports
  have none and count for the store only). Records later merged into another member are
  duplicates, not new customers, and are left out.
* **came back**: an enrolled member with a purchase on a *later* local day than the
  enrolment day and at most 90 days after it (enrolment on day d: a purchase on d + 1 …
  d + 90). A purchase made while enrolling does not count. ``came_back_rate`` =
  came back / enrolled. Counted as of now, so for members enrolled less than 90 days ago it
  is a lower bound: ``window_open`` counts the enrolled who have not come back *yet* and
  whose 90 days have not run out (enrolment day + 90 ≥ today).
* **repeat rate** (the store's home members): of the members whose home store it is who
  made a purchase in the period, the share with purchases on two or more local days in it
  (the reports' ``repeat_rate``).
* **churn** (home members, the leaky bucket's definition with N = 90): a member is
  *active* on a day when they made a purchase on it or on one of the N − 1 days before.
  ``active_start`` = home members active on the day before the period begins;
  ``churned`` = those of them who stopped being active on some day of the period (N days
  passed without a purchase: last purchase day + N ≤ the period's last day, also when they
  came back later); ``churn_rate`` = churned / active_start.
* **callbacks**: tasks *done* (a call settled them) with ``completed_at`` in the period,
  in the task's store, with their outcomes; staff credit goes to whoever logged the
  settling call. ``callbacks_reached`` = done with an outcome where somebody answered
  (``reached``, ``will_return``, ``complaint``, ``not_interested``); ``reach_rate`` =
  reached / done.
* **complaints**: ``complaints_opened`` = opened in the period; ``complaints_resolved`` =
  resolved (``resolved_at``, the latest resolution of a reopened one) in the period;
  ``resolved_within_sla`` = of those, resolved by their resolution deadline; time to
  resolution = resolved_at − opened_at, mean and median in hours. Staff credit goes to
  whoever made the latest move to *resolved*.
* **surveys**: answers given in the period to invitations of the store, summarised as in
  ``feedback.rules.summarise`` (CSAT % = share of 4-5 answers, NPS = % promoters 9-10 −
  % detractors 0-6). Staff credit: a survey about a sale goes to its cashier, one about a
  complaint to whoever resolved it.
* **campaign uplift** (by home store): campaign members whose attribution window starts in
  the period, measured as in ``campaigns.service.results`` (converted = a completed sale in
  the window; revenue = net of refunds in the window). Campaigns differ in their holdout
  share, so arms are not pooled: the uplift is the difference treatment − control within
  each campaign, averaged over campaigns weighted by their members in the store (a
  stratified estimate; pooling would mix campaigns of different holdouts and mislead).
  Campaigns with an empty arm in the store are left out. Conversion uplift is a fraction
  (0.05 = 5 points); revenue uplift is per member in minor units. The campaign page has
  the confidence intervals; here arm sizes are shown so small samples are visible.

Rates are floats in [0, 1] (None when the denominator is zero); money is integer minor units.
"""

from __future__ import annotations

import statistics
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    and_,
    case,
    exists,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import Session

from patron.analytics.views import (
    Period,
    local_midnight,
    month_index,
    month_start,
    offset_changes,
)
from patron.auth.enums import Role
from patron.auth.models import User
from patron.auth.principal import Principal, require_role, require_store
from patron.campaigns.models import CampaignMember
from patron.core.clock import Clock, local_today
from patron.core.errors import ValidationFailed
from patron.feedback import rules as feedback_rules
from patron.feedback.enums import CallbackStatus, CallOutcome, ComplaintStatus, SurveyOccasion
from patron.feedback.models import (
    CallbackCall,
    CallbackTask,
    Complaint,
    ComplaintEvent,
    SurveyInvitation,
    SurveyResponse,
)
from patron.feedback.rules import ScoreSummary
from patron.members.enums import MemberStatus
from patron.members.models import Member, Store
from patron.sales.models import Sale
from patron.sales.queries import epoch_us

RETURN_DAYS = 90
LAPSE_DAYS = 90
MAX_PERIOD_DAYS = 3 * 366  # a trend of at most 37 months
REACHED_OUTCOMES = frozenset({CallOutcome.REACHED.value, CallOutcome.WILL_RETURN.value,
                              CallOutcome.COMPLAINT.value, CallOutcome.NOT_INTERESTED.value})
US_PER_DAY = 86_400_000_000
EPOCH = date(1970, 1, 1)
LOOKUP_CHUNK = 500

Pair = tuple[int | None, int | None]


# ---------------------------------------------------------------------------------------
# The report


@dataclass(frozen=True)
class CampaignUplift:
    """Treatment against control among a store's members (see the module docstring)."""

    campaigns: int
    treatment_members: int
    treatment_converted: int
    control_members: int
    control_converted: int
    conversion_uplift: float | None
    revenue_uplift_per_member_minor: int | None


@dataclass(frozen=True)
class StoreRow:
    """One store's figures over the period (``store_id`` None: every store in scope)."""

    store_id: uuid.UUID | None
    code: str
    name: str
    enrolled: int
    came_back: int
    window_open: int
    came_back_rate: float | None
    home_purchasers: int
    home_repeaters: int
    repeat_rate: float | None
    active_start: int
    churned: int
    churn_rate: float | None
    callbacks_done: int
    callbacks_reached: int
    reach_rate: float | None
    callback_outcomes: dict[str, int]
    complaints_opened: int
    complaints_resolved: int
    resolved_within_sla: int
    sla_rate: float | None
    mean_resolution_hours: float | None
    median_resolution_hours: float | None
    surveys: ScoreSummary
    campaign: CampaignUplift


@dataclass(frozen=True)
class StaffRow:
    """One staff member's figures over the period, in the stores in scope."""

    user_id: uuid.UUID
    name: str
    role: str
    enrolled: int
    came_back: int
    window_open: int
    came_back_rate: float | None
    callbacks_done: int
    callbacks_reached: int
    reach_rate: float | None
    complaints_resolved: int
    resolved_within_sla: int
    sla_rate: float | None
    mean_resolution_hours: float | None
    surveys: ScoreSummary


@dataclass(frozen=True)
class TrendMonth:
    """Every store in scope over one local calendar month (clipped to the period)."""

    month: str  # YYYY-MM
    first_on: date
    last_on: date
    enrolled: int
    came_back: int
    came_back_rate: float | None
    repeat_rate: float | None
    churn_rate: float | None
    callbacks_done: int
    reach_rate: float | None
    complaints_resolved: int
    sla_rate: float | None
    mean_resolution_hours: float | None
    csat_percent: float | None
    nps: float | None
    campaign_conversion_uplift: float | None


@dataclass(frozen=True)
class TeamReport:
    period: Period
    return_days: int
    lapse_days: int
    store_ids: tuple[uuid.UUID, ...]
    stores: tuple[StoreRow, ...]
    total: StoreRow
    staff: tuple[StaffRow, ...]
    trend: tuple[TrendMonth, ...]


# ---------------------------------------------------------------------------------------
# Accumulators: additive raw counts, turned into rows at the end


@dataclass
class _Arm:
    members: int = 0
    converted: int = 0
    revenue_minor: int = 0


@dataclass
class _Acc:
    enrolled: int = 0
    came_back: int = 0
    window_open: int = 0
    purchasers: int = 0
    repeaters: int = 0
    active_start: int = 0
    churned: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    opened: int = 0
    resolutions: list[tuple[float, bool]] = field(default_factory=list)  # seconds, in SLA
    answers: list[Pair] = field(default_factory=list)
    # (store, campaign) -> arm -> counts: the strata of the uplift estimate
    arms: dict[tuple[uuid.UUID, uuid.UUID], dict[str, _Arm]] = field(default_factory=dict)

    def add(self, other: _Acc) -> None:
        self.enrolled += other.enrolled
        self.came_back += other.came_back
        self.window_open += other.window_open
        self.purchasers += other.purchasers
        self.repeaters += other.repeaters
        self.active_start += other.active_start
        self.churned += other.churned
        for outcome, n in other.outcomes.items():
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n
        self.opened += other.opened
        self.resolutions.extend(other.resolutions)
        self.answers.extend(other.answers)
        self.arms.update(other.arms)  # strata are per store: never the same key twice

    @property
    def done(self) -> int:
        return sum(self.outcomes.values())

    @property
    def reached(self) -> int:
        return sum(n for o, n in self.outcomes.items() if o in REACHED_OUTCOMES)


@dataclass
class _Measured:
    stores: dict[uuid.UUID, _Acc]
    staff: dict[uuid.UUID, _Acc]


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _hours(seconds: Iterable[float]) -> tuple[float | None, float | None]:
    values = [s / 3600 for s in seconds]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.median(values)


def _uplift(arms: dict[tuple[uuid.UUID, uuid.UUID], dict[str, _Arm]]) -> CampaignUplift:
    """The stratified treatment − control difference (see the module docstring)."""
    weight = conversion = revenue = 0.0
    campaigns: set[uuid.UUID] = set()
    t_n = t_x = c_n = c_x = 0
    for (_store, campaign_id), by_arm in arms.items():
        t, c = by_arm.get("treatment"), by_arm.get("control")
        if t is None or c is None or not t.members or not c.members:
            continue
        campaigns.add(campaign_id)
        w = t.members + c.members
        weight += w
        conversion += w * (t.converted / t.members - c.converted / c.members)
        revenue += w * (t.revenue_minor / t.members - c.revenue_minor / c.members)
        t_n, t_x = t_n + t.members, t_x + t.converted
        c_n, c_x = c_n + c.members, c_x + c.converted
    return CampaignUplift(
        campaigns=len(campaigns), treatment_members=t_n, treatment_converted=t_x,
        control_members=c_n, control_converted=c_x,
        conversion_uplift=conversion / weight if weight else None,
        revenue_uplift_per_member_minor=round(revenue / weight) if weight else None)


def _store_row(store_id: uuid.UUID | None, code: str, name: str, acc: _Acc) -> StoreRow:
    mean, median = _hours(s for s, _ in acc.resolutions)
    resolved = len(acc.resolutions)
    in_sla = sum(1 for _, ok in acc.resolutions if ok)
    done, reached = acc.done, acc.reached
    return StoreRow(
        store_id=store_id, code=code, name=name, enrolled=acc.enrolled,
        came_back=acc.came_back, window_open=acc.window_open,
        came_back_rate=_rate(acc.came_back, acc.enrolled), home_purchasers=acc.purchasers,
        home_repeaters=acc.repeaters, repeat_rate=_rate(acc.repeaters, acc.purchasers),
        active_start=acc.active_start, churned=acc.churned,
        churn_rate=_rate(acc.churned, acc.active_start), callbacks_done=done,
        callbacks_reached=reached, reach_rate=_rate(reached, done),
        callback_outcomes={o.value: acc.outcomes.get(o.value, 0) for o in CallOutcome},
        complaints_opened=acc.opened, complaints_resolved=resolved,
        resolved_within_sla=in_sla, sla_rate=_rate(in_sla, resolved),
        mean_resolution_hours=mean, median_resolution_hours=median,
        surveys=feedback_rules.summarise(acc.answers), campaign=_uplift(acc.arms))


def _staff_row(user: User, acc: _Acc) -> StaffRow:
    mean, _median = _hours(s for s, _ in acc.resolutions)
    resolved = len(acc.resolutions)
    in_sla = sum(1 for _, ok in acc.resolutions if ok)
    done, reached = acc.done, acc.reached
    return StaffRow(
        user_id=user.id, name=user.display_name, role=user.role, enrolled=acc.enrolled,
        came_back=acc.came_back, window_open=acc.window_open,
        came_back_rate=_rate(acc.came_back, acc.enrolled), callbacks_done=done,
        callbacks_reached=reached, reach_rate=_rate(reached, done),
        complaints_resolved=resolved, resolved_within_sla=in_sla,
        sla_rate=_rate(in_sla, resolved), mean_resolution_hours=mean,
        surveys=feedback_rules.summarise(acc.answers))


# ---------------------------------------------------------------------------------------
# Local days in SQL


@dataclass(frozen=True)
class _Zone:
    """Stores sharing a time zone, and the period's UTC bounds there."""

    tz: str
    store_ids: tuple[uuid.UUID, ...]
    period: Period
    today: date

    @property
    def start(self) -> datetime:
        return local_midnight(self.period.first_on, self.tz)

    @property
    def end(self) -> datetime:
        return local_midnight(self.period.last_on + timedelta(days=1), self.tz)

    def local_day(self, column: Any) -> ColumnElement[int]:
        """The local day number (days since 1970-01-01 here) of a UTC datetime column."""
        at = epoch_us(column)
        lo = int(self.start.timestamp()) - (LAPSE_DAYS + 400) * 86_400
        hi = int(self.end.timestamp()) + (RETURN_DAYS + 400) * 86_400
        first, changes = offset_changes(self.tz, lo, hi)
        offset: ColumnElement[int]
        if not changes:
            offset = literal(first * 1_000_000, BigInteger())
        else:
            branches: list[tuple[ColumnElement[bool], int]] = []
            current = first
            for at_s, new in changes:
                branches.append((at < at_s * 1_000_000, current * 1_000_000))
                current = new
            offset = case(*branches, else_=current * 1_000_000)
        day: ColumnElement[int] = (at + offset) // US_PER_DAY
        return day


def _day_number(day: date) -> int:
    return (day - EPOCH).days


def _purchase(sale: type[Sale] = Sale) -> ColumnElement[bool]:
    return sale.total_minor - sale.refunded_minor > 0


# ---------------------------------------------------------------------------------------
# The measures, one query each per time zone


def _enrolments(session: Session, zone: _Zone, out: _Measured) -> None:
    m = Member
    joined_day = zone.local_day(m.joined_at)
    sale_day = zone.local_day(Sale.occurred_at)
    came_back = exists().where(
        Sale.member_id == m.id, _purchase(),
        Sale.occurred_at > m.joined_at,
        Sale.occurred_at < zone.end + timedelta(days=RETURN_DAYS + 2),
        sale_day > joined_day, sale_day <= joined_day + RETURN_DAYS)
    came = case((came_back, 1), else_=0)
    still_open = case((and_(~came_back, joined_day + RETURN_DAYS >= _day_number(zone.today)),
                       1), else_=0)
    rows = session.execute(
        select(m.enrolled_store_id, m.enrolled_by_id, func.count(),
               func.coalesce(func.sum(came), 0), func.coalesce(func.sum(still_open), 0))
        .where(m.enrolled_store_id.in_(zone.store_ids), m.joined_at >= zone.start,
               m.joined_at < zone.end, m.status != MemberStatus.MERGED.value)
        .group_by(m.enrolled_store_id, m.enrolled_by_id))
    for store_id, user_id, enrolled, back, pending in rows:
        targets = [out.stores[store_id]]
        if user_id is not None:
            targets.append(out.staff[user_id])
        for acc in targets:
            acc.enrolled += int(enrolled)
            acc.came_back += int(back)
            acc.window_open += int(pending)


def _purchase_days(zone: _Zone, since: datetime) -> Any:
    """Distinct (home store, member, local day) of purchases of the zone's home members."""
    return (select(Member.home_store_id.label("store_id"), Sale.member_id.label("member_id"),
                   zone.local_day(Sale.occurred_at).label("day"))
            .join(Member, Member.id == Sale.member_id)
            .where(Member.home_store_id.in_(zone.store_ids), _purchase(),
                   Sale.occurred_at >= since, Sale.occurred_at < zone.end)
            .distinct().subquery())


def _home_members(session: Session, zone: _Zone, windows: Sequence[Period],
                  outs: Sequence[_Measured]) -> None:
    """Repeat rate and churn of the zone's home members, for every window at once.

    ``windows`` lie within the zone's period (the period itself and its months); each
    gets its figures in the matching ``outs``. Two scans of the purchases whatever the
    number of windows: the purchase days of the period and the N days before it, then
    (for churn) the member's *spells*, runs of purchase days at most N days apart, as in
    the leaky bucket. A member is active on the day before a window starts (f − 1) when a
    spell started by then and its last day + N is after it; they churned in the window
    when that spell's last day + N (the day they crossed) falls in the window.
    """
    since = local_midnight(zone.period.first_on - timedelta(days=LAPSE_DAYS), zone.tz)
    days = _purchase_days(zone, since)
    bounds = [(_day_number(w.first_on), _day_number(w.last_on)) for w in windows]

    per_member = select(days.c.store_id, days.c.member_id, *(
        func.sum(case((days.c.day.between(f, last), 1), else_=0)).label(f"n{i}")
        for i, (f, last) in enumerate(bounds))).group_by(
        days.c.store_id, days.c.member_id).subquery()
    columns: list[Any] = []
    for i in range(len(bounds)):
        n = per_member.c[f"n{i}"]
        columns += [func.sum(case((n >= 1, 1), else_=0)), func.sum(case((n >= 2, 1), else_=0))]
    for row in session.execute(select(per_member.c.store_id, *columns)
                               .group_by(per_member.c.store_id)):
        for i, out in enumerate(outs):
            acc = out.stores[row[0]]
            acc.purchasers += int(row[1 + 2 * i] or 0)
            acc.repeaters += int(row[2 + 2 * i] or 0)

    gaps = select(days.c.store_id, days.c.member_id, days.c.day,
                  func.lag(days.c.day).over(partition_by=days.c.member_id,
                                            order_by=days.c.day).label("previous")).subquery()
    opens = case((or_(gaps.c.previous.is_(None), gaps.c.day - gaps.c.previous > LAPSE_DAYS),
                  1), else_=0)
    numbered = select(gaps.c.store_id, gaps.c.member_id, gaps.c.day, func.sum(opens).over(
        partition_by=gaps.c.member_id, order_by=gaps.c.day).label("spell")).subquery()
    spells = (select(numbered.c.store_id, numbered.c.member_id,
                     func.min(numbered.c.day).label("start_n"),
                     (func.max(numbered.c.day) + LAPSE_DAYS).label("crossed_n"))
              .group_by(numbered.c.store_id, numbered.c.member_id, numbered.c.spell)
              .subquery())
    columns = []
    for f, last in bounds:
        active = and_(spells.c.start_n <= f - 1, spells.c.crossed_n > f - 1)
        columns += [func.sum(case((active, 1), else_=0)),
                    func.sum(case((and_(active, spells.c.crossed_n <= last), 1), else_=0))]
    for row in session.execute(select(spells.c.store_id, *columns)
                               .group_by(spells.c.store_id)):
        for i, out in enumerate(outs):
            acc = out.stores[row[0]]
            acc.active_start += int(row[1 + 2 * i] or 0)
            acc.churned += int(row[2 + 2 * i] or 0)


def _callbacks(session: Session, zone: _Zone, out: _Measured) -> None:
    t = CallbackTask
    done = (select(t.id).where(t.store_id.in_(zone.store_ids),
                               t.status == CallbackStatus.DONE.value,
                               t.completed_at >= zone.start, t.completed_at < zone.end))
    last_call = (select(CallbackCall.task_id, func.max(CallbackCall.seq).label("seq"))
                 .where(CallbackCall.task_id.in_(done)).group_by(CallbackCall.task_id)
                 .subquery())
    rows = session.execute(
        select(t.store_id, CallbackCall.actor_user_id, t.outcome, func.count())
        .select_from(t)
        .outerjoin(last_call, last_call.c.task_id == t.id)
        .outerjoin(CallbackCall, CallbackCall.seq == last_call.c.seq)
        .where(t.id.in_(done))
        .group_by(t.store_id, CallbackCall.actor_user_id, t.outcome))
    for store_id, user_id, outcome, n in rows:
        if outcome is None:  # cannot happen: a done task has its outcome (a CHECK)
            continue
        targets = [out.stores[store_id]]
        if user_id is not None:
            targets.append(out.staff[user_id])
        for acc in targets:
            acc.outcomes[outcome] = acc.outcomes.get(outcome, 0) + int(n)


def _resolvers(session: Session, complaint_ids: Sequence[uuid.UUID]
               ) -> dict[uuid.UUID, uuid.UUID | None]:
    """Who made each complaint's latest move to resolved."""
    found: dict[uuid.UUID, uuid.UUID | None] = {}
    for chunk in _chunks(complaint_ids):
        latest = (select(func.max(ComplaintEvent.seq))
                  .where(ComplaintEvent.complaint_id.in_(chunk),
                         ComplaintEvent.to_status == ComplaintStatus.RESOLVED.value)
                  .group_by(ComplaintEvent.complaint_id))
        for complaint_id, user_id in session.execute(
                select(ComplaintEvent.complaint_id, ComplaintEvent.actor_user_id)
                .where(ComplaintEvent.seq.in_(latest))):
            found[complaint_id] = user_id
    return found


def _complaints(session: Session, zone: _Zone, out: _Measured) -> None:
    c = Complaint
    for store_id, n in session.execute(
            select(c.store_id, func.count())
            .where(c.store_id.in_(zone.store_ids), c.opened_at >= zone.start,
                   c.opened_at < zone.end).group_by(c.store_id)):
        out.stores[store_id].opened += int(n)
    rows = session.execute(
        select(c.id, c.store_id, c.opened_at, c.resolved_at, c.resolution_due_at)
        .where(c.store_id.in_(zone.store_ids), c.resolved_at.is_not(None),
               c.resolved_at >= zone.start, c.resolved_at < zone.end)).all()
    resolvers = _resolvers(session, [r[0] for r in rows])
    for complaint_id, store_id, opened_at, resolved_at, due_at in rows:
        if resolved_at is None:
            continue
        item = ((resolved_at - opened_at).total_seconds(), resolved_at <= due_at)
        out.stores[store_id].resolutions.append(item)
        user_id = resolvers.get(complaint_id)
        if user_id is not None:
            out.staff[user_id].resolutions.append(item)


def _chunks(ids: Sequence[uuid.UUID]) -> Iterable[Sequence[uuid.UUID]]:
    for i in range(0, len(ids), LOOKUP_CHUNK):
        yield ids[i:i + LOOKUP_CHUNK]


def _as_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _surveys(session: Session, zone: _Zone, out: _Measured, *, staff: bool) -> None:
    rows = session.execute(
        select(SurveyInvitation.store_id, SurveyInvitation.occasion,
               SurveyInvitation.source_ref, SurveyResponse.csat, SurveyResponse.nps)
        .join(SurveyInvitation, SurveyInvitation.id == SurveyResponse.invitation_id)
        .where(SurveyInvitation.store_id.in_(zone.store_ids),
               SurveyResponse.answered_at >= zone.start,
               SurveyResponse.answered_at < zone.end)).all()
    for store_id, _occasion, _ref, csat, nps in rows:
        out.stores[store_id].answers.append((csat, nps))
    if not staff:
        return
    sale_ids = [i for r in rows if r[1] == SurveyOccasion.SALE.value
                and (i := _as_uuid(r[2])) is not None]
    complaint_ids = [i for r in rows if r[1] == SurveyOccasion.COMPLAINT.value
                     and (i := _as_uuid(r[2])) is not None]
    cashiers: dict[uuid.UUID, uuid.UUID | None] = {}
    for chunk in _chunks(sale_ids):
        cashiers.update(session.execute(
            select(Sale.id, Sale.cashier_id).where(Sale.id.in_(chunk))).all())
    resolvers = _resolvers(session, complaint_ids)
    for _store, occasion, ref, csat, nps in rows:
        ref_id = _as_uuid(ref)
        if ref_id is None:
            continue
        who = (cashiers if occasion == SurveyOccasion.SALE.value else resolvers).get(ref_id)
        if who is not None:
            out.staff[who].answers.append((csat, nps))


def _campaigns(session: Session, zone: _Zone, out: _Measured) -> None:
    cm = CampaignMember
    in_window = and_(Sale.member_id == cm.member_id, Sale.occurred_at >= cm.starts_at,
                     Sale.occurred_at < cm.ends_at)
    bought = select(func.count(Sale.id)).where(
        in_window, Sale.status == "completed").scalar_subquery()
    spent = select(func.coalesce(func.sum(Sale.total_minor - Sale.refunded_minor), 0)).where(
        in_window).scalar_subquery()
    per_member = (select(Member.home_store_id.label("store_id"), cm.campaign_id, cm.arm,
                         bought.label("bought"), spent.label("spent"))
                  .join(Member, Member.id == cm.member_id)
                  .where(cm.arm.in_(("treatment", "control")),
                         Member.home_store_id.in_(zone.store_ids),
                         cm.starts_at >= zone.start, cm.starts_at < zone.end).subquery())
    p = per_member.c
    for store_id, campaign_id, arm, n, converted, revenue in session.execute(
            select(p.store_id, p.campaign_id, p.arm, func.count(),
                   func.coalesce(func.sum(case((p.bought > 0, 1), else_=0)), 0),
                   func.coalesce(func.sum(p.spent), 0))
            .group_by(p.store_id, p.campaign_id, p.arm)):
        strata = out.stores[store_id].arms.setdefault((store_id, campaign_id), {})
        strata[arm] = _Arm(members=int(n), converted=int(converted),
                           revenue_minor=int(revenue))


def _measure(session: Session, zones: Sequence[_Zone], *, staff: bool) -> _Measured:
    out = _Measured(stores=defaultdict(_Acc), staff=defaultdict(_Acc))
    for zone in zones:
        _enrolments(session, zone, out)
        _callbacks(session, zone, out)
        _complaints(session, zone, out)
        _surveys(session, zone, out, staff=staff)
        _campaigns(session, zone, out)
    return out


# ---------------------------------------------------------------------------------------
# The use case


def _scope(session: Session, principal: Principal,
           store_ids: Sequence[uuid.UUID] | None) -> list[Store]:
    """The stores asked for, each one the principal may see; all they may see by default."""
    stores = {s.id: s for s in session.scalars(select(Store).order_by(Store.code))}
    if store_ids is None:
        visible = principal.visible_store_ids()
        return [s for s in stores.values() if visible is None or s.id in visible]
    chosen = []
    for store_id in dict.fromkeys(store_ids):
        require_store(principal, store_id)
        if store_id not in stores:
            raise ValidationFailed("No such store", "store_id", code="unknown_store")
        chosen.append(stores[store_id])
    return chosen


def _zones(stores: Sequence[Store], period: Period, clock: Clock) -> list[_Zone]:
    by_tz: dict[str, list[uuid.UUID]] = defaultdict(list)
    for store in stores:
        by_tz[store.timezone].append(store.id)
    return [_Zone(tz=tz, store_ids=tuple(ids), period=period, today=local_today(clock, tz))
            for tz, ids in sorted(by_tz.items())]


def months_of(period: Period) -> list[Period]:
    """The calendar months the period touches, each clipped to the period."""
    out = []
    for index in range(month_index(period.first_on), month_index(period.last_on) + 1):
        first = max(month_start(index), period.first_on)
        last = min(month_start(index + 1) - timedelta(days=1), period.last_on)
        out.append(Period(first, last))
    return out


def default_period(today: date) -> Period:
    """The twelve calendar months that end with yesterday (as the other reports)."""
    last = today - timedelta(days=1)
    return Period(month_start(month_index(last) - 11), last)


def resolve_period(today: date, first_on: date | None, last_on: date | None) -> Period:
    """The period asked for, with the default filling in a missing end: a missing ``from``
    is the start of the twelfth month before ``to``. Errors name the field."""
    last = last_on or default_period(today).last_on
    first = first_on or month_start(month_index(last) - 11)
    if first > last:
        raise ValidationFailed("The period ends before it starts", "from", code="reversed")
    return Period(first, last)


def _trend_month(month: Period, acc: _Acc) -> TrendMonth:
    row = _store_row(None, "", "", acc)
    return TrendMonth(
        month=f"{month.first_on:%Y-%m}", first_on=month.first_on, last_on=month.last_on,
        enrolled=row.enrolled, came_back=row.came_back, came_back_rate=row.came_back_rate,
        repeat_rate=row.repeat_rate, churn_rate=row.churn_rate,
        callbacks_done=row.callbacks_done, reach_rate=row.reach_rate,
        complaints_resolved=row.complaints_resolved, sla_rate=row.sla_rate,
        mean_resolution_hours=row.mean_resolution_hours,
        csat_percent=row.surveys.csat_percent, nps=row.surveys.nps,
        campaign_conversion_uplift=row.campaign.conversion_uplift)


def team_performance(session: Session, *, principal: Principal, clock: Clock, period: Period,
                     store_ids: Sequence[uuid.UUID] | None = None) -> TeamReport:
    """Per-store, per-staff and monthly team figures over ``period`` (local days, both
    ends included) for the stores ``store_ids`` (default: every store the principal sees).

    Owners and managers (staff users) only; a manager asking for a store they do not run
    is refused. The period may not end after today nor span more than ``MAX_PERIOD_DAYS``.
    Reads only; nothing is written.
    """
    require_role(principal, Role.MANAGER, users_only=True)
    if (period.last_on - period.first_on).days + 1 > MAX_PERIOD_DAYS:
        raise ValidationFailed("The period may span at most three years", "from",
                               code="too_long")
    stores = _scope(session, principal, store_ids)
    zones = _zones(stores, period, clock)
    latest_today = max((z.today for z in zones), default=clock.now().astimezone(UTC).date())
    if period.last_on > latest_today:
        raise ValidationFailed("The period cannot end after today", "to", code="in_future")
    measured = _measure(session, zones, staff=True)
    months = months_of(period)
    monthly = [_measure(session, _zones(stores, month, clock), staff=False)
               for month in months]
    for zone in zones:  # repeat rate and churn of the period and of each month, at once
        _home_members(session, zone, [period, *months], [measured, *monthly])

    total = _Acc()
    rows = []
    for store in stores:
        acc = measured.stores.get(store.id, _Acc())
        total.add(acc)
        rows.append(_store_row(store.id, store.code, store.name, acc))

    users = {u.id: u for u in session.scalars(
        select(User).where(User.id.in_(list(measured.staff))))} if measured.staff else {}
    staff_rows = sorted((_staff_row(users[uid], acc) for uid, acc in measured.staff.items()
                         if uid in users), key=lambda r: (r.name, str(r.user_id)))

    trend = []
    for month, month_measured in zip(months, monthly, strict=True):
        month_total = _Acc()
        for acc in month_measured.stores.values():
            month_total.add(acc)
        trend.append(_trend_month(month, month_total))

    return TeamReport(
        period=period, return_days=RETURN_DAYS, lapse_days=LAPSE_DAYS,
        store_ids=tuple(s.id for s in stores), stores=tuple(rows),
        total=_store_row(None, "", "", total), staff=tuple(staff_rows), trend=tuple(trend))
