"""The referral landing page: a friend opens ``/join?ref=CODE`` and becomes a member.

Two steps, as the member sign-in: the phone number first (a code goes to it by SMS, through
the same one-time codes and rate limits as ``/m/login``), then the code with a name, a home
store and the consents. Only someone holding the phone can enrol it, and the answer to the
first step is the same for every number, so the page cannot be used to find out who is a
member. A number that already is one signs its member in instead (an existing member is
nobody's referral); a new one is enrolled, its referral recorded for the code's owner (the
referral rule rewards both after the first purchase) and signed in to the member page.

A code that belongs to nobody does not stop anyone from joining: the page says so and the
member joins unreferred.
"""

from __future__ import annotations

import uuid

from fastapi import Request
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.responses import HTMLResponse, Response

from patron.core.errors import PatronError, ValidationFailed
from patron.members import otp
from patron.members import rules as member_rules
from patron.members import service as members
from patron.members.schemas import MemberCreate
from patron.offers import service as offers
from patron.web.deps import Page
from patron.web.forms import Form, translate_error
from patron.web.i18n import N_
from patron.web.pages import selfservice as self_pages
from patron.web.pages.selfservice import PublicPage
from patron.web.routing import web_router
from patron.web.templating import render

router = web_router()

PHONE_FIELDS = ("phone", "ref")
DETAIL_FIELDS = ("phone", "ref", "challenge", "code", "name", "home_store_id", "email",
                 "sms_consent", "email_consent")


def _referrer_name(session: Session, code: str) -> str | None:
    """The inviting member's name as shown to a stranger: the family name only (李**)."""
    owner = offers.referral_code_owner(session, code=code) if code else None
    if owner is None:
        return None
    name = members.get_member(session, member_id=owner).name.strip()
    return name[:1] + "*" * max(1, min(len(name) - 1, 2)) if name else None


def _render(page: Page, session: Session, form: Form, *, step: str = "phone",
            status: int = 200, phone_shown: str = "") -> HTMLResponse:
    ref = form.get("ref")
    referrer = _referrer_name(session, ref)
    stores = members.list_stores(session)
    return render(page, "self/join.html", status=status, form=form, step=step, ref=ref,
                  referrer=referrer, bad_ref=bool(ref) and referrer is None, stores=stores,
                  store_options=[(str(s.id), s.name) for s in stores], phone_shown=phone_shown,
                  code_minutes=int(otp.CODE_TTL.total_seconds() // 60), notice=None)


@router.get("/join")
def join_page(page: PublicPage, ref: str = "") -> Response:
    """The invitation: who invited you, and the first step (the phone number)."""
    with page.app.db.read() as session:
        form = Form.initial({"ref": ref[:40]}, PHONE_FIELDS)
        return _render(page, session, form)


@router.post("/join")
async def send_code(request: Request, page: PublicPage) -> Response:
    """Send a code to the number (the answer is the same whether it is a member's or not)."""
    data = await self_pages.read_form(request)
    if data is None or not self_pages.pre_session_token_ok(page, data):
        return self_pages.forbidden(page)
    form = Form.posted(data, PHONE_FIELDS)
    ctx = page.app
    client = request.client.host if request.client else "-"
    with ctx.db.write() as session:
        try:
            issued = otp.issue(session, clock=ctx.clock, secret=self_pages.member_secret(ctx),
                               region=ctx.settings.default_region, phone=form.get("phone"),
                               client=client)
        except (ValidationFailed, otp.TooManyRequests) as exc:
            session.rollback()
            form.add("phone", self_pages.otp_message(page, exc))
            return _render(page, session, form, status=exc.status)
        self_pages.send_code(session, page, issued, signing_up=True)
        details = Form.initial({"ref": form.get("ref"), "phone": issued.phone_e164,
                                "challenge": str(issued.challenge_id), "sms_consent": True},
                               DETAIL_FIELDS)
        return _render(page, session, details, step="details",
                       phone_shown=member_rules.mask_phone(issued.phone_e164) or "")


@router.post("/join/details")
async def join(request: Request, page: PublicPage) -> Response:
    """The code and the new member's details: enrol, record the referral, sign in."""
    data = await self_pages.read_form(request)
    if data is None or not self_pages.pre_session_token_ok(page, data):
        return self_pages.forbidden(page)
    form = Form.posted(data, DETAIL_FIELDS)
    ctx = page.app
    phone_shown = member_rules.mask_phone(form.get("phone")) or ""
    try:
        challenge = uuid.UUID(form.get("challenge"))
    except ValueError:
        return self_pages.forbidden(page)
    with ctx.db.write() as session:
        try:
            data_in = MemberCreate(
                name=form.get("name"), phone=form.get("phone"), email=form.get("email") or None,
                home_store_id=form.get("home_store_id") or None,
                sms_consent=form.checked("sms_consent"),
                email_consent=form.checked("email_consent"), referral_source="referral link")
        except ValidationError as exc:
            form.add_validation_error(page, exc)
            return _render(page, session, form, step="details", status=422,
                           phone_shown=phone_shown)
        if data_in.home_store_id not in {s.id for s in members.list_stores(session)}:
            form.add("home_store_id", page.gettext(N_("Choose your store")))
            return _render(page, session, form, step="details", status=422,
                           phone_shown=phone_shown)
        try:
            existing = otp.verify_signup(session, clock=ctx.clock,
                                         secret=self_pages.member_secret(ctx),
                                         challenge_id=challenge, code=form.get("code"),
                                         phone_e164=form.get("phone"))
        except otp.CodeRefused as exc:
            session.commit()  # the failed attempt counts, whatever happens next
            if exc.code == "wrong_code":
                form.add("code", page.gettext(
                    N_("That code is not right. %(left)s attempts left."),
                    left=exc.attempts_left))
                return _render(page, session, form, step="details", status=422,
                               phone_shown=phone_shown)
            fresh = Form.initial({"ref": form.get("ref")}, PHONE_FIELDS)
            fresh.add(None, self_pages.otp_message(page, exc))
            return _render(page, session, fresh, status=422)
        except ValidationFailed:
            form.add("code", page.gettext(N_("Enter the 6-digit code from the SMS")))
            return _render(page, session, form, step="details", status=422,
                           phone_shown=phone_shown)
        if existing is not None:  # already a member: sign in, nobody's referral
            return self_pages.open_session(page, existing, done="already_member")
        try:
            with session.begin_nested():
                member = members.enroll_member(session, clock=ctx.clock, actor=None,
                                               region=ctx.settings.default_region,
                                               data=data_in, source="referral_link")
                if _referrer_name(session, form.get("ref")) is not None:
                    offers.attribute_referral(session, clock=ctx.clock, actor=None,
                                              new_member_id=member.id, code=form.get("ref"))
        except PatronError as exc:
            session.commit()  # the code is spent: the next try needs a new one
            fresh = Form.initial({"ref": form.get("ref")}, PHONE_FIELDS)
            fresh.add(None, translate_error(page, exc.message, exc.code))
            return _render(page, session, fresh, status=exc.status)
        return self_pages.open_session(page, member.id, done="joined")


__all__ = ["router"]
