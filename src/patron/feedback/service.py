"""Use cases of customer feedback: staff callback tasks, complaints with an SLA, surveys.

Design overview
---------------
Callbacks. A task asks staff of one store (the member's home store unless told otherwise)
to call a member by a local day. ``create_callback`` is also what the care win-back rule
calls, as the system (``actor=None``); a member never has two open win-back tasks (a
partial UNIQUE index decides, so concurrent rule runs are safe too: the second one gets
the first one's task back). Each call is logged (``callback_calls``, append-only); a
``no_answer`` may move the task to a later day, any other outcome completes it. Overdue
means open with a due day before the store's local today.

Complaints. Opening one fixes its SLA deadlines (feedback.rules). Every status change
follows ``rules.TRANSITIONS`` under a row lock and appends a ``ComplaintEvent``; a refused
change writes nothing. Resolving may compensate the member -- a coupon through
``offers.service.issue_coupons`` and/or points through ``loyalty.service.adjust`` (both
audited by their domains) -- in the same transaction, at most once per complaint
(``complaint_compensations`` is UNIQUE per complaint; a complaint reopened and resolved
again is not compensated twice). ``complaint.opened`` and ``complaint.resolved`` go to the
outbox so the care worker can follow up (e.g. with a survey).

Surveys. The care worker invites a member after a sale or a complaint (``invite``), at
most once per occasion and once per ``every_n_days`` per member; the member answers once
through the public link's token (``answer``; a second answer is a Conflict, backed by
UNIQUE(survey_responses.invitation_id)). ``survey_results`` computes CSAT and NPS overall,
per store and per month from the answers (arithmetic in feedback.rules).

Roles: cashiers (and POS keys) open complaints and read their store's tasks and
complaints; cashiers log calls; managers create and cancel tasks, move and resolve
complaints and read survey results for their stores; owners do everything. Services flush,
never commit.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TypeVarTuple
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, and_, false, not_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.auth.enums import Role
from patron.auth.models import User
from patron.auth.principal import Principal, require_role, require_store
from patron.core.clock import Clock, local_today
from patron.core.errors import Conflict, NotFound, PatronError, ValidationFailed
from patron.core.events import emit
from patron.feedback import rules
from patron.feedback.enums import (
    CallbackReason,
    CallbackStatus,
    CallOutcome,
    ComplaintEventKind,
    ComplaintStatus,
    Severity,
    SlaState,
    SurveyKind,
    SurveyOccasion,
    SurveyStatus,
)
from patron.feedback.models import (
    CallbackCall,
    CallbackTask,
    Complaint,
    ComplaintCompensation,
    ComplaintEvent,
    SurveyInvitation,
    SurveyResponse,
)
from patron.feedback.schemas import ComplaintCreate
from patron.loyalty import service as loyalty
from patron.members import service as members
from patron.members.enums import MemberStatus
from patron.offers import service as offers
from patron.offers.enums import CouponSource

if TYPE_CHECKING:
    from patron.members.models import Member, Store  # returned by the members service

MAX_LIST = 500
DEFAULT_SURVEY_EVERY_N_DAYS = 30


def _label(actor: Principal | None) -> str:
    return actor.label if actor else "system"


def _active_member(session: Session, member_id: uuid.UUID, field: str = "member_id") -> Member:
    member = members.get_member(session, member_id=member_id)
    if member.status != MemberStatus.ACTIVE.value:
        raise ValidationFailed("The member is not active", field, code="not_active")
    return member


def _store_today(session: Session, clock: Clock, store_id: uuid.UUID) -> date:
    return local_today(clock, members.get_store(session, store_id=store_id).timezone)


def _check_text(value: str, field: str, limit: int) -> str:
    if len(value) > limit:
        raise ValidationFailed(f"At most {limit} characters", field, code="too_long")
    return value


# ---------------------------------------------------------------- callbacks


def _check_assignee(session: Session, store_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """The assignee must be an active user who works in the store (or an owner).

    Reads the auth table directly: auth's service only offers user look-ups on behalf of
    an acting manager, and the care rule assigns as the system.
    """
    user = session.get(User, user_id)
    if user is None or not user.active:
        raise ValidationFailed("No such active user", "assignee_id", code="unknown_user")
    if user.role != Role.OWNER.value and store_id not in user.store_ids:
        raise ValidationFailed("The assignee does not work in this store", "assignee_id",
                               code="not_in_store")


def _open_win_back(session: Session, member_id: uuid.UUID) -> CallbackTask | None:
    return session.scalar(select(CallbackTask).where(
        CallbackTask.member_id == member_id,
        CallbackTask.reason == CallbackReason.WIN_BACK.value,
        CallbackTask.status == CallbackStatus.OPEN.value))


def create_callback(session: Session, *, clock: Clock, actor: Principal | None,
                    member_id: uuid.UUID, reason: CallbackReason = CallbackReason.MANUAL,
                    store_id: uuid.UUID | None = None, due_on: date | None = None,
                    assignee_id: uuid.UUID | None = None,
                    complaint_id: uuid.UUID | None = None, notes: str = "") -> CallbackTask:
    """Ask the staff of a store to call a member by ``due_on`` (the store's local day,
    today by default; the member's home store by default).

    Managers create tasks by hand; the system (``actor=None``: the care win-back rule,
    complaint follow-ups) creates them too. A member who already has an open win-back
    task gets that task back instead of a second one, also when two runs race.
    """
    if actor is not None:
        require_role(actor, Role.MANAGER, users_only=True)
    member = _active_member(session, member_id)
    store_id = store_id or member.home_store_id
    store = members.get_store(session, store_id=store_id)
    if actor is not None:
        require_store(actor, store.id)
    today = local_today(clock, store.timezone)
    if due_on is None:
        due_on = today
    elif due_on < today:
        raise ValidationFailed(f"The due day is in the past (today is {today} at the store)",
                               "due_on", code="in_past")
    if assignee_id is not None:
        _check_assignee(session, store.id, assignee_id)
    if complaint_id is not None:
        complaint = session.get(Complaint, complaint_id)
        if complaint is None or complaint.member_id != member.id:
            raise ValidationFailed("No complaint of this member has this id", "complaint_id",
                                   code="unknown_complaint")
    _check_text(notes, "notes", 2000)
    if reason is CallbackReason.WIN_BACK:
        existing = _open_win_back(session, member.id)
        if existing is not None:
            return existing
    now = clock.now()
    task = CallbackTask(store_id=store.id, member_id=member.id, reason=reason.value,
                        status=CallbackStatus.OPEN.value, due_on=due_on,
                        assignee_id=assignee_id, complaint_id=complaint_id, notes=notes,
                        attempts=0, created_at=now, created_by=_label(actor), updated_at=now)
    try:
        with session.begin_nested():
            session.add(task)
            session.flush()
    except IntegrityError:
        existing = _open_win_back(session, member.id) if reason is CallbackReason.WIN_BACK \
            else None
        if existing is None:
            raise
        return existing  # a concurrent run created it first
    return task


def _task_for(session: Session, actor: Principal | None, task_id: uuid.UUID, *,
              lock: bool = False) -> CallbackTask:
    """The task (row-locked for a change), if the actor works in its store."""
    stmt = select(CallbackTask).where(CallbackTask.id == task_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    task = session.scalar(stmt)
    if task is None:
        raise NotFound("No such callback task", "task_id")
    if actor is not None:
        require_store(actor, task.store_id)
    return task


def get_callback(session: Session, *, actor: Principal, task_id: uuid.UUID) -> CallbackTask:
    """A task of a store the actor works in."""
    return _task_for(session, actor, task_id)


def calls_of(session: Session, *, task_id: uuid.UUID) -> list[CallbackCall]:
    """The calls logged for a task, oldest first."""
    return list(session.scalars(select(CallbackCall).where(CallbackCall.task_id == task_id)
                                .order_by(CallbackCall.seq)))


def _todays(session: Session, clock: Clock,
            store_ids: frozenset[uuid.UUID] | None) -> dict[str, tuple[date, list[uuid.UUID]]]:
    """Local today per time zone, with the stores in that zone (all stores when None)."""
    out: dict[str, tuple[date, list[uuid.UUID]]] = {}
    for store in members.list_stores(session, include_inactive=True):
        if store_ids is None or store.id in store_ids:
            if store.timezone not in out:
                out[store.timezone] = (local_today(clock, store.timezone), [])
            out[store.timezone][1].append(store.id)
    return out


def _overdue_clause(session: Session, clock: Clock,
                    store_ids: frozenset[uuid.UUID] | None) -> ColumnElement[bool]:
    per_zone = [and_(CallbackTask.store_id.in_(ids), CallbackTask.due_on < today)
                for today, ids in _todays(session, clock, store_ids).values()]
    return and_(CallbackTask.status == CallbackStatus.OPEN.value, or_(false(), *per_zone))


def list_callbacks(session: Session, *, clock: Clock, actor: Principal,
                   store_id: uuid.UUID | None = None, status: CallbackStatus | None = None,
                   assignee_id: uuid.UUID | None = None, member_id: uuid.UUID | None = None,
                   overdue: bool | None = None, limit: int = 100,
                   offset: int = 0) -> list[CallbackTask]:
    """The tasks of one store, or of every store the actor works in; earliest due first.

    ``overdue=True`` keeps the open tasks due before their store's local today,
    ``overdue=False`` everything else.
    """
    if not 1 <= limit <= MAX_LIST:
        raise ValidationFailed(f"limit must be between 1 and {MAX_LIST}", "limit")
    scope: frozenset[uuid.UUID] | None
    if store_id is not None:
        require_store(actor, store_id)
        scope = frozenset({store_id})
    else:
        scope = actor.visible_store_ids()
    stmt = select(CallbackTask)
    if scope is not None:
        stmt = stmt.where(CallbackTask.store_id.in_(scope))
    if status is not None:
        stmt = stmt.where(CallbackTask.status == status.value)
    if assignee_id is not None:
        stmt = stmt.where(CallbackTask.assignee_id == assignee_id)
    if member_id is not None:
        stmt = stmt.where(CallbackTask.member_id == member_id)
    if overdue is not None:
        clause = _overdue_clause(session, clock, scope)
        stmt = stmt.where(clause if overdue else not_(clause))
    stmt = stmt.order_by(CallbackTask.due_on, CallbackTask.created_at, CallbackTask.id)
    return list(session.scalars(stmt.limit(limit).offset(offset)))


def overdue_flags(session: Session, *, clock: Clock,
                  tasks: Sequence[CallbackTask]) -> dict[uuid.UUID, bool]:
    """Whether each task is overdue at its store now."""
    todays: dict[uuid.UUID, date] = {}
    for task in tasks:
        if task.store_id not in todays:
            todays[task.store_id] = _store_today(session, clock, task.store_id)
    return {t.id: rules.is_overdue(CallbackStatus(t.status), t.due_on, todays[t.store_id])
            for t in tasks}


def _require_open(task: CallbackTask) -> None:
    if task.status != CallbackStatus.OPEN.value:
        raise Conflict(f"This task is already {task.status}", "status", code="task_closed")


def log_call(session: Session, *, clock: Clock, actor: Principal, task_id: uuid.UUID,
             outcome: CallOutcome, note: str = "",
             reschedule_on: date | None = None) -> CallbackTask:
    """Record a call made for a task. A ``no_answer`` with ``reschedule_on`` keeps the task
    open for that local day; any other call completes the task with its outcome."""
    require_role(actor, Role.CASHIER, users_only=True)
    task = _task_for(session, actor, task_id, lock=True)
    _require_open(task)
    _check_text(note, "note", 2000)
    if reschedule_on is not None:
        if outcome is not CallOutcome.NO_ANSWER:
            raise ValidationFailed("Only a call nobody answered can be rescheduled",
                                   "reschedule_on", code="not_rescheduling")
        today = _store_today(session, clock, task.store_id)
        if reschedule_on < today:
            raise ValidationFailed(f"The new day is in the past (today is {today} at the "
                                   "store)", "reschedule_on", code="in_past")
    now = clock.now()
    session.add(CallbackCall(task_id=task.id, outcome=outcome.value, note=note,
                             rescheduled_to=reschedule_on, actor_user_id=actor.user_id,
                             actor_label=actor.label, called_at=now))
    task.attempts += 1
    task.last_called_at = task.updated_at = now
    if reschedule_on is not None:
        task.due_on = reschedule_on
    else:
        task.status = CallbackStatus.DONE.value
        task.outcome = outcome.value
        task.completed_at = now
        task.completed_by = actor.label
    session.flush()
    return task


def complete_callback(session: Session, *, clock: Clock, actor: Principal,
                      task_id: uuid.UUID, outcome: CallOutcome,
                      note: str = "") -> CallbackTask:
    """Log the call that settles a task."""
    return log_call(session, clock=clock, actor=actor, task_id=task_id, outcome=outcome,
                    note=note)


def cancel_callback(session: Session, *, clock: Clock, actor: Principal | None,
                    task_id: uuid.UUID, note: str = "") -> CallbackTask:
    """Drop an open task without a call (a manager, or the system when, say, the member came
    back to the shop before anyone called)."""
    if actor is not None:
        require_role(actor, Role.MANAGER, users_only=True)
    task = _task_for(session, actor, task_id, lock=True)
    _require_open(task)
    _check_text(note, "note", 2000)
    now = clock.now()
    task.status = CallbackStatus.CANCELLED.value
    task.completed_at = task.updated_at = now
    task.completed_by = _label(actor)
    if note:
        task.notes = (task.notes + "\n" + note).strip()[:2000]
    session.flush()
    return task


# ---------------------------------------------------------------- complaints


def sla_state_of(complaint: Complaint, *, now: datetime) -> SlaState:
    return rules.sla_state(now=now, opened_at=complaint.opened_at,
                           first_response_due_at=complaint.first_response_due_at,
                           resolution_due_at=complaint.resolution_due_at,
                           first_response_at=complaint.first_response_at,
                           resolved_at=complaint.resolved_at)


def _payload(complaint: Complaint, **extra: Any) -> dict[str, Any]:
    return {"complaint_id": str(complaint.id),
            "member_id": str(complaint.member_id) if complaint.member_id else None,
            "store_id": str(complaint.store_id), "severity": complaint.severity,
            "category": complaint.category, "channel": complaint.channel} | extra


def _event(session: Session, *, clock: Clock, actor: Principal | None, complaint: Complaint,
           kind: ComplaintEventKind, from_status: ComplaintStatus | None,
           to_status: ComplaintStatus, note: str) -> None:
    session.add(ComplaintEvent(
        complaint_id=complaint.id, kind=kind.value,
        from_status=from_status.value if from_status else None, to_status=to_status.value,
        note=note, actor_user_id=actor.user_id if actor else None, actor_label=_label(actor),
        at=clock.now()))


def open_complaint(session: Session, *, clock: Clock, actor: Principal | None,
                   data: ComplaintCreate) -> Complaint:
    """Open a complaint ticket and fix its SLA deadlines; emits ``complaint.opened``.

    Any staff member or POS key may open one for their store; the store defaults to the
    caller's (else the member's home store). The system (``actor=None``: an inbound message,
    a web form) may open one too.
    """
    member = _active_member(session, data.member_id) if data.member_id else None
    store_id = data.store_id
    if store_id is None and actor is not None and len(actor.store_ids) == 1:
        store_id = actor.default_store_id  # a cashier's or a till's one store
    if store_id is None and member is not None:
        store_id = member.home_store_id
    if store_id is None:
        raise ValidationFailed("Say which store the complaint is about", "store_id",
                               code="required")
    if actor is not None:
        require_store(actor, store_id)
    store = members.get_store(session, store_id=store_id)
    if not data.description.strip():
        raise ValidationFailed("Describe the complaint", "description", code="required")
    now = clock.now()
    due = rules.sla_deadlines(data.severity, now)
    complaint = Complaint(
        store_id=store.id, member_id=member.id if member else None,
        channel=data.channel.value, category=data.category.value,
        severity=data.severity.value, status=ComplaintStatus.OPEN.value,
        description=data.description.strip(), contact=data.contact.strip(), opened_at=now,
        opened_by=_label(actor), first_response_due_at=due.first_response_due_at,
        resolution_due_at=due.resolution_due_at, resolution="", updated_at=now)
    session.add(complaint)
    session.flush()
    _event(session, clock=clock, actor=actor, complaint=complaint,
           kind=ComplaintEventKind.OPENED, from_status=None, to_status=ComplaintStatus.OPEN,
           note="")
    emit(session, clock=clock, type="complaint.opened", subject_id=complaint.member_id,
         store_id=complaint.store_id,
         payload=_payload(complaint,
                          first_response_due_at=complaint.first_response_due_at.isoformat(),
                          resolution_due_at=complaint.resolution_due_at.isoformat()))
    session.flush()
    return complaint


def get_complaint(session: Session, *, actor: Principal, complaint_id: uuid.UUID) -> Complaint:
    """A complaint of a store the actor works in."""
    complaint = session.get(Complaint, complaint_id)
    if complaint is None:
        raise NotFound("No such complaint", "complaint_id")
    require_store(actor, complaint.store_id)
    return complaint



Ts = TypeVarTuple("Ts")


def _in_stores(stmt: Select[*Ts], column: Any, *, actor: Principal,
               store_id: uuid.UUID | None) -> Select[*Ts]:
    """``stmt`` limited to one store (which the actor must work in) or, without one, to
    every store the actor sees (owners: all)."""
    if store_id is not None:
        require_store(actor, store_id)
        return stmt.where(column == store_id)
    visible = actor.visible_store_ids()
    return stmt if visible is None else stmt.where(column.in_(visible))

def list_complaints(session: Session, *, actor: Principal, store_id: uuid.UUID | None = None,
                    status: ComplaintStatus | None = None, severity: Severity | None = None,
                    member_id: uuid.UUID | None = None, limit: int = 100,
                    offset: int = 0) -> list[Complaint]:
    """Complaints of one store, or of every store the actor works in; newest first."""
    if not 1 <= limit <= MAX_LIST:
        raise ValidationFailed(f"limit must be between 1 and {MAX_LIST}", "limit")
    stmt = select(Complaint)
    stmt = _in_stores(stmt, Complaint.store_id, actor=actor, store_id=store_id)
    if status is not None:
        stmt = stmt.where(Complaint.status == status.value)
    if severity is not None:
        stmt = stmt.where(Complaint.severity == severity.value)
    if member_id is not None:
        stmt = stmt.where(Complaint.member_id == member_id)
    stmt = stmt.order_by(Complaint.opened_at.desc(), Complaint.id.desc())
    return list(session.scalars(stmt.limit(limit).offset(offset)))


def complaint_events(session: Session, *, complaint_id: uuid.UUID) -> list[ComplaintEvent]:
    """The history of a complaint, oldest first."""
    return list(session.scalars(select(ComplaintEvent)
                                .where(ComplaintEvent.complaint_id == complaint_id)
                                .order_by(ComplaintEvent.seq)))


def compensation_of(session: Session, *, complaint_id: uuid.UUID) -> ComplaintCompensation | None:
    return session.scalar(select(ComplaintCompensation)
                          .where(ComplaintCompensation.complaint_id == complaint_id))


def compensations_of(session: Session, *, complaint_ids: Sequence[uuid.UUID]
                     ) -> dict[uuid.UUID, ComplaintCompensation]:
    """The compensations of many complaints in one query (for lists)."""
    if not complaint_ids:
        return {}
    rows = session.scalars(select(ComplaintCompensation)
                           .where(ComplaintCompensation.complaint_id.in_(complaint_ids)))
    return {row.complaint_id: row for row in rows}


def _locked_complaint(session: Session, actor: Principal | None,
                      complaint_id: uuid.UUID) -> Complaint:
    complaint = session.scalar(select(Complaint).where(Complaint.id == complaint_id)
                               .with_for_update().execution_options(populate_existing=True))
    if complaint is None:
        raise NotFound("No such complaint", "complaint_id")
    if actor is not None:
        require_store(actor, complaint.store_id)
    return complaint


def _refuse(current: ComplaintStatus, target: ComplaintStatus, field: str) -> Conflict:
    allowed = ", ".join(sorted(s.value for s in rules.TRANSITIONS[current])) or "none"
    return Conflict(f"A {current.value} complaint cannot move to {target.value} "
                    f"(allowed: {allowed})", field, code="invalid_transition")


def _move(session: Session, *, clock: Clock, actor: Principal | None, complaint: Complaint,
          target: ComplaintStatus, note: str) -> None:
    """Apply an allowed status change and append its event."""
    current = ComplaintStatus(complaint.status)
    now = clock.now()
    if current is ComplaintStatus.OPEN and complaint.first_response_at is None:
        complaint.first_response_at = now
    reopen = rules.is_reopen(current, target)
    if reopen:
        complaint.resolved_at = None
    elif target is ComplaintStatus.RESOLVED:
        complaint.resolved_at = now
    elif target is ComplaintStatus.CLOSED:
        complaint.closed_at = now
    complaint.status = target.value
    complaint.updated_at = now
    _event(session, clock=clock, actor=actor, complaint=complaint,
           kind=ComplaintEventKind.REOPENED if reopen else ComplaintEventKind.STATUS_CHANGED,
           from_status=current, to_status=target, note=note)


def transition_complaint(session: Session, *, clock: Clock, actor: Principal | None,
                         complaint_id: uuid.UUID, to: ComplaintStatus,
                         note: str = "") -> Complaint:
    """Move a complaint along its workflow: take it up (``in_progress``), close a resolved
    one (``closed``) or reopen it (``resolved -> in_progress``, emits
    ``complaint.reopened``). Resolving goes through ``resolve_complaint``. A move the
    workflow does not allow is a Conflict on ``to`` and writes nothing."""
    if actor is not None:
        require_role(actor, Role.MANAGER, users_only=True)
    _check_text(note, "note", 2000)
    if to is ComplaintStatus.RESOLVED:
        raise ValidationFailed("Resolve a complaint with its resolution (resolve)", "to",
                               code="use_resolve")
    complaint = _locked_complaint(session, actor, complaint_id)
    current = ComplaintStatus(complaint.status)
    if not rules.can_transition(current, to):
        raise _refuse(current, to, "to")
    _move(session, clock=clock, actor=actor, complaint=complaint, target=to, note=note)
    if rules.is_reopen(current, to):
        emit(session, clock=clock, type="complaint.reopened", subject_id=complaint.member_id,
             store_id=complaint.store_id, payload=_payload(complaint))
    session.flush()
    return complaint


@dataclass(frozen=True)
class Resolution:
    complaint: Complaint
    compensation: ComplaintCompensation | None
    follow_up: CallbackTask | None


def _as_field(exc: PatronError, field: str) -> ValidationFailed:
    """Another domain's refusal (e.g. offers' "template_inactive" on ``template_id``),
    re-aimed at the field of this request that caused it."""
    return ValidationFailed(exc.message, field, code=exc.code)


def _compensate(session: Session, *, clock: Clock, actor: Principal | None,
                complaint: Complaint, coupon_template_id: uuid.UUID | None,
                points: int | None) -> ComplaintCompensation:
    if complaint.member_id is None:
        raise ValidationFailed("A complaint without a member cannot be compensated",
                               "compensation", code="no_member")
    if compensation_of(session, complaint_id=complaint.id) is not None:
        raise Conflict("This complaint was already compensated", "compensation",
                       code="already_compensated")
    if points is not None:
        if points <= 0:
            raise ValidationFailed("Points must be positive", "compensation.points")
        if actor is None:
            raise ValidationFailed("Points are given by a manager", "compensation.points",
                                   code="staff_only")
    coupon_id = entry_id = None
    if coupon_template_id is not None:
        try:
            (coupon,) = offers.issue_coupons(
                session, clock=clock, actor=actor, template_id=coupon_template_id,
                member_id=complaint.member_id, source=CouponSource.CARE,
                source_ref=str(complaint.id))
        except (ValidationFailed, NotFound) as exc:
            raise _as_field(exc, "compensation.coupon_template_id") from exc
        coupon_id = coupon.id
    if points is not None and actor is not None:
        store = members.get_store(session, store_id=complaint.store_id)
        try:
            entry = loyalty.adjust(session, clock=clock, actor=actor,
                                   member_id=complaint.member_id, points=points,
                                   reason=f"Compensation for complaint {complaint.id}",
                                   tz=store.timezone)
        except ValidationFailed as exc:
            raise _as_field(exc, "compensation.points") from exc
        entry_id = entry.id
        session.flush()  # the entry row first: the compensation row refers to it
    row = ComplaintCompensation(complaint_id=complaint.id, member_id=complaint.member_id,
                                coupon_id=coupon_id, points=points, points_entry_id=entry_id,
                                actor_label=_label(actor), created_at=clock.now())
    session.add(row)
    session.flush()  # UNIQUE(complaint_id): a concurrent second compensation fails here
    return row


def resolve_complaint(session: Session, *, clock: Clock, actor: Principal | None,
                      complaint_id: uuid.UUID, resolution: str,
                      coupon_template_id: uuid.UUID | None = None, points: int | None = None,
                      follow_up_on: date | None = None) -> Resolution:
    """Resolve an open or in-progress complaint with what was done about it.

    Optionally compensates the member (a coupon of ``coupon_template_id`` and/or
    ``points``, once per complaint) and plans a follow-up call for ``follow_up_on``, all in
    the caller's transaction; any refusal leaves nothing written. Managers resolve (the
    system may too, but gives no points: a points adjustment needs a staff member). Emits
    ``complaint.resolved``.
    """
    if actor is not None:
        require_role(actor, Role.MANAGER, users_only=True)
    if not resolution.strip():
        raise ValidationFailed("Say how the complaint was resolved", "resolution",
                               code="required")
    _check_text(resolution, "resolution", 2000)
    complaint = _locked_complaint(session, actor, complaint_id)
    current = ComplaintStatus(complaint.status)
    if not rules.can_transition(current, ComplaintStatus.RESOLVED):
        raise _refuse(current, ComplaintStatus.RESOLVED, "status")
    if follow_up_on is not None:
        if complaint.member_id is None:
            raise ValidationFailed("A complaint without a member gets no follow-up call",
                                   "follow_up_on", code="no_member")
        today = _store_today(session, clock, complaint.store_id)
        if follow_up_on < today:
            raise ValidationFailed(f"The follow-up day is in the past (today is {today} at "
                                   "the store)", "follow_up_on", code="in_past")
    compensation = follow_up = None
    with session.begin_nested():  # a refusal half-way leaves nothing behind
        if coupon_template_id is not None or points is not None:
            compensation = _compensate(session, clock=clock, actor=actor, complaint=complaint,
                                       coupon_template_id=coupon_template_id, points=points)
        complaint.resolution = resolution.strip()
        _move(session, clock=clock, actor=actor, complaint=complaint,
              target=ComplaintStatus.RESOLVED, note=resolution.strip())
        if follow_up_on is not None and complaint.member_id is not None:
            follow_up = create_callback(
                session, clock=clock, actor=actor, member_id=complaint.member_id,
                reason=CallbackReason.COMPLAINT_FOLLOW_UP, store_id=complaint.store_id,
                due_on=follow_up_on, complaint_id=complaint.id)
        session.flush()
    emit(session, clock=clock, type="complaint.resolved", subject_id=complaint.member_id,
         store_id=complaint.store_id, payload=_payload(
             complaint, sla_state=sla_state_of(complaint, now=clock.now()).value,
             coupon_id=str(compensation.coupon_id)
             if compensation and compensation.coupon_id else None,
             points=compensation.points if compensation else None))
    session.flush()
    return Resolution(complaint=complaint, compensation=compensation, follow_up=follow_up)


# ---------------------------------------------------------------- surveys


def last_invited_at(session: Session, *, member_id: uuid.UUID) -> datetime | None:
    value: datetime | None = session.scalar(
        select(SurveyInvitation.created_at).where(SurveyInvitation.member_id == member_id)
        .order_by(SurveyInvitation.created_at.desc()).limit(1))
    return value


def may_invite(session: Session, *, member_id: uuid.UUID, now: datetime,
               every_n_days: int = DEFAULT_SURVEY_EVERY_N_DAYS) -> bool:
    """Whether the member may get a survey invitation now: at most one per N days."""
    return rules.may_invite(last_invited_at(session, member_id=member_id), now, every_n_days)


def _existing_invitation(session: Session, occasion: SurveyOccasion,
                         source_ref: str) -> SurveyInvitation | None:
    return session.scalar(select(SurveyInvitation).where(
        SurveyInvitation.occasion == occasion.value, SurveyInvitation.source_ref == source_ref))


def invite(session: Session, *, clock: Clock, member_id: uuid.UUID, occasion: SurveyOccasion,
           source_ref: str, store_id: uuid.UUID | None = None,
           every_n_days: int = DEFAULT_SURVEY_EVERY_N_DAYS,
           valid_days: int = rules.SURVEY_VALID_DAYS) -> SurveyInvitation | None:
    """Invite a member to a CSAT/NPS survey about a sale or a complaint (the system does
    this, from the care worker). Returns the invitation -- the existing one if this
    occasion was already served -- or None when the member is not active or was invited
    within ``every_n_days``. Emits ``survey.invited`` (with the token, for the link)."""
    if not source_ref or len(source_ref) > 64:
        raise ValidationFailed("source_ref names the sale or complaint (1-64 characters)",
                               "source_ref")
    if valid_days < 1:
        raise ValidationFailed("A survey is open for at least a day", "valid_days")
    existing = _existing_invitation(session, occasion, source_ref)
    if existing is not None:
        return existing
    member = members.get_member(session, member_id=member_id)
    now = clock.now()
    if member.status != MemberStatus.ACTIVE.value or not may_invite(
            session, member_id=member.id, now=now, every_n_days=every_n_days):
        return None
    store = members.get_store(session, store_id=store_id or member.home_store_id)
    invitation = SurveyInvitation(
        member_id=member.id, store_id=store.id, kind=SurveyKind.CSAT_NPS.value,
        occasion=occasion.value, source_ref=source_ref, token=rules.new_survey_token(),
        created_at=now, expires_at=rules.survey_expires_at(now, valid_days))
    try:
        with session.begin_nested():
            session.add(invitation)
            session.flush()
    except IntegrityError:
        existing = _existing_invitation(session, occasion, source_ref)
        if existing is None:
            raise
        return existing
    emit(session, clock=clock, type="survey.invited", subject_id=member.id, store_id=store.id,
         payload={"invitation_id": str(invitation.id), "member_id": str(member.id),
                  "store_id": str(store.id), "occasion": occasion.value,
                  "source_ref": source_ref, "token": invitation.token,
                  "expires_at": invitation.expires_at.isoformat()})
    return invitation


def get_invitation(session: Session, *, token: str) -> SurveyInvitation:
    invitation = (session.scalar(select(SurveyInvitation).where(SurveyInvitation.token == token))
                  if 0 < len(token) <= 64 else None)
    if invitation is None:
        raise NotFound("No survey has this link", "token")
    return invitation


def response_of(session: Session, *, invitation_id: uuid.UUID) -> SurveyResponse | None:
    return session.scalar(select(SurveyResponse)
                          .where(SurveyResponse.invitation_id == invitation_id))


def survey_status(session: Session, *, clock: Clock,
                  invitation: SurveyInvitation) -> SurveyStatus:
    if response_of(session, invitation_id=invitation.id) is not None:
        return SurveyStatus.ANSWERED
    return SurveyStatus.EXPIRED if clock.now() >= invitation.expires_at else SurveyStatus.OPEN


def answer(session: Session, *, clock: Clock, token: str, csat: int | None = None,
           nps: int | None = None, comment: str = "") -> SurveyResponse:
    """The member's answer through the public link, accepted once; emits ``survey.answered``.

    A second answer, or an answer after the survey closed, is a Conflict on ``token``.
    """
    if csat is None and nps is None:
        raise ValidationFailed("Answer at least one question", "csat", code="required")
    if csat is not None and not rules.CSAT_MIN <= csat <= rules.CSAT_MAX:
        raise ValidationFailed("CSAT is 1 to 5", "csat")
    if nps is not None and not rules.NPS_MIN <= nps <= rules.NPS_MAX:
        raise ValidationFailed("NPS is 0 to 10", "nps")
    _check_text(comment, "comment", 2000)
    invitation = get_invitation(session, token=token)
    status = survey_status(session, clock=clock, invitation=invitation)
    if status is SurveyStatus.ANSWERED:
        raise Conflict("This survey was already answered, thank you", "token",
                       code="already_answered")
    if status is SurveyStatus.EXPIRED:
        raise Conflict("This survey has closed", "token", code="survey_expired")
    response = SurveyResponse(invitation_id=invitation.id, csat=csat, nps=nps,
                              comment=comment.strip(), answered_at=clock.now())
    try:
        with session.begin_nested():
            session.add(response)
            session.flush()
    except IntegrityError as exc:
        raise Conflict("This survey was already answered, thank you", "token",
                       code="already_answered") from exc
    emit(session, clock=clock, type="survey.answered", subject_id=invitation.member_id,
         store_id=invitation.store_id,
         payload={"invitation_id": str(invitation.id), "response_id": str(response.id),
                  "member_id": str(invitation.member_id),
                  "store_id": str(invitation.store_id), "occasion": invitation.occasion,
                  "source_ref": invitation.source_ref, "csat": csat, "nps": nps,
                  "has_comment": bool(response.comment)})
    return response


def store_of(session: Session, *, invitation: SurveyInvitation) -> Store:
    return members.get_store(session, store_id=invitation.store_id)


@dataclass(frozen=True)
class SurveyResults:
    overall: rules.ScoreSummary
    by_store: dict[uuid.UUID, rules.ScoreSummary]
    by_month: dict[str, rules.ScoreSummary]  # "YYYY-MM" in each store's time zone


def survey_results(session: Session, *, actor: Principal, store_id: uuid.UUID | None = None,
                   since: datetime | None = None, until: datetime | None = None
                   ) -> SurveyResults:
    """CSAT and NPS of the answers given in [since, until), over one store or every store
    the manager runs: overall, per store and per calendar month at the store."""
    require_role(actor, Role.MANAGER, users_only=True)
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise ValidationFailed("Give a time zone (e.g. 2026-12-01T00:00:00+08:00)", name)
    stmt = (select(SurveyResponse.csat, SurveyResponse.nps, SurveyResponse.answered_at,
                   SurveyInvitation.store_id)
            .join(SurveyInvitation, SurveyInvitation.id == SurveyResponse.invitation_id))
    stmt = _in_stores(stmt, SurveyInvitation.store_id, actor=actor, store_id=store_id)
    if since is not None:
        stmt = stmt.where(SurveyResponse.answered_at >= since)
    if until is not None:
        stmt = stmt.where(SurveyResponse.answered_at < until)
    zones = {s.id: ZoneInfo(s.timezone)
             for s in members.list_stores(session, include_inactive=True)}
    everything: list[tuple[int | None, int | None]] = []
    per_store: dict[uuid.UUID, list[tuple[int | None, int | None]]] = defaultdict(list)
    per_month: dict[str, list[tuple[int | None, int | None]]] = defaultdict(list)
    for csat, score, answered_at, sid in session.execute(stmt):
        pair = (csat, score)
        everything.append(pair)
        per_store[sid].append(pair)
        per_month[f"{answered_at.astimezone(zones[sid]):%Y-%m}"].append(pair)
    return SurveyResults(
        overall=rules.summarise(everything),
        by_store={sid: rules.summarise(v) for sid, v in sorted(per_store.items())},
        by_month={m: rules.summarise(v) for m, v in sorted(per_month.items())})


# ---------------------------------------------------------------- admin reads and assignment
# Added for the web admin's care pages (web/pages/care_inbox.py): giving a callback task to
# a person, the recently closed tasks of the board, and the latest survey comments.


def assign_callback(session: Session, *, clock: Clock, actor: Principal, task_id: uuid.UUID,
                    assignee_id: uuid.UUID | None) -> CallbackTask:
    """Give an open task to a person who works in its store (``None`` takes it back).

    Managers assign, as they create tasks; the assignee must be an active user of the
    task's store (or an owner).
    """
    require_role(actor, Role.MANAGER, users_only=True)
    task = _task_for(session, actor, task_id, lock=True)
    _require_open(task)
    if assignee_id is not None:
        _check_assignee(session, task.store_id, assignee_id)
    task.assignee_id = assignee_id
    task.updated_at = clock.now()
    session.flush()
    return task


def closed_callbacks(session: Session, *, actor: Principal, store_id: uuid.UUID | None = None,
                     limit: int = 20) -> list[CallbackTask]:
    """The most recently completed or cancelled tasks of one store or of every store the
    actor works in, latest first (the board's last column)."""
    if not 1 <= limit <= MAX_LIST:
        raise ValidationFailed(f"limit must be between 1 and {MAX_LIST}", "limit")
    stmt = select(CallbackTask).where(CallbackTask.status != CallbackStatus.OPEN.value)
    stmt = _in_stores(stmt, CallbackTask.store_id, actor=actor, store_id=store_id)
    return list(session.scalars(stmt.order_by(CallbackTask.completed_at.desc(),
                                              CallbackTask.id).limit(limit)))


@dataclass(frozen=True)
class SurveyComment:
    """One survey answer that came with a comment."""

    answered_at: datetime
    store_id: uuid.UUID
    member_id: uuid.UUID
    csat: int | None
    nps: int | None
    comment: str


def latest_comments(session: Session, *, actor: Principal, store_id: uuid.UUID | None = None,
                    limit: int = 10) -> list[SurveyComment]:
    """The newest survey answers with a comment, over one store or every store the manager
    runs (the same people who may read survey results)."""
    require_role(actor, Role.MANAGER, users_only=True)
    if not 1 <= limit <= MAX_LIST:
        raise ValidationFailed(f"limit must be between 1 and {MAX_LIST}", "limit")
    stmt = (select(SurveyResponse.answered_at, SurveyInvitation.store_id,
                   SurveyInvitation.member_id, SurveyResponse.csat, SurveyResponse.nps,
                   SurveyResponse.comment)
            .join(SurveyInvitation, SurveyInvitation.id == SurveyResponse.invitation_id)
            .where(SurveyResponse.comment != ""))
    stmt = _in_stores(stmt, SurveyInvitation.store_id, actor=actor, store_id=store_id)
    stmt = stmt.order_by(SurveyResponse.answered_at.desc(), SurveyResponse.id).limit(limit)
    return [SurveyComment(*row) for row in session.execute(stmt)]


# ---------------------------------------------------------------- merge


def _merge_callbacks(session: Session, clock: Clock, survivor_id: uuid.UUID,
                     duplicate_id: uuid.UUID) -> int:
    """Move the duplicate's tasks to the survivor. Should both have an open win-back
    task, the duplicate's is cancelled first: a member is called back once."""
    theirs = _open_win_back(session, duplicate_id)
    if theirs is not None and _open_win_back(session, survivor_id) is not None:
        now = clock.now()
        theirs.status = CallbackStatus.CANCELLED.value
        theirs.completed_at = theirs.updated_at = now
        theirs.completed_by = "system"
        theirs.notes = (theirs.notes + "\nCancelled: the member was merged").strip()[:2000]
        session.flush()
    result = session.execute(update(CallbackTask).where(CallbackTask.member_id == duplicate_id)
                             .values(member_id=survivor_id))
    return int(getattr(result, "rowcount", 0) or 0)


members.MERGE_HOOKS["callback_tasks"] = _merge_callbacks
