"""The fixed vocabularies of the feedback domain (stored as their string values)."""

from __future__ import annotations

from enum import StrEnum


class CallbackReason(StrEnum):
    """Why a member should be called."""

    WIN_BACK = "win_back"  # the care win-back rule: a lapsing customer
    COMPLAINT_FOLLOW_UP = "complaint_follow_up"  # after a complaint was resolved
    SURVEY_FOLLOW_UP = "survey_follow_up"  # a detractor's or an unhappy survey answer
    MANUAL = "manual"


class CallbackStatus(StrEnum):
    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"


class CallOutcome(StrEnum):
    """What happened when staff called."""

    REACHED = "reached"
    NO_ANSWER = "no_answer"
    COMPLAINT = "complaint"
    WILL_RETURN = "will_return"
    WRONG_NUMBER = "wrong_number"
    NOT_INTERESTED = "not_interested"


class ComplaintChannel(StrEnum):
    IN_STORE = "in_store"
    PHONE = "phone"
    SMS = "sms"
    EMAIL = "email"
    WEB = "web"
    SOCIAL = "social"


class ComplaintCategory(StrEnum):
    PRODUCT = "product"
    SERVICE = "service"
    PRICE = "price"
    WAIT_TIME = "wait_time"
    STAFF = "staff"
    BILLING = "billing"
    OTHER = "other"


class Severity(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"


class ComplaintStatus(StrEnum):
    """open -> in_progress -> resolved -> closed; a resolved complaint may be reopened."""

    OPEN = "open"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"


class ComplaintEventKind(StrEnum):
    OPENED = "opened"
    STATUS_CHANGED = "status_changed"
    REOPENED = "reopened"


class SlaState(StrEnum):
    """How a complaint stands against its deadlines (derived from the clock, not stored)."""

    OK = "ok"
    DUE_SOON = "due_soon"
    BREACHED = "breached"


class SurveyKind(StrEnum):
    CSAT_NPS = "csat_nps"  # one CSAT question (1-5) and one NPS question (0-10)


class SurveyOccasion(StrEnum):
    """What a survey asks about; ``source_ref`` names the sale or the complaint."""

    SALE = "sale"
    COMPLAINT = "complaint"


class SurveyStatus(StrEnum):
    OPEN = "open"
    ANSWERED = "answered"
    EXPIRED = "expired"
