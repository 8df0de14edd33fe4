"""The care inboxes: the message outbox and its dead letters, the callback board, the
complaints with their SLA state, and the survey results.

Who may see and do what is decided by the services (messaging, feedback), as the API does:
managers and owners read the outbox and survey results of their stores; every staff
member of a store sees its call list and complaints and logs calls; managers assign calls
and move and resolve complaints. These pages only read the query string and the forms,
call the services and render what they return.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy.orm import Session
from starlette.responses import Response

from patron.auth import service as auth
from patron.auth.enums import Role
from patron.auth.principal import Principal
from patron.core.clock import local_today
from patron.core.errors import PatronError, ValidationFailed
from patron.feedback import rules as feedback_rules
from patron.feedback import service as feedback
from patron.feedback.enums import (
    CallbackStatus,
    CallOutcome,
    ComplaintCategory,
    ComplaintChannel,
    ComplaintStatus,
    Severity,
    SlaState,
)
from patron.feedback.models import CallbackTask, Complaint
from patron.feedback.schemas import ComplaintCreate
from patron.members import rules as member_rules
from patron.members import service as members
from patron.members.models import Member, Store
from patron.messaging import service as messaging
from patron.messaging.models import Message
from patron.offers import service as offers
from patron.web import care_charts
from patron.web.deps import Db, Page, PostedForm, SignedInPage, principal_of
from patron.web.forms import Form, attempt
from patron.web.i18n import N_
from patron.web.routing import web_router
from patron.web.templating import redirect, render

router = web_router()

PAGE_SIZE = 50
BOARD_LIMIT = 500
DONE_SHOWN = 20
SURVEY_MONTHS = (3, 6, 12, 24)

#: Display names of the feedback and messaging vocabularies.
LABELS: dict[str, str] = {
    # message statuses
    "queued": N_("Queued"), "sending": N_("Sending"), "sent": N_("Sent"),
    "delivered": N_("Delivered"), "failed": N_("Failed"), "dead": N_("Dead letter"),
    "suppressed": N_("Suppressed"), "webhook": N_("Webhook"),
    # callback reasons and outcomes
    "win_back": N_("Win-back"), "complaint_follow_up": N_("Complaint follow-up"),
    "survey_follow_up": N_("Survey follow-up"), "manual": N_("Asked by a manager"),
    "reached": N_("Reached"), "no_answer": N_("No answer"), "complaint": N_("Complained"),
    "will_return": N_("Will come back"), "wrong_number": N_("Wrong number"),
    "not_interested": N_("Not interested"), "done": N_("Done"), "cancelled": N_("Cancelled"),
    # complaints
    "open": N_("Open"), "in_progress": N_("In progress"), "resolved": N_("Resolved"),
    "closed": N_("Closed"), "low": N_("Low"), "normal": N_("Normal"), "high": N_("High"),
    "critical": N_("Critical"), "in_store": N_("In store"), "phone": N_("Phone"),
    "web": N_("Web"), "social": N_("Social media"), "product": N_("Product"),
    "service": N_("Service"), "price": N_("Price"), "wait_time": N_("Waiting time"),
    "staff": N_("Staff"), "billing": N_("Billing"), "other": N_("Other"),
    "opened": N_("Opened"), "status_changed": N_("Status changed"), "reopened": N_("Reopened"),
    # SLA
    "ok": N_("On time"), "due_soon": N_("Due soon"), "breached": N_("Breached"),
}
SLA_BADGES = {SlaState.OK.value: "badge-ok", SlaState.DUE_SOON.value: "badge-warn",
              SlaState.BREACHED.value: "badge-danger"}
MESSAGE_BADGES = {"sent": "badge-ok", "delivered": "badge-ok", "failed": "badge-danger",
                  "dead": "badge-danger", "suppressed": "badge-warn"}


def _stores_of(session: Session, principal: Principal) -> list[Store]:
    return [s for s in members.list_stores(session, include_inactive=True)
            if principal.can_access_store(s.id)]


def _store_names(session: Session) -> dict[uuid.UUID, str]:
    return {s.id: s.name for s in members.list_stores(session, include_inactive=True)}


def _page_number(raw: str) -> int:
    return int(raw) if raw.isdigit() and 0 < int(raw) < 100_000 else 1


def _members(session: Session, ids: Sequence[uuid.UUID | None]) -> dict[uuid.UUID, Member]:
    found: dict[uuid.UUID, Member] = {}
    for member_id in dict.fromkeys(i for i in ids if i is not None):
        try:
            found[member_id] = members.get_member(session, member_id=member_id)
        except PatronError:
            continue
    return found


def _phone(principal: Principal, phone: str | None) -> str:
    return (phone if principal.sees_full_phone else member_rules.mask_phone(phone)) or ""


# ---------------------------------------------------------------- outbox


def _recipient(principal: Principal, message: Message) -> str:
    """Owners see recipients in full; managers a masked phone (as the API shows them)."""
    if principal.role is Role.OWNER or message.channel != "sms":
        return message.recipient
    return member_rules.mask_phone(message.recipient) or message.recipient


OUTBOX_FIELDS = ("status", "channel", "store", "since", "until", "page")


@router.get("/care/outbox")
def outbox_page(page: SignedInPage, session: Db) -> Response:
    """Messages by status, with filters, counts per status and the dead letters."""
    principal = principal_of(page)
    query = page.request.query_params
    form = Form(values={k: query.get(k, "").strip()[:64] for k in OUTBOX_FIELDS
                        if query.get(k, "").strip()}, fields=frozenset(OUTBOX_FIELDS))
    store_id = form.uuid_value(page, "store")
    since_on, until_on = form.date_value(page, "since"), form.date_value(page, "until")
    if since_on and until_on and until_on < since_on:
        form.add("until", page.gettext(N_("The end is before the start")))
    number = _page_number(form.get("page"))
    filters = messaging.MessageFilter(
        status=form.text("status"), channel=form.text("channel"), store_id=store_id,
        since=datetime.combine(since_on, time.min, page.tz) if since_on else None,
        until=datetime.combine(until_on + timedelta(days=1), time.min, page.tz)
        if until_on else None)
    counts: dict[str, int] = dict.fromkeys(messaging.MESSAGE_STATUSES, 0)
    rows: list[Message] = []
    dead: list[Message] = []
    status = 200
    if form.ok:
        try:
            counts = messaging.count_messages_for(session, actor=principal, filters=filters)
            rows = messaging.list_messages_for(session, actor=principal, filters=filters,
                                               limit=PAGE_SIZE + 1,
                                               offset=(number - 1) * PAGE_SIZE)
            if filters.status in (None, "dead"):
                dead = messaging.list_messages_for(
                    session, actor=principal, limit=20,
                    filters=messaging.MessageFilter(status="dead", channel=filters.channel,
                                                    store_id=filters.store_id,
                                                    since=filters.since, until=filters.until))
        except ValidationFailed as exc:
            form.add_patron_error(page, exc)
    if not form.ok:
        status = 422
    total = sum(counts.values()) if filters.status is None else counts.get(filters.status, 0)
    params = {k: v for k, v in form.values.items() if k != "page"}
    return render(page, "care/outbox.html", status=status, form=form, counts=counts,
                  rows=rows[:PAGE_SIZE], dead=dead, params=params, page_number=number,
                  pages=max(1, math.ceil(total / PAGE_SIZE)),
                  has_next=len(rows) > PAGE_SIZE, statuses=messaging.MESSAGE_STATUSES,
                  channels=messaging.MESSAGE_CHANNELS, stores=_stores_of(session, principal),
                  store_names=_store_names(session),
                  recipient=lambda m: _recipient(principal, m), labels=LABELS,
                  badges=MESSAGE_BADGES)


@router.post("/care/outbox/{message_id}/resend")
def resend_message(page: SignedInPage, session: Db, data: PostedForm,
                   message_id: uuid.UUID) -> Response:
    """Put a dead letter (or a failed message) back in the queue, once: a message that is
    queued again is no longer dead, so a second click is refused by the service."""
    principal = principal_of(page)
    messaging.message_for(session, actor=principal, message_id=message_id)
    message = messaging.resend(session, clock=page.app.clock, actor=principal,
                               message_id=message_id)
    session.commit()
    if page.is_htmx:
        return render(page, "care/_message_row.html", m=message,
                      store_names=_store_names(session),
                      recipient=lambda m: _recipient(principal, m), labels=LABELS,
                      badges=MESSAGE_BADGES, requeued=True)
    back = Form.posted(data, ("back",)).get("back")
    return redirect(page, back if back.startswith("/care/outbox") else "/care/outbox")


# ---------------------------------------------------------------- callbacks


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    tasks: list[CallbackTask]


def _board(page: Page, session: Session, principal: Principal, store_id: uuid.UUID | None,
           mine: bool) -> tuple[list[Column], list[CallbackTask]]:
    """Open tasks in overdue / due today / later by each store's local day, and the latest
    closed ones."""
    open_tasks = feedback.list_callbacks(
        session, clock=page.app.clock, actor=principal, store_id=store_id,
        status=CallbackStatus.OPEN, assignee_id=principal.user_id if mine else None,
        limit=BOARD_LIMIT)
    todays = {s.id: local_today(page.app.clock, s.timezone)
              for s in members.list_stores(session, include_inactive=True)}
    overdue = feedback.overdue_flags(session, clock=page.app.clock, tasks=open_tasks)
    columns: dict[str, list[CallbackTask]] = {"overdue": [], "today": [], "later": []}
    for task in open_tasks:
        if overdue[task.id]:
            columns["overdue"].append(task)
        elif task.due_on == todays[task.store_id]:
            columns["today"].append(task)
        else:
            columns["later"].append(task)
    closed = feedback.closed_callbacks(session, actor=principal, store_id=store_id,
                                       limit=DONE_SHOWN)
    if mine:
        closed = [t for t in closed if t.assignee_id == principal.user_id]
    titles = {"overdue": N_("Overdue"), "today": N_("Due today"), "later": N_("Later")}
    return [Column(k, titles[k], v) for k, v in columns.items()], closed


def _render_board(page: Page, session: Session, form: Form, status: int = 200,
                  failed_task: uuid.UUID | None = None) -> Response:
    principal = principal_of(page)
    query = page.request.query_params
    store_id = None
    raw_store = query.get("store", "")
    if raw_store:
        try:
            store_id = uuid.UUID(raw_store)
        except ValueError:
            form.add(None, page.gettext(N_("Choose one of the options")))
            status = 422
    mine = query.get("mine") == "1"
    columns, closed = _board(page, session, principal, store_id, mine)
    tasks = [t for c in columns for t in c.tasks] + closed
    users: list[Any] = []
    if principal.role is not Role.CASHIER:
        users = [u for u in auth.list_users(session, actor=principal) if u.active]
    names = {u.id: u.display_name for u in users}
    if principal.user_id is not None:
        names.setdefault(principal.user_id, principal.label)
    return render(page, "care/callbacks.html", status=status, columns=columns, closed=closed,
                  members=_members(session, [t.member_id for t in tasks]),
                  store_names=_store_names(session), stores=_stores_of(session, principal),
                  users=users, user_names=names, form=form, failed_task=failed_task,
                  outcomes=[o.value for o in CallOutcome], labels=LABELS, mine=mine,
                  store_param=raw_store, phone=lambda p: _phone(principal, p),
                  today=local_today(page.app.clock, page.tz.key))


@router.get("/care/callbacks")
def callbacks_page(page: SignedInPage, session: Db) -> Response:
    return _render_board(page, session, Form(fields=frozenset(CALL_FIELDS)))


CALL_FIELDS = ("outcome", "note", "reschedule_on", "assignee_id")


def _back_to_board(page: Page, data: PostedForm) -> str:
    back = Form.posted(data, ("back",)).get("back")
    return back if back.startswith("/care/callbacks") else "/care/callbacks"


@router.post("/care/callbacks/{task_id}/call")
def log_call(page: SignedInPage, session: Db, data: PostedForm, task_id: uuid.UUID) -> Response:
    """Log a call: a ``no_answer`` with a new day keeps the task open, anything else
    settles it with that outcome."""
    feedback.get_callback(session, actor=principal_of(page), task_id=task_id)  # 404 / 403
    form = Form.posted(data, CALL_FIELDS)
    try:
        outcome: CallOutcome | None = CallOutcome(form.get("outcome"))
    except ValueError:
        outcome = None
        form.add("outcome", page.gettext(N_("Choose one of the options")))
    reschedule_on = form.date_value(page, "reschedule_on")
    done = attempt(page, form, lambda: feedback.log_call(
        session, clock=page.app.clock, actor=principal_of(page), task_id=task_id,
        outcome=outcome or CallOutcome.REACHED, note=form.get("note"),
        reschedule_on=reschedule_on))
    if done is None:
        session.rollback()
        return _render_board(page, session, form, status=422, failed_task=task_id)
    session.commit()
    return redirect(page, _back_to_board(page, data))


@router.post("/care/callbacks/{task_id}/assign")
def assign_call(page: SignedInPage, session: Db, data: PostedForm,
                task_id: uuid.UUID) -> Response:
    """Give a task to someone of its store (an empty choice takes it back)."""
    feedback.get_callback(session, actor=principal_of(page), task_id=task_id)  # 404 / 403
    form = Form.posted(data, CALL_FIELDS)
    assignee = form.uuid_value(page, "assignee_id")
    done = attempt(page, form, lambda: feedback.assign_callback(
        session, clock=page.app.clock, actor=principal_of(page), task_id=task_id,
        assignee_id=assignee))
    if done is None:
        session.rollback()
        return _render_board(page, session, form, status=422, failed_task=task_id)
    session.commit()
    return redirect(page, _back_to_board(page, data))


# ---------------------------------------------------------------- complaints


def sla_counts(complaints: Sequence[Complaint], states: dict[uuid.UUID, SlaState]
               ) -> dict[str, int]:
    """How many complaints still being handled stand in each SLA state."""
    counts = dict.fromkeys((s.value for s in SlaState), 0)
    for c in complaints:
        if c.status in (ComplaintStatus.OPEN.value, ComplaintStatus.IN_PROGRESS.value):
            counts[states[c.id].value] += 1
    return counts


NEW_COMPLAINT_FIELDS = ("store_id", "card_no", "channel", "category", "severity",
                        "description", "contact")


def _render_complaints(page: Page, session: Session, new_form: Form,
                       status: int = 200) -> Response:
    principal = principal_of(page)
    query = page.request.query_params
    filters = Form(values={k: query.get(k, "").strip()[:64] for k in ("status", "store", "sla")
                           if query.get(k, "").strip()},
                   fields=frozenset({"status", "store", "sla"}))
    store_id = filters.uuid_value(page, "store")
    wanted_status: ComplaintStatus | None = None
    if filters.get("status") and filters.get("status") != "active":
        try:
            wanted_status = ComplaintStatus(filters.get("status"))
        except ValueError:
            filters.add("status", page.gettext(N_("Choose one of the options")))
    complaints: list[Complaint] = []
    if filters.ok:
        complaints = feedback.list_complaints(session, actor=principal, store_id=store_id,
                                              status=wanted_status, limit=500)
    if filters.get("status") == "active":
        complaints = [c for c in complaints if c.status in ("open", "in_progress")]
    now = page.app.clock.now()
    states = {c.id: feedback.sla_state_of(c, now=now) for c in complaints}
    counts = sla_counts(complaints, states)
    if filters.get("sla") in SLA_BADGES:
        complaints = [c for c in complaints if states[c.id].value == filters.get("sla")]
    if not filters.ok:
        status = 422
    return render(page, "care/complaints.html", status=status, complaints=complaints,
                  states=states, counts=counts, filters=filters, form=new_form,
                  members=_members(session, [c.member_id for c in complaints]),
                  store_names=_store_names(session), stores=_stores_of(session, principal),
                  labels=LABELS, sla_badges=SLA_BADGES,
                  complaint_statuses=[s.value for s in ComplaintStatus],
                  channels=[c.value for c in ComplaintChannel],
                  categories=[c.value for c in ComplaintCategory],
                  severities=[s.value for s in Severity])


@router.get("/care/complaints")
def complaints_page(page: SignedInPage, session: Db) -> Response:
    principal = principal_of(page)
    form = Form.initial({"severity": Severity.NORMAL.value, "channel": "in_store",
                         "category": "service",
                         "store_id": principal.default_store_id}, NEW_COMPLAINT_FIELDS)
    return _render_complaints(page, session, form)


@router.post("/care/complaints")
def open_complaint(page: SignedInPage, session: Db, data: PostedForm) -> Response:
    """Log a complaint (any staff member of the store); its SLA deadlines start now."""
    form = Form.posted(data, NEW_COMPLAINT_FIELDS)
    store_id = form.uuid_value(page, "store_id")
    member_id = None
    if card := form.get("card_no"):
        member = members.find_by_card(session, card_no=card)
        if member is None:
            form.add("card_no", page.gettext(N_("No member has this card number")))
        else:
            member_id = member.id
    complaint = attempt(page, form, lambda: feedback.open_complaint(
        session, clock=page.app.clock, actor=principal_of(page),
        data=ComplaintCreate.model_validate({
            "store_id": store_id, "member_id": member_id, "channel": form.get("channel"),
            "category": form.get("category"), "severity": form.get("severity"),
            "description": form.get("description"), "contact": form.get("contact")})))
    if complaint is None:
        session.rollback()
        return _render_complaints(page, session, form, status=422)
    session.commit()
    return redirect(page, f"/care/complaints/{complaint.id}")


ACTION_FIELDS = ("to", "note", "resolution", "points", "coupon_template_id", "follow_up_on")


def _render_complaint(page: Page, session: Session, complaint_id: uuid.UUID, form: Form,
                      status: int = 200) -> Response:
    principal = principal_of(page)
    complaint = feedback.get_complaint(session, actor=principal, complaint_id=complaint_id)
    member = _members(session, [complaint.member_id]).get(complaint.member_id) \
        if complaint.member_id else None
    current = ComplaintStatus(complaint.status)
    return render(page, "care/complaint.html", status=status, c=complaint, member=member,
                  events=feedback.complaint_events(session, complaint_id=complaint.id),
                  compensation=feedback.compensation_of(session, complaint_id=complaint.id),
                  sla=feedback.sla_state_of(complaint, now=page.app.clock.now()),
                  moves=sorted(s.value for s in feedback_rules.TRANSITIONS[current]
                               if s is not ComplaintStatus.RESOLVED),
                  may_resolve=feedback_rules.can_transition(current, ComplaintStatus.RESOLVED),
                  coupon_templates=offers.list_templates(session) if member else [],
                  form=form, labels=LABELS, sla_badges=SLA_BADGES,
                  store_names=_store_names(session), phone=lambda p: _phone(principal, p))


@router.get("/care/complaints/{complaint_id}")
def complaint_page(page: SignedInPage, session: Db, complaint_id: uuid.UUID) -> Response:
    return _render_complaint(page, session, complaint_id, Form(fields=frozenset(ACTION_FIELDS)))


@router.post("/care/complaints/{complaint_id}/status")
def move_complaint(page: SignedInPage, session: Db, data: PostedForm,
                   complaint_id: uuid.UUID) -> Response:
    """Take a complaint up (respond), close a resolved one, or reopen it."""
    feedback.get_complaint(session, actor=principal_of(page), complaint_id=complaint_id)
    form = Form.posted(data, ACTION_FIELDS)
    try:
        target: ComplaintStatus | None = ComplaintStatus(form.get("to"))
    except ValueError:
        target = None
        form.add("to", page.gettext(N_("Choose one of the options")))
    moved = attempt(page, form, lambda: feedback.transition_complaint(
        session, clock=page.app.clock, actor=principal_of(page), complaint_id=complaint_id,
        to=target or ComplaintStatus.IN_PROGRESS, note=form.get("note")))
    if moved is None:
        session.rollback()
        return _render_complaint(page, session, complaint_id, form, status=422)
    session.commit()
    return redirect(page, f"/care/complaints/{complaint_id}")


@router.post("/care/complaints/{complaint_id}/resolve")
def resolve_complaint(page: SignedInPage, session: Db, data: PostedForm,
                      complaint_id: uuid.UUID) -> Response:
    """Resolve with what was done; optionally compensate and plan a follow-up call."""
    feedback.get_complaint(session, actor=principal_of(page), complaint_id=complaint_id)
    form = Form.posted(data, ACTION_FIELDS)
    points = form.int_value(page, "points")
    template_id = form.uuid_value(page, "coupon_template_id")
    follow_up_on = form.date_value(page, "follow_up_on")
    resolved = attempt(page, form, lambda: feedback.resolve_complaint(
        session, clock=page.app.clock, actor=principal_of(page), complaint_id=complaint_id,
        resolution=form.get("resolution"), coupon_template_id=template_id, points=points,
        follow_up_on=follow_up_on),
        aliases={"compensation.points": "points",
                 "compensation.coupon_template_id": "coupon_template_id"})
    if resolved is None:
        session.rollback()
        return _render_complaint(page, session, complaint_id, form, status=422)
    session.commit()
    return redirect(page, f"/care/complaints/{complaint_id}")


# ---------------------------------------------------------------- surveys


def month_keys(end: date, months: int) -> list[str]:
    """``months`` calendar months ending with ``end``'s, as ``YYYY-MM``, oldest first."""
    keys = []
    year, month = end.year, end.month
    for _ in range(months):
        keys.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return keys[::-1]


@router.get("/care/surveys")
def surveys_page(page: SignedInPage, session: Db) -> Response:
    """CSAT and NPS over the chosen months, the NPS trend per month, the latest comments."""
    principal = principal_of(page)
    query = page.request.query_params
    filters = Form(values={k: query.get(k, "").strip()[:64] for k in ("store", "months")
                           if query.get(k, "").strip()},
                   fields=frozenset({"store", "months"}))
    store_id = filters.uuid_value(page, "store")
    months = int(filters.get("months")) if filters.get("months").isdigit() else 12
    if months not in SURVEY_MONTHS:
        filters.add("months", page.gettext(N_("Choose one of the options")))
        months = 12
    today = local_today(page.app.clock, page.tz.key)
    keys = month_keys(today, months)
    first = date.fromisoformat(f"{keys[0]}-01")
    # from the first day of the first month shown, in the viewer's zone (each answer's
    # month is its store's, so a store in another zone may add a sliver of the month before)
    results = feedback.survey_results(session, actor=principal, store_id=store_id,
                                      since=datetime.combine(first, time.min, page.tz))
    by_month = {k: v for k, v in results.by_month.items() if k in keys}
    overall = results.overall
    comments = feedback.latest_comments(session, actor=principal, store_id=store_id, limit=10)
    trend = care_charts.nps_trend(keys, by_month, nps_label=page.gettext(N_("NPS")),
                                  csat_label=page.gettext(N_("Satisfied (CSAT)")))
    mix = care_charts.nps_mix(keys, by_month, labels=(
        page.gettext(N_("Promoters")), page.gettext(N_("Passives")),
        page.gettext(N_("Detractors"))))
    return render(page, "care/surveys.html", status=200 if filters.ok else 422,
                  overall=overall, by_store=results.by_store, by_month=by_month, keys=keys,
                  trend=trend, mix=mix, comments=comments, filters=filters, months=months,
                  month_choices=SURVEY_MONTHS, stores=_stores_of(session, principal),
                  store_names=_store_names(session),
                  members=_members(session, [c.member_id for c in comments]))

