"""Pure feedback rules: complaint SLAs and transitions, callback overdue, survey arithmetic.

Design overview
---------------
SLA. A complaint gets two deadlines when it is opened, both fixed by its severity
(``SLA_TARGETS``): a *first response* (staff took it up: the first move out of ``open``)
and a *resolution*. They are calendar hours, not business hours, because a customer waits
through nights and weekends too. The deadlines are computed once and stored, so a later
change of these constants never moves the goalposts of a complaint already open. The
``sla_state`` is derived from the clock whenever it is read:

* ``breached`` -- a deadline passed before its step was done (a late first response stays
  a breach for good; resolving late likewise);
* ``due_soon`` -- a pending deadline is in the last ``DUE_SOON_FRACTION`` of its window;
* ``ok`` -- otherwise (also for a complaint resolved in time).

Reopening clears ``resolved_at`` (the event history keeps it), so the resolution deadline
counts again.

Surveys. CSAT is asked on a 1-5 scale: ``csat_percent`` is the share of 4 and 5 answers
in percent and ``csat_mean`` the plain mean. NPS is asked on 0-10: promoters answer 9-10,
detractors 0-6, and NPS = 100 x (promoters - detractors) / answers, so it lies in
[-100, 100]. Each figure counts only the answers to its own question (both are optional),
and is ``None`` when nobody answered it. Figures are floats, unrounded; rounding is for
display.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from patron.feedback.enums import CallbackStatus, ComplaintStatus, Severity, SlaState


@dataclass(frozen=True)
class SlaTarget:
    first_response: timedelta
    resolution: timedelta


#: How long staff have to respond to and to resolve a complaint, by severity.
SLA_TARGETS: dict[Severity, SlaTarget] = {
    Severity.CRITICAL: SlaTarget(timedelta(hours=4), timedelta(hours=24)),
    Severity.HIGH: SlaTarget(timedelta(hours=24), timedelta(hours=72)),
    Severity.NORMAL: SlaTarget(timedelta(hours=48), timedelta(days=7)),
    Severity.LOW: SlaTarget(timedelta(hours=72), timedelta(days=14)),
}
#: A pending deadline is "due soon" in the last quarter of its window (1 h of critical's 4 h).
DUE_SOON_FRACTION = 0.25


@dataclass(frozen=True)
class SlaDeadlines:
    first_response_due_at: datetime
    resolution_due_at: datetime


def sla_deadlines(severity: Severity, opened_at: datetime) -> SlaDeadlines:
    """The two deadlines of a complaint of ``severity`` opened at ``opened_at``."""
    target = SLA_TARGETS[severity]
    return SlaDeadlines(first_response_due_at=opened_at + target.first_response,
                        resolution_due_at=opened_at + target.resolution)


def sla_state(*, now: datetime, opened_at: datetime, first_response_due_at: datetime,
              resolution_due_at: datetime, first_response_at: datetime | None,
              resolved_at: datetime | None) -> SlaState:
    """Where a complaint stands against its deadlines at ``now`` (see the module overview).

    Resolving counts as responding, so a complaint resolved straight from ``open`` has its
    first response at its resolution.
    """
    responded_at = first_response_at or resolved_at
    if responded_at is not None and responded_at > first_response_due_at:
        return SlaState.BREACHED
    if resolved_at is not None:
        return SlaState.BREACHED if resolved_at > resolution_due_at else SlaState.OK
    pending = [resolution_due_at]
    if responded_at is None:
        pending.append(first_response_due_at)
    if any(now > due for due in pending):
        return SlaState.BREACHED
    for due in pending:
        if now >= due - (due - opened_at) * DUE_SOON_FRACTION:
            return SlaState.DUE_SOON
    return SlaState.OK


#: The complaint workflow. ``resolved -> in_progress`` is the reopen: the customer came back
#: because the fix did not hold; staff have responded already, so it does not go to ``open``.
TRANSITIONS: dict[ComplaintStatus, frozenset[ComplaintStatus]] = {
    ComplaintStatus.OPEN: frozenset({ComplaintStatus.IN_PROGRESS, ComplaintStatus.RESOLVED}),
    ComplaintStatus.IN_PROGRESS: frozenset({ComplaintStatus.RESOLVED}),
    ComplaintStatus.RESOLVED: frozenset({ComplaintStatus.CLOSED, ComplaintStatus.IN_PROGRESS}),
    ComplaintStatus.CLOSED: frozenset(),
}


def can_transition(current: ComplaintStatus, target: ComplaintStatus) -> bool:
    return target in TRANSITIONS[current]


def is_reopen(current: ComplaintStatus, target: ComplaintStatus) -> bool:
    return current is ComplaintStatus.RESOLVED and target is ComplaintStatus.IN_PROGRESS


# ---------------------------------------------------------------- callbacks


def is_overdue(status: CallbackStatus, due_on: date, today: date) -> bool:
    """An open task is overdue once its due day has passed at the store (``today`` is the
    store's local day): a task due today is not overdue until tomorrow."""
    return status is CallbackStatus.OPEN and due_on < today


# ---------------------------------------------------------------- surveys

SURVEY_VALID_DAYS = 14
TOKEN_BYTES = 24  # 192 random bits, 32 URL-safe characters
CSAT_MIN, CSAT_MAX = 1, 5
NPS_MIN, NPS_MAX = 0, 10
CSAT_SATISFIED = 4  # 4 and 5 count as satisfied
NPS_PROMOTER = 9  # 9 and 10
NPS_DETRACTOR = 6  # 0 to 6


def new_survey_token() -> str:
    """An unguessable token for a survey's public link."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def survey_expires_at(created_at: datetime, valid_days: int = SURVEY_VALID_DAYS) -> datetime:
    return created_at + timedelta(days=valid_days)


def may_invite(last_invited_at: datetime | None, now: datetime, every_n_days: int) -> bool:
    """At most one survey invitation per ``every_n_days`` days per member, so customers
    who shop often are not asked after every visit."""
    return last_invited_at is None or now - last_invited_at >= timedelta(days=every_n_days)


@dataclass(frozen=True)
class ScoreSummary:
    """CSAT and NPS figures of a set of survey answers (see the module overview)."""

    responses: int
    csat_count: int
    csat_percent: float | None
    csat_mean: float | None
    nps_count: int
    promoters: int
    passives: int
    detractors: int
    nps: float | None


def nps(scores: Iterable[int]) -> float | None:
    """Net Promoter Score of 0-10 answers: % promoters (9-10) minus % detractors (0-6)."""
    return summarise((None, s) for s in scores).nps


def csat_percent(scores: Iterable[int]) -> float | None:
    """Share of satisfied (4-5) answers among 1-5 answers, in percent."""
    return summarise((s, None) for s in scores).csat_percent


def summarise(answers: Iterable[tuple[int | None, int | None]]) -> ScoreSummary:
    """Summarise ``(csat, nps)`` pairs, either of which may be missing."""
    responses = csat_count = csat_sum = satisfied = 0
    promoters = passives = detractors = 0
    for csat, score in answers:
        responses += 1
        if csat is not None:
            if not CSAT_MIN <= csat <= CSAT_MAX:
                raise ValueError(f"CSAT answer out of range: {csat}")
            csat_count += 1
            csat_sum += csat
            satisfied += csat >= CSAT_SATISFIED
        if score is not None:
            if not NPS_MIN <= score <= NPS_MAX:
                raise ValueError(f"NPS answer out of range: {score}")
            if score >= NPS_PROMOTER:
                promoters += 1
            elif score <= NPS_DETRACTOR:
                detractors += 1
            else:
                passives += 1
    nps_count = promoters + passives + detractors
    return ScoreSummary(
        responses=responses, csat_count=csat_count,
        csat_percent=100 * satisfied / csat_count if csat_count else None,
        csat_mean=csat_sum / csat_count if csat_count else None,
        nps_count=nps_count, promoters=promoters, passives=passives, detractors=detractors,
        nps=100 * (promoters - detractors) / nps_count if nps_count else None)
