"""Tables of the feedback domain: callback tasks, complaints, surveys.

Design overview
---------------
Invariants held by the database, not only by the code:

* a member has at most one *open* win-back callback task (a partial UNIQUE index), so the
  care rule can run again and again, concurrently too, without stacking calls;
* a complaint's history is append-only: every status change is a ``ComplaintEvent`` row,
  never updated or deleted; the complaint row caches the current status;
* a complaint is compensated at most once: ``complaint_compensations.complaint_id`` is
  UNIQUE, and the coupon or the points entry it gave is named in the row (the value itself
  lives in the offers and loyalty ledgers);
* a survey is answered at most once: ``survey_responses.invitation_id`` is UNIQUE; one
  invitation per occasion (a sale, a complaint) whatever the worker does twice;
* statuses, outcomes and score ranges are CHECKed.

Times are UTC (``*_at``); a callback's due day is the store's local day (``due_on``).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from patron.core.models import Base, BigInt, uuid_pk

NOTE_LENGTH = 2000
DESCRIPTION_LENGTH = 4000


class CallbackTask(Base):
    """A member staff should call, by a day, in one store."""

    __tablename__ = "callback_tasks"

    id: Mapped[uuid.UUID] = uuid_pk()
    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    reason: Mapped[str] = mapped_column(String(24))
    status: Mapped[str] = mapped_column(String(12), default="open")
    due_on: Mapped[date]  # the store's local day
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    complaint_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("complaints.id"))
    notes: Mapped[str] = mapped_column(String(NOTE_LENGTH), default="")
    outcome: Mapped[str | None] = mapped_column(String(16))  # set when done
    attempts: Mapped[int] = mapped_column(default=0)
    last_called_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(200))
    completed_at: Mapped[datetime | None]  # done or cancelled
    completed_by: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("reason IN ('win_back','complaint_follow_up','survey_follow_up',"
                        "'manual')", name="reason"),
        CheckConstraint("status IN ('open','done','cancelled')", name="status"),
        CheckConstraint("outcome IS NULL OR outcome IN ('reached','no_answer','complaint',"
                        "'will_return','wrong_number','not_interested')", name="outcome"),
        CheckConstraint("(status = 'done') = (outcome IS NOT NULL)", name="done_outcome"),
        CheckConstraint("(status = 'open') = (completed_at IS NULL)", name="completed"),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index("ix_callback_tasks_store_status_due", "store_id", "status", "due_on"),
        Index("ix_callback_tasks_assignee_status", "assignee_id", "status"),
        Index("uq_callback_tasks_open_win_back", "member_id", unique=True,
              sqlite_where=text("status = 'open' AND reason = 'win_back'"),
              postgresql_where=text("status = 'open' AND reason = 'win_back'")),
    )


class CallbackCall(Base):
    """One logged call of a task (append-only): the outcome, a note, a new day if any."""

    __tablename__ = "callback_calls"

    seq: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    task_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("callback_tasks.id"), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(String(NOTE_LENGTH), default="")
    rescheduled_to: Mapped[date | None]
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    actor_label: Mapped[str] = mapped_column(String(200))
    called_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("outcome IN ('reached','no_answer','complaint','will_return',"
                        "'wrong_number','not_interested')", name="outcome"),
    )


class Complaint(Base):
    """A complaint ticket. ``status`` caches the last ``ComplaintEvent``; the SLA deadlines
    are fixed at opening (see feedback.rules)."""

    __tablename__ = "complaints"

    id: Mapped[uuid.UUID] = uuid_pk()
    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id"))
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default="open")
    description: Mapped[str] = mapped_column(String(DESCRIPTION_LENGTH))
    contact: Mapped[str] = mapped_column(String(200), default="")  # for a non-member
    opened_at: Mapped[datetime]
    opened_by: Mapped[str] = mapped_column(String(200))
    first_response_due_at: Mapped[datetime]
    resolution_due_at: Mapped[datetime]
    first_response_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    resolution: Mapped[str] = mapped_column(String(NOTE_LENGTH), default="")
    closed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("channel IN ('in_store','phone','sms','email','web','social')",
                        name="channel"),
        CheckConstraint("category IN ('product','service','price','wait_time','staff',"
                        "'billing','other')", name="category"),
        CheckConstraint("severity IN ('low','normal','high','critical')", name="severity"),
        CheckConstraint("status IN ('open','in_progress','resolved','closed')", name="status"),
        CheckConstraint("first_response_due_at > opened_at"
                        " AND resolution_due_at >= first_response_due_at", name="sla"),
        CheckConstraint("(status IN ('resolved','closed')) = (resolved_at IS NOT NULL)",
                        name="resolved"),
        CheckConstraint("(status = 'closed') = (closed_at IS NOT NULL)", name="closed"),
        Index("ix_complaints_store_status", "store_id", "status"),
        Index("ix_complaints_opened_at", "opened_at"),
    )


class ComplaintEvent(Base):
    """Who moved a complaint from which status to which, when, and why. Append-only."""

    __tablename__ = "complaint_events"

    seq: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    complaint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("complaints.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(String(NOTE_LENGTH), default="")
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    actor_label: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("kind IN ('opened','status_changed','reopened')", name="kind"),
    )


class ComplaintCompensation(Base):
    """What a member was given for a complaint: a coupon and/or points, at most once."""

    __tablename__ = "complaint_compensations"

    id: Mapped[uuid.UUID] = uuid_pk()
    complaint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("complaints.id"), unique=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    coupon_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("coupons.id"))
    points: Mapped[int | None]
    points_entry_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("points_entries.id"))
    actor_label: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("coupon_id IS NOT NULL OR points IS NOT NULL", name="compensates"),
        CheckConstraint("points IS NULL OR points > 0", name="points"),
        CheckConstraint("(points IS NULL) = (points_entry_id IS NULL)", name="points_entry"),
    )


class SurveyInvitation(Base):
    """A member's invitation to one survey, reachable by its unguessable ``token``.

    The token is kept in clear: it is what the care worker puts into the link, and it only
    lets its holder answer one survey once.
    """

    __tablename__ = "survey_invitations"

    id: Mapped[uuid.UUID] = uuid_pk()
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id"))
    kind: Mapped[str] = mapped_column(String(16))
    occasion: Mapped[str] = mapped_column(String(16))
    source_ref: Mapped[str] = mapped_column(String(64))  # the sale's or complaint's id
    token: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("kind IN ('csat_nps')", name="kind"),
        CheckConstraint("occasion IN ('sale','complaint')", name="occasion"),
        CheckConstraint("expires_at > created_at", name="window"),
        UniqueConstraint("occasion", "source_ref", name="uq_survey_invitation_occasion"),
        Index("ix_survey_invitations_member_created", "member_id", "created_at"),
        Index("ix_survey_invitations_store_id", "store_id"),
    )


class SurveyResponse(Base):
    """The one answer to an invitation (UNIQUE): CSAT 1-5 and/or NPS 0-10, a comment."""

    __tablename__ = "survey_responses"

    id: Mapped[uuid.UUID] = uuid_pk()
    invitation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("survey_invitations.id"),
                                                     unique=True)
    csat: Mapped[int | None]
    nps: Mapped[int | None]
    comment: Mapped[str] = mapped_column(String(NOTE_LENGTH), default="")
    answered_at: Mapped[datetime] = mapped_column(index=True)

    __table_args__ = (
        CheckConstraint("csat IS NULL OR csat BETWEEN 1 AND 5", name="csat"),
        CheckConstraint("nps IS NULL OR nps BETWEEN 0 AND 10", name="nps"),
        CheckConstraint("csat IS NOT NULL OR nps IS NOT NULL", name="answered"),
    )
