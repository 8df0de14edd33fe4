"""Customer feedback: staff callback tasks, complaints with an SLA, survey results, and the
public survey page's two calls.

Everything is scoped to the caller's stores: a task or complaint of another store is 403.
Resolving a complaint may move value (a compensation coupon or points), so it needs an
``Idempotency-Key``: a retry returns the first answer and compensates nothing twice. The
public survey endpoints need no sign-in: the unguessable token in the link is the
credential, good for one answer.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from sqlalchemy.orm import Session

from patron.api.deps import Ctx, CurrentPrincipal, DbSession, RawBody
from patron.api.idempotent import run_once
from patron.feedback import rules
from patron.feedback import service as feedback
from patron.feedback.enums import (
    CallbackReason,
    CallbackStatus,
    CallOutcome,
    ComplaintCategory,
    ComplaintChannel,
    ComplaintStatus,
    Severity,
    SurveyKind,
    SurveyOccasion,
)
from patron.feedback.models import CallbackTask, Complaint, ComplaintCompensation
from patron.feedback.schemas import (
    CallbackCancel,
    CallbackComplete,
    CallbackCreate,
    CallbackRead,
    CallLog,
    CallRead,
    CompensationRead,
    ComplaintCreate,
    ComplaintEventRead,
    ComplaintRead,
    ComplaintResolve,
    ComplaintTransition,
    MonthScoreRead,
    ScoreRead,
    StoreScoreRead,
    SurveyAnswer,
    SurveyAnswered,
    SurveyQuestion,
    SurveyRead,
    SurveyResultsRead,
)

router = APIRouter(tags=["feedback"])
IDEMPOTENCY = {"parameters": [{"name": "Idempotency-Key", "in": "header", "required": True,
                               "schema": {"type": "string", "maxLength": 200}}]}
Token = Annotated[str, Path(min_length=1, max_length=64,
                            description="The token of the survey link")]
QUESTIONS = [
    SurveyQuestion(field="csat", text="How satisfied were you with your visit?",
                   min=rules.CSAT_MIN, max=rules.CSAT_MAX),
    SurveyQuestion(field="nps", text="How likely are you to recommend us to a friend?",
                   min=rules.NPS_MIN, max=rules.NPS_MAX),
]


def _callback_reads(ctx: Ctx, session: Session, tasks: list[CallbackTask], *,
                    with_calls: bool = False) -> list[CallbackRead]:
    overdue = feedback.overdue_flags(session, clock=ctx.clock, tasks=tasks)
    return [CallbackRead(
        id=t.id, store_id=t.store_id, member_id=t.member_id, reason=CallbackReason(t.reason),
        status=CallbackStatus(t.status), due_on=t.due_on, overdue=overdue[t.id],
        assignee_id=t.assignee_id, complaint_id=t.complaint_id, notes=t.notes,
        outcome=CallOutcome(t.outcome) if t.outcome else None, attempts=t.attempts,
        last_called_at=t.last_called_at, created_at=t.created_at, created_by=t.created_by,
        completed_at=t.completed_at, completed_by=t.completed_by,
        calls=[CallRead.model_validate(c) for c in feedback.calls_of(session, task_id=t.id)]
        if with_calls else None,
    ) for t in tasks]


def _complaint_read(ctx: Ctx, session: Session, c: Complaint, *, with_events: bool = False,
                    follow_up_callback_id: uuid.UUID | None = None,
                    compensations: dict[uuid.UUID, ComplaintCompensation] | None = None
                    ) -> ComplaintRead:
    compensation = (compensations.get(c.id) if compensations is not None
                    else feedback.compensation_of(session, complaint_id=c.id))
    return ComplaintRead(
        id=c.id, store_id=c.store_id, member_id=c.member_id,
        channel=ComplaintChannel(c.channel), category=ComplaintCategory(c.category),
        severity=Severity(c.severity), status=ComplaintStatus(c.status),
        description=c.description, contact=c.contact, opened_at=c.opened_at,
        opened_by=c.opened_by, first_response_due_at=c.first_response_due_at,
        resolution_due_at=c.resolution_due_at, first_response_at=c.first_response_at,
        resolved_at=c.resolved_at, resolution=c.resolution, closed_at=c.closed_at,
        sla_state=feedback.sla_state_of(c, now=ctx.clock.now()),
        compensation=CompensationRead.model_validate(compensation) if compensation else None,
        follow_up_callback_id=follow_up_callback_id,
        events=[ComplaintEventRead.model_validate(e)
                for e in feedback.complaint_events(session, complaint_id=c.id)]
        if with_events else None)


def _scores(summary: rules.ScoreSummary) -> dict[str, int | float | None]:
    return {"responses": summary.responses, "csat_count": summary.csat_count,
            "csat_percent": summary.csat_percent, "csat_mean": summary.csat_mean,
            "nps_count": summary.nps_count, "promoters": summary.promoters,
            "passives": summary.passives, "detractors": summary.detractors,
            "nps": summary.nps}


# ---------------------------------------------------------------- callbacks


@router.get("/callbacks", operation_id="list_callbacks")
def list_callbacks(
    ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
    store_id: uuid.UUID | None = None,
    task_status: Annotated[CallbackStatus | None, Query(alias="status")] = None,
    assignee_id: uuid.UUID | None = None,
    member_id: uuid.UUID | None = None,
    overdue: Annotated[bool | None, Query(
        description="true: open tasks due before the store's local today")] = None,
    limit: Annotated[int, Query(ge=1, le=feedback.MAX_LIST)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[CallbackRead]:
    """Callback tasks of one store or of all the caller's stores, earliest due first."""
    tasks = feedback.list_callbacks(session, clock=ctx.clock, actor=principal,
                                    store_id=store_id, status=task_status,
                                    assignee_id=assignee_id, member_id=member_id,
                                    overdue=overdue, limit=limit, offset=offset)
    return _callback_reads(ctx, session, tasks)


@router.post("/callbacks", status_code=status.HTTP_201_CREATED, operation_id="create_callback")
def create_callback(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                    body: CallbackCreate) -> CallbackRead:
    """A manager asks the store's staff to call a member (an open win-back task of the
    member is returned instead of a second one)."""
    task = feedback.create_callback(
        session, clock=ctx.clock, actor=principal, member_id=body.member_id,
        reason=body.reason, store_id=body.store_id, due_on=body.due_on,
        assignee_id=body.assignee_id, complaint_id=body.complaint_id, notes=body.notes)
    session.commit()
    return _callback_reads(ctx, session, [task])[0]


@router.get("/callbacks/{task_id}", operation_id="get_callback")
def get_callback(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                 task_id: uuid.UUID) -> CallbackRead:
    task = feedback.get_callback(session, actor=principal, task_id=task_id)
    return _callback_reads(ctx, session, [task], with_calls=True)[0]


@router.post("/callbacks/{task_id}/calls", operation_id="log_callback_call")
def log_call(ctx: Ctx, session: DbSession, principal: CurrentPrincipal, task_id: uuid.UUID,
             body: CallLog) -> CallbackRead:
    """Log a call; after ``no_answer`` a ``reschedule_on`` day keeps the task open."""
    task = feedback.log_call(session, clock=ctx.clock, actor=principal, task_id=task_id,
                             outcome=body.outcome, note=body.note,
                             reschedule_on=body.reschedule_on)
    session.commit()
    return _callback_reads(ctx, session, [task], with_calls=True)[0]


@router.post("/callbacks/{task_id}/complete", operation_id="complete_callback")
def complete_callback(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                      task_id: uuid.UUID, body: CallbackComplete) -> CallbackRead:
    """Log the call that settles the task, with its outcome."""
    task = feedback.complete_callback(session, clock=ctx.clock, actor=principal,
                                      task_id=task_id, outcome=body.outcome, note=body.note)
    session.commit()
    return _callback_reads(ctx, session, [task], with_calls=True)[0]


@router.post("/callbacks/{task_id}/cancel", operation_id="cancel_callback")
def cancel_callback(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                    task_id: uuid.UUID, body: CallbackCancel) -> CallbackRead:
    task = feedback.cancel_callback(session, clock=ctx.clock, actor=principal,
                                    task_id=task_id, note=body.note)
    session.commit()
    return _callback_reads(ctx, session, [task], with_calls=True)[0]


# ---------------------------------------------------------------- complaints


@router.get("/complaints", operation_id="list_complaints")
def list_complaints(
    ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
    store_id: uuid.UUID | None = None,
    complaint_status: Annotated[ComplaintStatus | None, Query(alias="status")] = None,
    severity: Severity | None = None,
    member_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=feedback.MAX_LIST)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[ComplaintRead]:
    """Complaints of one store or of all the caller's stores, newest first."""
    rows = feedback.list_complaints(session, actor=principal, store_id=store_id,
                                    status=complaint_status, severity=severity,
                                    member_id=member_id, limit=limit, offset=offset)
    given = feedback.compensations_of(session, complaint_ids=[c.id for c in rows])
    return [_complaint_read(ctx, session, c, compensations=given) for c in rows]


@router.post("/complaints", status_code=status.HTTP_201_CREATED,
             operation_id="open_complaint")
def open_complaint(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                   body: ComplaintCreate) -> ComplaintRead:
    """Open a complaint (staff and tills of the store); its SLA deadlines are set now."""
    complaint = feedback.open_complaint(session, clock=ctx.clock, actor=principal, data=body)
    session.commit()
    return _complaint_read(ctx, session, complaint, with_events=True)


@router.get("/complaints/{complaint_id}", operation_id="get_complaint")
def get_complaint(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                  complaint_id: uuid.UUID) -> ComplaintRead:
    complaint = feedback.get_complaint(session, actor=principal, complaint_id=complaint_id)
    return _complaint_read(ctx, session, complaint, with_events=True)


@router.post("/complaints/{complaint_id}/transitions", operation_id="transition_complaint",
             responses={409: {"description": "invalid_transition"}})
def transition_complaint(ctx: Ctx, session: DbSession, principal: CurrentPrincipal,
                         complaint_id: uuid.UUID, body: ComplaintTransition) -> ComplaintRead:
    """Take a complaint up, close a resolved one, or reopen it (``in_progress``)."""
    complaint = feedback.transition_complaint(session, clock=ctx.clock, actor=principal,
                                              complaint_id=complaint_id, to=body.to,
                                              note=body.note)
    session.commit()
    return _complaint_read(ctx, session, complaint, with_events=True)


@router.post("/complaints/{complaint_id}/resolve", operation_id="resolve_complaint",
             response_model=ComplaintRead, openapi_extra=IDEMPOTENCY,
             responses={409: {"description": "invalid_transition, already_compensated"}})
def resolve_complaint(request: Request, ctx: Ctx, principal: CurrentPrincipal,
                      complaint_id: uuid.UUID, body: ComplaintResolve,
                      raw: RawBody) -> Response:
    """Resolve a complaint, optionally compensating the member with a coupon and/or points
    and planning a follow-up call, all at once."""
    def work(session: Session) -> ComplaintRead:
        comp = body.compensation
        done = feedback.resolve_complaint(
            session, clock=ctx.clock, actor=principal, complaint_id=complaint_id,
            resolution=body.resolution,
            coupon_template_id=comp.coupon_template_id if comp else None,
            points=comp.points if comp else None, follow_up_on=body.follow_up_on)
        return _complaint_read(ctx, session, done.complaint, with_events=True,
                               follow_up_callback_id=done.follow_up.id
                               if done.follow_up else None)

    return run_once(request, ctx, principal, raw, work, status_code=200)


# ---------------------------------------------------------------- surveys


@router.get("/surveys/results", operation_id="survey_results")
def survey_results(session: DbSession, principal: CurrentPrincipal,
                   store_id: uuid.UUID | None = None,
                   since: Annotated[datetime | None, Query(
                       description="Answers given at or after (with a time zone)")] = None,
                   until: Annotated[datetime | None, Query(
                       description="Answers given before (with a time zone)")] = None,
                   ) -> SurveyResultsRead:
    """CSAT and NPS over the caller's stores (or one): overall, per store, per month."""
    r = feedback.survey_results(session, actor=principal, store_id=store_id, since=since,
                                until=until)
    return SurveyResultsRead(
        overall=ScoreRead.model_validate(_scores(r.overall)),
        by_store=[StoreScoreRead.model_validate(_scores(s) | {"store_id": sid})
                  for sid, s in r.by_store.items()],
        by_month=[MonthScoreRead.model_validate(_scores(s) | {"month": m})
                  for m, s in r.by_month.items()])


@router.get("/public/surveys/{token}", operation_id="get_public_survey")
def get_public_survey(ctx: Ctx, session: DbSession, token: Token) -> SurveyRead:
    """The questions behind a survey link and whether it can still be answered (no
    sign-in; nothing about the member is shown)."""
    invitation = feedback.get_invitation(session, token=token)
    store = feedback.store_of(session, invitation=invitation)
    return SurveyRead(kind=SurveyKind(invitation.kind),
                      occasion=SurveyOccasion(invitation.occasion), store_name=store.name,
                      status=feedback.survey_status(session, clock=ctx.clock,
                                                    invitation=invitation),
                      expires_at=invitation.expires_at, questions=QUESTIONS)


@router.post("/public/surveys/{token}", status_code=status.HTTP_201_CREATED,
             operation_id="answer_public_survey",
             responses={409: {"description": "already_answered, survey_expired"}})
def answer_public_survey(ctx: Ctx, session: DbSession, token: Token,
                         body: SurveyAnswer) -> SurveyAnswered:
    """Answer a survey once (no sign-in: the link's token is the credential)."""
    response = feedback.answer(session, clock=ctx.clock, token=token, csat=body.csat,
                               nps=body.nps, comment=body.comment)
    session.commit()
    return SurveyAnswered(status=feedback.survey_status(
        session, clock=ctx.clock, invitation=feedback.get_invitation(session, token=token)),
        answered_at=response.answered_at)
