"""API shapes of callback tasks, complaints and surveys."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from patron.feedback.enums import (
    CallbackReason,
    CallbackStatus,
    CallOutcome,
    ComplaintCategory,
    ComplaintChannel,
    ComplaintEventKind,
    ComplaintStatus,
    Severity,
    SlaState,
    SurveyKind,
    SurveyOccasion,
    SurveyStatus,
)
from patron.feedback.models import DESCRIPTION_LENGTH, NOTE_LENGTH

MAX_POINTS = 1_000_000

# ---------------------------------------------------------------- callbacks


class CallbackCreate(BaseModel):
    member_id: uuid.UUID
    store_id: uuid.UUID | None = Field(default=None,
                                       description="Defaults to the member's home store")
    reason: CallbackReason = CallbackReason.MANUAL
    due_on: date | None = Field(default=None,
                                description="The store's local day; defaults to today")
    assignee_id: uuid.UUID | None = Field(default=None,
                                          description="A user who works in the store")
    complaint_id: uuid.UUID | None = None
    notes: str = Field(default="", max_length=NOTE_LENGTH)


class CallLog(BaseModel):
    """A call made for a task. With ``reschedule_on`` (only after ``no_answer``) the task
    stays open for that day; otherwise the outcome completes it."""

    outcome: CallOutcome
    note: str = Field(default="", max_length=NOTE_LENGTH)
    reschedule_on: date | None = None


class CallbackComplete(BaseModel):
    outcome: CallOutcome
    note: str = Field(default="", max_length=NOTE_LENGTH)


class CallbackCancel(BaseModel):
    note: str = Field(default="", max_length=NOTE_LENGTH)


class CallRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    outcome: CallOutcome
    note: str
    rescheduled_to: date | None
    actor_label: str
    called_at: datetime


class CallbackRead(BaseModel):
    id: uuid.UUID
    store_id: uuid.UUID
    member_id: uuid.UUID
    reason: CallbackReason
    status: CallbackStatus
    due_on: date
    overdue: bool
    assignee_id: uuid.UUID | None
    complaint_id: uuid.UUID | None
    notes: str
    outcome: CallOutcome | None
    attempts: int
    last_called_at: datetime | None
    created_at: datetime
    created_by: str
    completed_at: datetime | None
    completed_by: str | None
    calls: list[CallRead] | None = Field(
        default=None, description="The logged calls (when one task is read)")


# ---------------------------------------------------------------- complaints


class ComplaintCreate(BaseModel):
    store_id: uuid.UUID | None = Field(
        default=None, description="Defaults to the caller's store, else the member's")
    member_id: uuid.UUID | None = None
    channel: ComplaintChannel
    category: ComplaintCategory
    severity: Severity = Severity.NORMAL
    description: str = Field(min_length=1, max_length=DESCRIPTION_LENGTH)
    contact: str = Field(default="", max_length=200,
                         description="How to reach a customer who is not a member")


class ComplaintTransition(BaseModel):
    to: ComplaintStatus = Field(description="in_progress, closed, or in_progress from "
                                            "resolved to reopen; resolve through /resolve")
    note: str = Field(default="", max_length=NOTE_LENGTH)


class CompensationIn(BaseModel):
    coupon_template_id: uuid.UUID | None = Field(
        default=None, description="Issue one coupon of this template to the member")
    points: int | None = Field(default=None, gt=0, le=MAX_POINTS,
                               description="Add this many points to the member")


class ComplaintResolve(BaseModel):
    resolution: str = Field(min_length=1, max_length=NOTE_LENGTH)
    compensation: CompensationIn | None = None
    follow_up_on: date | None = Field(
        default=None, description="Also create a follow-up call for this local day")


class ComplaintEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: ComplaintEventKind
    from_status: ComplaintStatus | None
    to_status: ComplaintStatus
    note: str
    actor_label: str
    at: datetime


class CompensationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    coupon_id: uuid.UUID | None
    points: int | None
    points_entry_id: uuid.UUID | None
    actor_label: str
    created_at: datetime


class ComplaintRead(BaseModel):
    id: uuid.UUID
    store_id: uuid.UUID
    member_id: uuid.UUID | None
    channel: ComplaintChannel
    category: ComplaintCategory
    severity: Severity
    status: ComplaintStatus
    description: str
    contact: str
    opened_at: datetime
    opened_by: str
    first_response_due_at: datetime
    resolution_due_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    resolution: str
    closed_at: datetime | None
    sla_state: SlaState
    compensation: CompensationRead | None
    follow_up_callback_id: uuid.UUID | None = None
    events: list[ComplaintEventRead] | None = Field(
        default=None, description="The history (when one complaint is read)")


# ---------------------------------------------------------------- surveys


class SurveyQuestion(BaseModel):
    field: str
    text: str
    min: int
    max: int


class SurveyRead(BaseModel):
    """What the public survey page needs; nothing about the member."""

    kind: SurveyKind
    occasion: SurveyOccasion
    store_name: str
    status: SurveyStatus
    expires_at: datetime
    questions: list[SurveyQuestion]


class SurveyAnswer(BaseModel):
    csat: int | None = Field(default=None, ge=1, le=5, description="1 (bad) to 5 (great)")
    nps: int | None = Field(default=None, ge=0, le=10,
                            description="How likely to recommend us: 0 to 10")
    comment: str = Field(default="", max_length=NOTE_LENGTH)


class SurveyAnswered(BaseModel):
    status: SurveyStatus
    answered_at: datetime


class ScoreRead(BaseModel):
    responses: int
    csat_count: int
    csat_percent: float | None = Field(description="Share of 4-5 answers, in percent")
    csat_mean: float | None
    nps_count: int
    promoters: int
    passives: int
    detractors: int
    nps: float | None = Field(description="% promoters (9-10) - % detractors (0-6)")


class StoreScoreRead(ScoreRead):
    store_id: uuid.UUID


class MonthScoreRead(ScoreRead):
    month: str = Field(description="YYYY-MM, in each store's time zone")


class SurveyResultsRead(BaseModel):
    overall: ScoreRead
    by_store: list[StoreScoreRead]
    by_month: list[MonthScoreRead]
