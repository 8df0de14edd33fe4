"""The pages members reach themselves: their membership page, signing in to it by phone,
unsubscribing from a message's link, and answering a survey.

None of these has a staff login. What identifies the member:

* ``/m/{token}``: the signed self-service link in every message (``care.service
  .member_token``). A valid link opens a member session (an HMAC-signed cookie holding
  the member and an expiry) and redirects to ``/m``, so the token does not linger in the
  address bar or in a Referer.
* ``/m/login``: the phone number and a one-time code sent by SMS (``members.otp``: codes
  hashed at rest, 10 minutes, 5 attempts, rate limited per phone and per address). The
  answer is the same whether or not the number belongs to a member.
* ``/u/{token}`` and ``/s/{token}``: the token of the unsubscribe link or the survey
  invitation, and nothing else. ``POST /u/{token}`` with the body
  ``List-Unsubscribe=One-Click`` is RFC 8058's one-click unsubscribe of mail clients: it
  needs no CSRF token, as the link's token is the authentication (a GET never
  unsubscribes, since mail scanners follow links).

CSRF: forms before a member session carry the double-submit token the staff login uses
(a nonce cookie and its HMAC); forms of a signed-in member carry an HMAC of their session
cookie. Consent changed here is recorded with source ``self_service`` (the evidence on the
member's profile), and data requests go to ``data_requests`` (and the audit log) for staff
to handle.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from markupsafe import Markup
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, RedirectResponse, Response

from patron.api.deps import AppContext, get_ctx
from patron.care.service import member_token
from patron.core.errors import Conflict, NotFound, PatronError, ValidationFailed
from patron.feedback import service as feedback
from patron.feedback.enums import SurveyStatus
from patron.loyalty import service as loyalty
from patron.members import otp, privacy
from patron.members import rules as member_rules
from patron.members import service as members
from patron.members.enums import Channel, MemberStatus
from patron.members.models import Member
from patron.messaging import service as messaging
from patron.messaging import templates as message_templates
from patron.offers import service as offers
from patron.offers.enums import CouponKind, CouponStatus
from patron.sales import service as sales
from patron.wallet import service as wallet
from patron.web import i18n, qr
from patron.web.deps import LOGIN_CSRF_COOKIE, CookieChange, Page, login_token_for
from patron.web.forms import Form, translate_error
from patron.web.i18n import N_
from patron.web.routing import web_router
from patron.web.templating import LABELS, render

router = web_router()

#: How the staff's consent history names a change a member made on their own page.
LABELS.setdefault("self_service", N_("Member page"))

MEMBER_COOKIE = "patron_member"
SESSION_DAYS = 30
MAX_FORM_BYTES = 64 * 1024
HISTORY_SIZE = 10
DATA_REQUEST_ACTIONS = {k.value: action for k, action in privacy.REQUEST_ACTIONS.items()}
DATA_REQUEST_DAYS = 30  # what the page promises; also how long a request shows as pending
CONSENT_SOURCE = "self_service"

#: One-line notices after a redirect (the query's ``done``), in the page's language.
NOTICES = {
    "consent": N_("Your choice is saved."),
    "unsubscribed": N_("You will no longer receive offers from us."),
    "export": N_("We received your request for a copy of your data."),
    "erasure": N_("We received your request to erase your data."),
    "signed_out": N_("You have signed out."),
    "joined": N_("Welcome! You are a member now."),
    "already_member": N_("You are already a member: here is your page."),
}
LOGIN_FIELDS = ("phone", "code")
SURVEY_FIELDS = ("csat", "nps", "comment")
OTP_MESSAGES = {
    "rate_limited": N_("Too many codes were asked for. Please try again later."),
    "resend_too_soon": N_("A code was just sent. Wait a minute before asking for another."),
    "code_expired": N_("This code has expired. Ask for a new one."),
    "code_used": N_("This code is no longer valid. Ask for a new one."),
    "too_many_attempts": N_("Too many wrong codes. Ask for a new one."),
    "wrong_code": N_("That code is not right."),
}


# ---------------------------------------------------------------- tokens and the session


def member_secret(ctx: AppContext) -> str:
    return ctx.settings.secret_key.get_secret_value()


def _mac(secret: str, purpose: str, payload: str) -> str:
    return hmac.new(secret.encode(), f"{purpose}:{payload}".encode(),
                    hashlib.sha256).hexdigest()[:32]


def read_member_token(secret: str, token: str) -> uuid.UUID | None:
    """The member of a self-service link's token, or None for a forged or damaged one."""
    member_hex, _, mac = token.partition(".")
    try:
        member_id = uuid.UUID(hex=member_hex)
    except ValueError:
        return None
    if not mac or not hmac.compare_digest(member_token(secret, member_id), token):
        return None
    return member_id


def _live_member(session: Session, member_id: uuid.UUID) -> Member | None:
    """The active member behind ``member_id``; a merged record leads to its survivor."""
    try:
        member = members.get_member(session, member_id=member_id)
    except NotFound:
        return None
    hops = 0
    while member.merged_into_id is not None and hops < 10:
        member = members.get_member(session, member_id=member.merged_into_id)
        hops += 1
    return member if member.status == MemberStatus.ACTIVE.value else None


def member_from_token(session: Session, page: Page, text: str) -> Member | None:
    """For the till's scanner: the member of a scanned self-service link or bare token."""
    text = text.strip()
    if "/m/" in text:
        text = text.rsplit("/m/", 1)[1]
    text = text.split("?", 1)[0].split("#", 1)[0].strip("/")
    if "." not in text:
        return None
    member_id = read_member_token(member_secret(page.app), text)
    return _live_member(session, member_id) if member_id else None


def session_cookie(secret: str, member_id: uuid.UUID, expires: int) -> str:
    """The member session cookie: member and expiry (Unix seconds), signed."""
    payload = f"{member_id.hex}.{expires}"
    return f"{payload}.{_mac(secret, 'member-session', payload)}"


def read_session_cookie(secret: str, value: str, now: datetime) -> uuid.UUID | None:
    parts = value.split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    payload = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(_mac(secret, "member-session", payload), parts[2]):
        return None
    if int(parts[1]) <= now.timestamp():
        return None
    try:
        return uuid.UUID(hex=parts[0])
    except ValueError:
        return None


def member_csrf(secret: str, cookie: str) -> str:
    """The CSRF token of a member's forms: bound to their session cookie."""
    return _mac(secret, "member-csrf", cookie)


# ---------------------------------------------------------------- the page context


def public_page(request: Request, ctx: Annotated[AppContext, Depends(get_ctx)]) -> Page:
    """A page for a member or a stranger: no staff principal, the switcher's language."""
    language = i18n.choose_language(user_language=None,
                                    cookie=request.cookies.get(i18n.LANG_COOKIE),
                                    default=ctx.settings.default_language)
    page = Page(request=request, app=ctx, principal=None, language=language,
                tz=ZoneInfo(ctx.settings.default_timezone))
    request.state.web_page = page
    return page


PublicPage = Annotated[Page, Depends(public_page)]


def _for_member(page: Page, session: Session, member: Member) -> None:
    """Speak the member's language (unless they chose one here) and use their store's zone."""
    if i18n.LANG_COOKIE not in page.request.cookies and member.language:
        page.language = i18n.choose_language(user_language=member.language, cookie=None,
                                             default=page.app.settings.default_language)
    with contextlib.suppress(NotFound, ValueError):
        page.tz = ZoneInfo(members.get_store(session, store_id=member.home_store_id).timezone)


def _notice(page: Page) -> str | None:
    key = page.request.query_params.get("done", "")
    return page.gettext(NOTICES[key]) if key in NOTICES else None


def _problem(page: Page, status: int, title: str, message: str) -> HTMLResponse:
    """A dead end for a member: a plain page in their language, no admin around it."""
    return render(page, "self/message.html", status=status, title=page.gettext(title),
                  message=page.gettext(message), notice=None)


async def read_form(request: Request) -> FormData | None:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_FORM_BYTES:
        return None
    return await request.form(max_files=0, max_part_size=MAX_FORM_BYTES)


def pre_session_token_ok(page: Page, data: FormData) -> bool:
    """The double-submit check of forms shown before a member session exists."""
    nonce = page.request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    sent = data.get("csrf_token")
    return (len(nonce) >= 16 and isinstance(sent, str) and bool(sent)
            and hmac.compare_digest(sent, login_token_for(page.app, nonce)))


def forbidden(page: Page) -> HTMLResponse:
    return _problem(page, 403, N_("This form has expired"),
                    N_("Reload the page and try again."))


# ---------------------------------------------------------------- signing in


@dataclass
class MemberSession:
    member_id: uuid.UUID
    cookie: str


def _member_session(page: Page) -> MemberSession | None:
    cookie = page.request.cookies.get(MEMBER_COOKIE) or ""
    member_id = read_session_cookie(member_secret(page.app), cookie, page.app.clock.now())
    return MemberSession(member_id, cookie) if member_id else None


def open_session(page: Page, member_id: uuid.UUID, *, done: str | None = None) -> Response:
    """Sign the member in and go to their page (``done`` names a notice to show there)."""
    expires = int(page.app.clock.now().timestamp()) + SESSION_DAYS * 24 * 3600
    value = session_cookie(member_secret(page.app), member_id, expires)
    page.cookies.append(CookieChange(MEMBER_COOKIE, value, max_age=SESSION_DAYS * 24 * 3600))
    page.cookies.append(CookieChange(LOGIN_CSRF_COOKIE, None))
    target = f"/m?done={done}" if done in NOTICES else "/m"
    return page.apply_cookies(RedirectResponse(target, status_code=303))


def _render_login(page: Page, form: Form, *, step: str = "phone", status: int = 200,
                  challenge: str = "", phone_shown: str = "") -> HTMLResponse:
    return render(page, "self/login.html", status=status, form=form, step=step,
                  challenge=challenge, phone_shown=phone_shown, notice=_notice(page),
                  code_minutes=int(otp.CODE_TTL.total_seconds() // 60))


@router.get("/m/login")
def login_page(page: PublicPage) -> Response:
    """Sign in with the phone number and a code sent by SMS."""
    if _member_session(page) is not None:
        return RedirectResponse("/m", status_code=303)
    return _render_login(page, Form(fields=frozenset(LOGIN_FIELDS)))


def send_code(session: Session, page: Page, issued: otp.Issued, *,
              signing_up: bool = False) -> None:
    """Queue the code by SMS (transactional: it needs no marketing consent).

    Signing in, only a member's number gets one; ``signing_up`` (the /join page), any
    number does, so that its holder can prove it before being enrolled.
    """
    member = issued.member
    if member is None and not signing_up:
        return
    settings = page.app.settings
    store = (members.get_store(session, store_id=member.home_store_id) if member is not None
             else members.list_stores(session)[0])
    context = message_templates.MessageContext(
        member=message_templates.MemberView(name=member.name if member else "",
                                            card_no=member.card_no if member else ""),
        store=message_templates.StoreView(name=store.name, phone=store.phone or "",
                                          address=store.address, timezone=store.timezone),
        brand=message_templates.BrandView(name=settings.brand_name, currency=settings.currency),
        links=message_templates.Links(self_service=f"{settings.public_url.rstrip('/')}/m/login"),
        otp=message_templates.OtpView(code=issued.code,
                                      minutes=int(otp.CODE_TTL.total_seconds() // 60)))
    rendered = message_templates.render(
        "otp", language=page.language, context=context,
        default_language=message_templates.normalise_language(settings.default_language))
    messaging.enqueue(session, clock=page.app.clock, messages=[messaging.Outgoing(
        dedupe_key=f"otp:{issued.challenge_id.hex}", channel="sms", purpose="transactional",
        template="otp", language=rendered.language, recipient=issued.phone_e164,
        body=rendered.sms_text, segments=rendered.segments,
        member_id=member.id if member else None,
        store_id=store.id, payload={"sms_params": rendered.sms_params,
                                    "requires_consent": False})])


def otp_message(page: Page, exc: PatronError) -> str:
    if exc.code in OTP_MESSAGES:
        return page.gettext(OTP_MESSAGES[exc.code])
    return translate_error(page, exc.message, exc.code)


@router.post("/m/login")
async def request_code(request: Request, page: PublicPage) -> Response:
    """Send a code to the phone if it is a member's; the answer is the same either way."""
    data = await read_form(request)
    if data is None or not pre_session_token_ok(page, data):
        return forbidden(page)
    form = Form.posted(data, LOGIN_FIELDS)
    ctx = page.app
    client = request.client.host if request.client else "-"
    with ctx.db.write() as session:
        try:
            issued = otp.issue(session, clock=ctx.clock, secret=member_secret(ctx),
                               region=ctx.settings.default_region, phone=form.get("phone"),
                               client=client)
        except ValidationFailed as exc:
            session.rollback()
            form.add("phone", translate_error(page, exc.message, exc.code))
            return _render_login(page, form, status=422)
        except otp.TooManyRequests as exc:
            session.rollback()
            form.add("phone", otp_message(page, exc))
            return _render_login(page, form, status=429)
        send_code(session, page, issued)
    return _render_login(page, Form(fields=frozenset(LOGIN_FIELDS)), step="code",
                         challenge=str(issued.challenge_id),
                         phone_shown=member_rules.mask_phone(issued.phone_e164) or "")


@router.post("/m/login/code")
async def check_code(request: Request, page: PublicPage) -> Response:
    """The code from the SMS: right, it opens the member session; wrong, one attempt less."""
    data = await read_form(request)
    if data is None or not pre_session_token_ok(page, data):
        return forbidden(page)
    form = Form.posted(data, LOGIN_FIELDS)
    ctx = page.app
    try:
        challenge = uuid.UUID(form.get("challenge"))
    except ValueError:
        return _render_login(page, form, status=422)
    with ctx.db.write() as session:
        try:
            member_id = otp.verify(session, clock=ctx.clock, secret=member_secret(ctx),
                                   challenge_id=challenge, code=form.get("code"))
        except otp.CodeRefused as exc:
            session.commit()  # the failed attempt counts, whatever happens next
            if exc.code == "wrong_code":
                form.add("code", page.gettext(
                    N_("That code is not right. %(left)s attempts left."),
                    left=exc.attempts_left))
                return _render_login(page, form, step="code", status=422,
                                     challenge=str(challenge))
            fresh = Form(fields=frozenset(LOGIN_FIELDS))
            fresh.add(None, otp_message(page, exc))  # this code is dead: ask for another
            return _render_login(page, fresh, status=422)
        except ValidationFailed:
            form.add("code", page.gettext(N_("Enter the 6-digit code from the SMS")))
            return _render_login(page, form, step="code", status=422,
                                 challenge=str(challenge))
    return open_session(page, member_id)


@router.post("/m/logout")
async def logout(request: Request, page: PublicPage) -> Response:
    data = await read_form(request)
    signed = _member_session(page)
    if data is None or signed is None or not _member_token_ok(page, signed, data):
        return forbidden(page)
    page.cookies.append(CookieChange(MEMBER_COOKIE, None))
    return page.apply_cookies(RedirectResponse("/m/login?done=signed_out", status_code=303))


def _member_token_ok(page: Page, signed: MemberSession, data: FormData) -> bool:
    sent = data.get("csrf_token")
    return isinstance(sent, str) and bool(sent) and hmac.compare_digest(
        sent, member_csrf(member_secret(page.app), signed.cookie))


# ---------------------------------------------------------------- the member page


def coupon_terms(page: Page, view: offers.CouponView) -> str:
    """What a coupon is worth, as a customer reads it: "¥10.00 off, on ¥100.00 or more"."""
    template = view.template
    fmt = page.formatter
    if template.kind == CouponKind.PERCENT.value and template.percent:
        text = page.gettext(N_("%(amount)s off"), amount=f"{template.percent}%")
    else:
        text = page.gettext(N_("%(amount)s off"), amount=fmt.money(template.amount_minor or 0))
    if template.min_spend_minor:
        text += page.gettext(N_(", on %(amount)s or more"),
                             amount=fmt.money(template.min_spend_minor))
    return text


def _data_requests(session: Session, member_id: uuid.UUID, now: datetime
                   ) -> dict[str, datetime]:
    """Requests still pending or made in the last 30 days, by kind: when each was received."""
    return privacy.recent_requests(session, member_id=member_id,
                                   since=now - timedelta(days=DATA_REQUEST_DAYS))


def _dashboard(page: Page, session: Session, member: Member, signed: MemberSession
               ) -> HTMLResponse:
    clock = page.app.clock
    now = clock.now()
    points = loyalty.balance(session, clock=clock, member_id=member.id)
    current, nxt, value = loyalty.tier_progress(session, clock=clock, member_id=member.id)
    program = loyalty.get_program(session, clock=clock)
    usable = [c for c in offers.list_member_coupons(session, member_id=member.id,
                                                    status=CouponStatus.ISSUED)
              if offers.is_usable(c, now=now)]
    coupons = [(view, coupon_terms(page, view)) for view in offers.describe(session,
                                                                              coupons=usable)]
    store_names = {s.id: s.name for s in members.list_stores(session, include_inactive=True)}
    progress = 100
    if nxt is not None and nxt.threshold > 0:
        progress = max(0, min(100, value * 100 // nxt.threshold))
    code = qr.encode(member.card_no)
    context: dict[str, Any] = {
        "member": member, "points": points,
        "expiring": loyalty.expiring_soon(session, clock=clock, member_id=member.id),
        "wallet_minor": wallet.balance(session, member_id=member.id).total_minor,
        "coupons": coupons, "tier": current, "next_tier": nxt,
        "tier_remaining": max(0, nxt.threshold - value) if nxt else 0,
        "tier_basis": program.tier_basis, "progress": progress,
        "sales": sales.member_sales(session, member_id=member.id, limit=HISTORY_SIZE),
        "store_names": store_names,
        "qr_svg": Markup(qr.svg(code, module_px=5, title=member.card_no)),  # noqa: S704 - drawn by qr.svg from digits, title escaped
        "member_csrf": member_csrf(member_secret(page.app), signed.cookie),
        "requests": _data_requests(session, member.id, now),
        "request_days": DATA_REQUEST_DAYS, "notice": _notice(page),
    }
    return render(page, "self/member.html", **context)


def _signed_in(page: Page, session: Session) -> tuple[MemberSession, Member] | None:
    signed = _member_session(page)
    if signed is None:
        return None
    member = _live_member(session, signed.member_id)
    if member is None:
        return None
    _for_member(page, session, member)
    return signed, member


@router.get("/m")
def member_page(page: PublicPage) -> Response:
    """The member's own page: card, points, stored value, coupons, tier, history, choices."""
    with page.app.db.read() as session:
        found = _signed_in(page, session)
        if found is None:
            page.cookies.append(CookieChange(MEMBER_COOKIE, None))
            return page.apply_cookies(RedirectResponse("/m/login", status_code=303))
        signed, member = found
        return _dashboard(page, session, member, signed)


@router.post("/m/consent")
async def change_consent(request: Request, page: PublicPage) -> Response:
    """Switch offers by SMS or e-mail on or off (or both off: ``channel=all``)."""
    data = await read_form(request)
    signed = _member_session(page)
    if data is None or signed is None or not _member_token_ok(page, signed, data):
        return forbidden(page)
    form = Form.posted(data, ("channel", "granted"))
    wanted = form.get("channel")
    channels = [Channel.SMS, Channel.EMAIL] if wanted == "all" else \
        [c for c in Channel if c.value == wanted]
    if not channels:
        return _problem(page, 422, N_("Something is wrong with this request"),
                        N_("Choose one of the options"))
    granted = form.get("granted") == "1" and wanted != "all"
    ctx = page.app
    with ctx.db.write() as session:
        member = _live_member(session, signed.member_id)
        if member is None:
            return RedirectResponse("/m/login", status_code=303)
        for channel in channels:
            members.change_consent(session, clock=ctx.clock, actor=None, member_id=member.id,
                                   channel=channel, granted=granted, source=CONSENT_SOURCE,
                                   note="member page")
            if not granted:
                messaging.suppress_queued_for(session, clock=ctx.clock, member_id=member.id,
                                              channel=channel.value)
    done = "unsubscribed" if wanted == "all" else "consent"
    return RedirectResponse(f"/m?done={done}#choices", status_code=303)


@router.post("/m/data-request")
async def data_request(request: Request, page: PublicPage) -> Response:
    """Record a request for a copy of the member's data, or for its erasure, for staff.

    Staff fulfil it (``members.privacy``: the export, or the erasure by an owner); the page
    promises an answer within 30 days. A second request within those days is not recorded
    again.
    """
    data = await read_form(request)
    signed = _member_session(page)
    if data is None or signed is None or not _member_token_ok(page, signed, data):
        return forbidden(page)
    kind = str(data.get("kind") or "")
    if kind not in DATA_REQUEST_ACTIONS:
        return _problem(page, 422, N_("Something is wrong with this request"),
                        N_("Choose one of the options"))
    ctx = page.app
    with ctx.db.write() as session:
        member = _live_member(session, signed.member_id)
        if member is None:
            return RedirectResponse("/m/login", status_code=303)
        if kind not in _data_requests(session, member.id, ctx.clock.now()):
            privacy.request_data(session, clock=ctx.clock, actor=None, member_id=member.id,
                                 kind=privacy.RequestKind(kind), source=CONSENT_SOURCE,
                                 details={"language": page.language})
    return RedirectResponse(f"/m?done={kind}#data", status_code=303)


@router.get("/m/{token}")
def open_link(page: PublicPage, token: str) -> Response:
    """The signed link from a message: open the member's session and go to their page."""
    member_id = read_member_token(member_secret(page.app), token[:200])
    if member_id is None:
        return _problem(page, 404, N_("This link is not valid"),
                        N_("Check that you opened the whole link from our message, or sign "
                           "in with your phone number."))
    with page.app.db.read() as session:
        member = _live_member(session, member_id)
        if member is None:
            return _problem(page, 404, N_("This membership is closed"),
                            N_("Ask any of our stores if you think this is a mistake."))
        return open_session(page, member.id)


# ---------------------------------------------------------------- unsubscribe


def _unsubscribe_target(page: Page, session: Session, token: str
                        ) -> tuple[Member, Channel] | None:
    try:
        member_id, channel = messaging.read_unsubscribe_token(member_secret(page.app), token[:200])
    except ValidationFailed:
        return None
    member = _live_member(session, member_id)
    return (member, channel) if member else None


def _invalid_unsubscribe(page: Page) -> HTMLResponse:
    return _problem(page, 404, N_("This unsubscribe link is not valid"),
                    N_("Check that you opened the whole link from our message. You can also "
                       "reply STOP to any of our text messages."))


@router.get("/u/{token}")
def unsubscribe_page(page: PublicPage, token: str) -> Response:
    """Ask before unsubscribing: a link checker or mail scanner may open the link."""
    with page.app.db.read() as session:
        target = _unsubscribe_target(page, session, token)
        if target is None:
            return _invalid_unsubscribe(page)
        member, channel = target
        _for_member(page, session, member)
        already = not getattr(member, f"{channel.value}_consent")
        return render(page, "self/unsubscribe.html", channel=channel.value, done=already,
                      token=token, member_link=None, notice=None)


@router.post("/u/{token}")
async def unsubscribe(request: Request, page: PublicPage, token: str) -> Response:
    """Withdraw the link's channel; also RFC 8058 one-click (``List-Unsubscribe=One-Click``)."""
    data = await read_form(request)
    if data is None:
        return _invalid_unsubscribe(page)
    one_click = data.get("List-Unsubscribe") == "One-Click"
    if not one_click and not pre_session_token_ok(page, data):
        return forbidden(page)
    ctx = page.app
    with ctx.db.write() as session:
        target = _unsubscribe_target(page, session, token)
        if target is None:
            return _invalid_unsubscribe(page)
        member, channel = target
        members.change_consent(session, clock=ctx.clock, actor=None, member_id=member.id,
                               channel=channel, granted=False, source="link",
                               note="one-click unsubscribe" if one_click
                               else "unsubscribe link")
        messaging.suppress_queued_for(session, clock=ctx.clock, member_id=member.id,
                                      channel=channel.value)
        _for_member(page, session, member)
        link = f"/m/{member_token(member_secret(ctx), member.id)}"
    return render(page, "self/unsubscribe.html", channel=channel.value, done=True,
                  token=token, member_link=link, notice=None)


# ---------------------------------------------------------------- surveys


def _render_survey(page: Page, session: Session, invitation: Any, form: Form, *,
                   state: str, status: int = 200) -> HTMLResponse:
    store = feedback.store_of(session, invitation=invitation)
    return render(page, "self/survey.html", status=status, form=form, state=state,
                  store=store, token=invitation.token, notice=None)


@router.get("/s/{token}")
def survey_page(page: PublicPage, token: str) -> Response:
    """The CSAT / NPS questions, or the thank-you, "already answered" or "closed" page."""
    with page.app.db.read() as session:
        try:
            invitation = feedback.get_invitation(session, token=token[:64])
        except NotFound:
            return _problem(page, 404, N_("This survey link is not valid"),
                            N_("Check that you opened the whole link from our message."))
        member = _live_member(session, invitation.member_id)
        if member is not None:
            _for_member(page, session, member)
        status = feedback.survey_status(session, clock=page.app.clock, invitation=invitation)
        state = {SurveyStatus.ANSWERED: "answered", SurveyStatus.EXPIRED: "expired"}.get(
            status, "open")
        if state == "answered" and page.request.query_params.get("thanks") == "1":
            state = "thanks"
        return _render_survey(page, session, invitation,
                              Form(fields=frozenset(SURVEY_FIELDS)), state=state)


def _score(page: Page, form: Form, name: str, low: int, high: int) -> int | None:
    raw = form.get(name)
    if not raw:
        return None
    if not raw.isdigit() or not low <= int(raw) <= high:
        form.add(name, page.gettext(N_("Choose one of the options")))
        return None
    return int(raw)


@router.post("/s/{token}")
async def answer_survey(request: Request, page: PublicPage, token: str) -> Response:
    data = await read_form(request)
    if data is None or not pre_session_token_ok(page, data):
        return forbidden(page)
    form = Form.posted(data, SURVEY_FIELDS)
    ctx = page.app
    with ctx.db.write() as session:
        try:
            invitation = feedback.get_invitation(session, token=token[:64])
        except NotFound:
            return _problem(page, 404, N_("This survey link is not valid"),
                            N_("Check that you opened the whole link from our message."))
        member = _live_member(session, invitation.member_id)
        if member is not None:
            _for_member(page, session, member)
        csat = _score(page, form, "csat", 1, 5)
        nps = _score(page, form, "nps", 0, 10)
        if form.ok:
            try:
                feedback.answer(session, clock=ctx.clock, token=invitation.token, csat=csat,
                                nps=nps, comment=form.get("comment")[:2000])
            except Conflict as exc:
                session.rollback()
                state = "answered" if exc.code == "already_answered" else "expired"
                return _render_survey(page, session, invitation, form, state=state,
                                      status=409)
            except ValidationFailed as exc:
                session.rollback()
                if exc.field == "csat" and exc.code == "required":
                    form.add("csat", page.gettext(N_("Answer at least one question")))
                else:
                    form.add_patron_error(page, exc)
        if not form.ok:
            session.rollback()
            return _render_survey(page, session, invitation, form, state="open", status=422)
    return RedirectResponse(f"/s/{token}?thanks=1", status_code=303)
