"""Actions of the member page: top up, adjust points, issue a coupon, add a note, log a
call, record a complaint (editing and merging stay in ``members``).

Each action posts its own form and, when it worked, redirects back to the member page with
a message (post/redirect/get). A refusal -- from parsing or from the service -- renders the
member page again with that form open, the values as typed and the error beside the field
it names; its transaction is rolled back, so nothing changed.

Top-ups and points adjustments move value (DESIGN rule 3): the form carries an
Idempotency-Key minted when the page was drawn, and the movement runs through
``core.idempotency`` exactly as the API's and the till's do, so a double click or a
resubmitted form moves the value once. Role checks are the services': anyone on staff tops
up; adjusting points and issuing coupons need a manager, and the refusal is the 403 page.
Points adjustments are audited by loyalty; a top-up made here is audited here, in the
same transaction, because the wallet service leaves that to its callers (rule 8).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.responses import Response

from patron.auth import audit
from patron.auth.enums import Role
from patron.core import idempotency
from patron.core.errors import NotFound, PatronError, PermissionDenied
from patron.feedback import service as feedback
from patron.feedback.enums import CallbackReason, CallOutcome
from patron.feedback.schemas import ComplaintCreate
from patron.loyalty import service as loyalty
from patron.members import notes
from patron.offers import service as offers
from patron.wallet import service as wallet
from patron.web.deps import Db, Page, PostedForm, SignedInPage, principal_of
from patron.web.forms import Form, translate_error
from patron.web.i18n import N_
from patron.web.pages.cashier import parse_money
from patron.web.pages.members import ACTION_FIELDS, _render_member
from patron.web.routing import web_router
from patron.web.templating import FLASHES, has_role, redirect

router = web_router()

MAX_POINTS = loyalty.MAX_POINTS

# The messages after each action, registered with the shared flash table at import.
FLASHES.update({
    "member_topped_up": N_("Stored value topped up."),
    "member_points_adjusted": N_("Points adjusted."),
    "member_coupon_issued": N_("Coupon issued."),
    "member_note_added": N_("Note added."),
    "member_call_logged": N_("Call logged."),
    "member_complaint_recorded": N_("Complaint recorded."),
})

#: What the page says for a refusal, by the service's stable code (their own sentences
#: carry raw values, e.g. minor units, and are for integrators).
ACTION_MESSAGES = {
    "insufficient_balance": N_("Not enough points: the member has %(points)s available"),
    "member_limit_reached": N_("This member has had this coupon as often as it allows"),
    "total_limit_reached": N_("No more coupons may be issued from this template"),
    "template_inactive": N_("This coupon template is no longer active"),
    "template_ended": N_("This coupon template's window has ended"),
    "in_past": N_("This day is in the past"),
    "not_rescheduling": N_("Only a call nobody answered can be rescheduled"),
    "task_closed": N_("This callback task is already closed"),
    "idempotency_in_progress": N_("This form is being submitted already; wait a moment"),
    "idempotency_key_reused": N_("This form was already submitted; open the page again"),
    "not_active": N_("Member is not active"),
}


def _add_error(page: Page, form: Form, exc: PatronError, aliases: Mapping[str, str],
               **values: Any) -> None:
    """A service refusal on the form field it names, in the page's words."""
    for problem in exc.problems or []:
        name = aliases.get(problem.field, problem.field)
        if problem.code in ACTION_MESSAGES:
            text = page.gettext(ACTION_MESSAGES[problem.code], **values)
        else:
            text = translate_error(page, problem.message, problem.code)
        form.add(name, text)
    if not exc.problems:
        form.add(None, page.gettext(ACTION_MESSAGES[exc.code], **values)
                 if exc.code in ACTION_MESSAGES else translate_error(page, exc.message,
                                                                     exc.code))


def _refused(page: Page, member_id: uuid.UUID, action: str, form: Form,
             session: Session | None = None) -> Response:
    """The member page again with ``action``'s form open and its errors (status 422)."""
    if session is not None:
        session.rollback()
        return _render_member(page, session, member_id, action=action, action_form=form,
                              status=422)
    with page.app.db.read() as fresh:
        return _render_member(page, fresh, member_id, action=action, action_form=form,
                              status=422)


def _once(page: Page, form: Form, member_id: uuid.UUID, path: str, body: dict[str, Any],
          work: Callable[[Session], None]) -> None:
    """Run a value-moving ``work`` at most once for the form's Idempotency-Key.

    The key row, the movement and its audit entry commit together; a second submission of
    the same form finds the key and moves nothing. Refusals propagate (nothing stored).
    """
    principal = principal_of(page)
    ctx = page.app
    raw = json.dumps({"member_id": str(member_id), **body}, sort_keys=True).encode()

    def run(session: Session) -> tuple[int, bytes]:
        work(session)
        return 201, raw

    idempotency.run(ctx.db, clock=ctx.clock, scope=f"{principal.kind.value}:{principal.id}",
                    key=idempotency.check_key(form.get("key") or None),
                    fingerprint_=idempotency.fingerprint("POST", path, raw), work=run,
                    lease=timedelta(seconds=ctx.settings.idempotency_lease_seconds))


# ---------------------------------------------------------------- value-moving actions


@router.post("/members/{member_id}/topup")
def top_up(page: SignedInPage, data: PostedForm, member_id: uuid.UUID) -> Response:
    """Add paid-in stored value (plus any top-up bonus rule), once per form."""
    principal = principal_of(page)
    ctx = page.app
    form = Form.posted(data, ACTION_FIELDS["topup"])
    amount = 0
    try:
        amount = parse_money(form.get("amount"), ctx.settings.currency)
    except ValueError:
        form.add("amount", page.gettext(N_("Enter an amount like 12.50")))
    if form.ok and amount <= 0:
        form.add("amount", page.gettext(N_("Enter the amount paid in")))
    elif amount > wallet.MAX_AMOUNT_MINOR:
        form.add("amount", page.gettext(N_("At most %(amount)s at once"),
                                        amount=page.formatter.money(wallet.MAX_AMOUNT_MINOR)))
    reason = form.get("topup_reason")
    if len(reason) > 200:
        form.add("topup_reason", page.gettext(N_("At most 200 characters")))
    if not form.ok:
        return _refused(page, member_id, "topup", form)

    def work(session: Session) -> None:
        entry = wallet.top_up(session, clock=ctx.clock, actor=principal, member_id=member_id,
                              amount_minor=amount, reason=reason)
        audit.record(session, clock=ctx.clock, actor=principal, action="wallet.topped_up",
                     entity_type="member", entity_id=member_id, store_id=entry.store_id,
                     details={"amount_minor": amount, "bonus_minor": entry.bonus_delta_minor,
                              "entry_id": str(entry.id)})

    try:
        _once(page, form, member_id, f"/members/{member_id}/topup",
              {"amount_minor": amount, "reason": reason}, work)
    except PermissionDenied:
        raise
    except PatronError as exc:
        _add_error(page, form, exc, {"amount_minor": "amount", "reason": "topup_reason"})
        return _refused(page, member_id, "topup", form)
    return redirect(page, f"/members/{member_id}#wallet", flash="member_topped_up")


@router.post("/members/{member_id}/points")
def adjust_points(page: SignedInPage, data: PostedForm, member_id: uuid.UUID) -> Response:
    """A manager's points correction with a reason (loyalty audits it), once per form."""
    principal = principal_of(page)
    ctx = page.app
    form = Form.posted(data, ACTION_FIELDS["points"])
    raw = form.get("points").replace(",", "").replace(" ", "")
    points = int(raw) if raw.lstrip("+-").isdigit() else None
    if points is None or points == 0 or abs(points) > MAX_POINTS:
        form.add("points", page.gettext(N_("Enter a whole number of points, e.g. 100 or -100")))
    reason = form.get("points_reason")
    if not reason:
        form.add("points_reason", page.gettext(N_("Say why the points change")))
    elif len(reason) > 200:
        form.add("points_reason", page.gettext(N_("At most 200 characters")))
    if not form.ok or points is None:
        return _refused(page, member_id, "points", form)
    change = points

    def work(session: Session) -> None:
        loyalty.adjust(session, clock=ctx.clock, actor=principal, member_id=member_id,
                       points=change, reason=reason, tz=page.tz.key)

    try:
        _once(page, form, member_id, f"/members/{member_id}/points",
              {"points": change, "reason": reason}, work)
    except PermissionDenied:
        raise
    except PatronError as exc:
        with ctx.db.read() as session:
            have = loyalty.balance(session, clock=ctx.clock, member_id=member_id).available
        _add_error(page, form, exc, {"reason": "points_reason"},
                   points=page.formatter.number(have))
        return _refused(page, member_id, "points", form)
    return redirect(page, f"/members/{member_id}#points", flash="member_points_adjusted")


# ---------------------------------------------------------------- other actions


@router.post("/members/{member_id}/coupons")
def issue_coupon(page: SignedInPage, session: Db, data: PostedForm,
                 member_id: uuid.UUID) -> Response:
    """Issue one coupon of a template to the member (managers; offers audits it)."""
    form = Form.posted(data, ACTION_FIELDS["coupon"])
    template_id = form.uuid_value(page, "template_id")
    if form.ok and template_id is None:
        form.add("template_id", page.gettext(N_("Choose a coupon")))
    if not form.ok or template_id is None:
        return _refused(page, member_id, "coupon", form, session)
    try:
        offers.issue_coupons(session, clock=page.app.clock, actor=principal_of(page),
                             template_id=template_id, member_id=member_id)
    except PermissionDenied:
        raise
    except PatronError as exc:
        _add_error(page, form, exc, {"member_id": "template_id"})
        return _refused(page, member_id, "coupon", form, session)
    session.commit()
    return redirect(page, f"/members/{member_id}#coupons", flash="member_coupon_issued")


@router.post("/members/{member_id}/notes")
def add_note(page: SignedInPage, session: Db, data: PostedForm,
             member_id: uuid.UUID) -> Response:
    """Add a signed, dated staff note to the member (``members.notes``: staff of the
    member's home store; notes are never edited)."""
    notes.member_for_notes(session, principal=principal_of(page), member_id=member_id)
    form = Form.posted(data, ACTION_FIELDS["note"])
    text = form.get("note_text").strip()
    if not text:
        form.add("note_text", page.gettext(N_("Write the note first")))
    elif len(text) > notes.MAX_NOTE:
        form.add("note_text", page.gettext(N_("At most %(n)s characters"), n=notes.MAX_NOTE))
    if not form.ok:
        return _refused(page, member_id, "note", form, session)
    try:
        notes.add_note(session, clock=page.app.clock, principal=principal_of(page),
                       member_id=member_id, body=text)
    except PermissionDenied:
        raise
    except PatronError as exc:
        _add_error(page, form, exc, {"body": "note_text"})
        return _refused(page, member_id, "note", form, session)
    session.commit()
    return redirect(page, f"/members/{member_id}#care", flash="member_note_added")


@router.post("/members/{member_id}/calls")
def log_call(page: SignedInPage, session: Db, data: PostedForm,
             member_id: uuid.UUID) -> Response:
    """Log a call for one of the member's open callback tasks; a manager may log a call
    without a task (a task is created for it, due today, and settled by the call)."""
    principal = principal_of(page)
    clock = page.app.clock
    form = Form.posted(data, ACTION_FIELDS["call"])
    task_id = form.uuid_value(page, "task_id")
    outcome: CallOutcome | None = None
    try:
        outcome = CallOutcome(form.get("outcome"))
    except ValueError:
        form.add("outcome", page.gettext(N_("Choose the outcome")))
    reschedule_on = form.date_value(page, "reschedule_on")
    note = form.get("call_note")
    if len(note) > 2000:
        form.add("call_note", page.gettext(N_("At most %(n)s characters"), n=2000))
    if form.ok and task_id is None and not has_role(page, Role.MANAGER.value):
        form.add("task_id", page.gettext(N_("Choose the callback task")))
    if form.ok and task_id is not None:
        try:
            task = feedback.get_callback(session, actor=principal, task_id=task_id)
        except NotFound:
            task = None
        if task is None or task.member_id != member_id:
            form.add("task_id", page.gettext(N_("Choose the callback task")))
    if not form.ok or outcome is None:
        return _refused(page, member_id, "call", form, session)
    try:
        if task_id is None:
            task_id = feedback.create_callback(session, clock=clock, actor=principal,
                                               member_id=member_id,
                                               reason=CallbackReason.MANUAL).id
        feedback.log_call(session, clock=clock, actor=principal, task_id=task_id,
                          outcome=outcome, note=note, reschedule_on=reschedule_on)
    except PermissionDenied:
        raise
    except PatronError as exc:
        _add_error(page, form, exc, {"note": "call_note", "due_on": "reschedule_on"})
        return _refused(page, member_id, "call", form, session)
    session.commit()
    return redirect(page, f"/members/{member_id}#care", flash="member_call_logged")


@router.post("/members/{member_id}/complaints")
def record_complaint(page: SignedInPage, session: Db, data: PostedForm,
                     member_id: uuid.UUID) -> Response:
    """Open a complaint ticket for the member (any staff member, for their store)."""
    form = Form.posted(data, ACTION_FIELDS["complaint"])
    try:
        payload = ComplaintCreate.model_validate({
            "member_id": member_id, "channel": form.get("channel"),
            "category": form.get("category"), "severity": form.get("severity") or "normal",
            "description": form.get("description")})
    except ValidationError as exc:
        form.add_validation_error(page, exc)
        return _refused(page, member_id, "complaint", form, session)
    try:
        feedback.open_complaint(session, clock=page.app.clock, actor=principal_of(page),
                                data=payload)
    except PermissionDenied:
        raise
    except PatronError as exc:
        _add_error(page, form, exc, {"store_id": "channel", "member_id": "description"})
        return _refused(page, member_id, "complaint", form, session)
    session.commit()
    return redirect(page, f"/members/{member_id}#care", flash="member_complaint_recorded")
