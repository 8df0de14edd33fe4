"""Per-request plumbing of the web admin: the database session, who is signed in, the
language, flash messages, and the CSRF check every form goes through.

The web admin authenticates by the ``patron_session`` cookie only (API keys are for POS
terminals and never open a page). A page that needs a person raises ``LoginRequired``,
which ``routing.WebRoute`` turns into a redirect to ``/login``.

CSRF: once signed in, every unsafe request must echo the session's token, in the hidden
``csrf_token`` field of a form or the ``X-CSRF-Token`` header htmx sends (set once with
``hx-headers`` on ``<body>``). Before signing in there is no session to tie a token to, so
the login form uses a double-submit token: a random nonce in a cookie and, in the form,
an HMAC of that nonce under the deployment's secret key. Another site can neither read
the cookie nor compute the HMAC, so it cannot forge a login (login CSRF).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

from babel.support import NullTranslations
from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.responses import Response

from patron.api.deps import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, AppContext, get_ctx
from patron.auth import service as auth
from patron.auth.principal import Principal
from patron.core.errors import NotFound, PatronError
from patron.members import service as members
from patron.web import i18n

R = TypeVar("R", bound=Response)

LOGIN_CSRF_COOKIE = "patron_login_csrf"
FLASH_COOKIE = "patron_flash"
CSRF_FIELD = "csrf_token"


class LoginRequired(Exception):
    """Raised by pages that need a signed-in person; becomes a redirect to /login."""


class CsrfRejected(Exception):
    """An unsafe request without the right CSRF token; becomes a 403 page."""


@dataclass
class CookieChange:
    """A cookie to set (or delete) on whatever response the page ends up sending."""

    name: str
    value: str | None  # None deletes the cookie
    max_age: int | None = None
    httponly: bool = True


@dataclass
class Page:
    """What every page needs to render: the caller, their language and their time zone.

    It holds no database session (routes take that separately), so an error page can be
    rendered from it even when the request's transaction has failed.
    """

    request: Request
    app: AppContext
    principal: Principal | None
    language: str
    tz: ZoneInfo
    flash: str | None = None
    cookies: list[CookieChange] = field(default_factory=list)
    _login_nonce: str | None = None

    @property
    def translations(self) -> NullTranslations:
        return i18n.translations(self.language)

    def gettext(self, message: str, **variables: Any) -> str:
        text = str(self.translations.gettext(message))
        return text % variables if variables else text

    @property
    def formatter(self) -> i18n.Formatter:
        settings = self.app.settings
        return i18n.Formatter(self.language, self.tz, settings.currency, settings.default_region)

    @property
    def is_htmx(self) -> bool:
        """An htmx swap (not a history restore), which gets a fragment instead of a page."""
        headers = self.request.headers
        return headers.get("HX-Request") == "true" and "HX-History-Restore-Request" not in headers

    @property
    def login_csrf_token(self) -> str:
        """The pre-session double-submit token, creating the nonce cookie on first use."""
        if self._login_nonce is None:
            self._login_nonce = self.request.cookies.get(LOGIN_CSRF_COOKIE) or ""
            if len(self._login_nonce) < 16:
                self._login_nonce = secrets.token_urlsafe(24)
                self.cookies.append(CookieChange(LOGIN_CSRF_COOKIE, self._login_nonce,
                                                 max_age=24 * 3600))
        return login_token_for(self.app, self._login_nonce)

    @property
    def csrf_token(self) -> str:
        """The token forms on this page carry: the session's, or before login the nonce's."""
        if self.principal is not None and self.principal.csrf_token:
            return self.principal.csrf_token
        return self.login_csrf_token

    def set_flash(self, key: str) -> None:
        """Show ``templating.FLASHES[key]`` on the next page rendered (after a redirect)."""
        self.cookies.append(CookieChange(FLASH_COOKIE, key, max_age=60))

    def apply_cookies(self, response: R) -> R:
        secure = self.app.settings.cookie_secure
        for change in self.cookies:
            if change.value is None:
                response.delete_cookie(change.name, path="/", secure=secure,
                                       httponly=change.httponly, samesite="lax")
            else:
                response.set_cookie(change.name, change.value, max_age=change.max_age,
                                    path="/", secure=secure, httponly=change.httponly,
                                    samesite="lax")
        return response


def login_token_for(app: AppContext, nonce: str) -> str:
    """The login form's token for a nonce: HMAC-SHA256 under the deployment secret."""
    key = app.settings.secret_key.get_secret_value().encode()
    return hmac.new(key, b"login-csrf:" + nonce.encode(), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------- dependencies


def web_session(request: Request, ctx: Annotated[AppContext, Depends(get_ctx)]
                ) -> Iterator[Session]:
    """One session per request (writes take the SQLite write lock at BEGIN).

    The route is the transaction boundary: it commits when its work succeeded. Whatever is
    left uncommitted (a form that failed validation, an error) is rolled back here.
    """
    session = ctx.db.session(write=request.method not in SAFE_METHODS)
    try:
        yield session
    finally:
        session.rollback()
        session.close()


Db = Annotated[Session, Depends(web_session)]


def _viewer_timezone(session: Session, app: AppContext, principal: Principal | None) -> ZoneInfo:
    """Times are shown in the viewer's store's zone; owners use the deployment default."""
    name = app.settings.default_timezone
    if principal is not None and principal.default_store_id is not None:
        with contextlib.suppress(NotFound):
            name = members.get_store(session, store_id=principal.default_store_id).timezone
    return ZoneInfo(name)


def current_page(request: Request, ctx: Annotated[AppContext, Depends(get_ctx)]) -> Page:
    """Resolve the session cookie (if any), the language and the time zone.

    This runs in a short read transaction of its own, so a form post takes the database's
    write lock only when its own work starts, as the API does.
    """
    principal = None
    with ctx.db.read() as session:
        if token := request.cookies.get(SESSION_COOKIE):
            principal = auth.principal_for_session(session, clock=ctx.clock, token=token)
        tz = _viewer_timezone(session, ctx, principal)
    language = i18n.choose_language(
        user_language=principal.language if principal else None,
        cookie=request.cookies.get(i18n.LANG_COOKIE),
        default=ctx.settings.default_language,
    )
    page = Page(request=request, app=ctx, principal=principal, language=language, tz=tz)
    if not page.is_htmx and (flash := request.cookies.get(FLASH_COOKIE)):
        page.flash = flash  # shown once, on the next full page
        page.cookies.append(CookieChange(FLASH_COOKIE, None))
    request.state.web_page = page
    return page


AnyPage = Annotated[Page, Depends(current_page)]


def signed_in_page(page: AnyPage) -> Page:
    if page.principal is None:
        raise LoginRequired
    return page


SignedInPage = Annotated[Page, Depends(signed_in_page)]


def principal_of(page: Page) -> Principal:
    """The signed-in principal of a page that went through ``signed_in_page``."""
    if page.principal is None:  # pragma: no cover - guarded by the dependency
        raise LoginRequired
    return page.principal


#: Room for the other fields of a form next to an upload of ``max_upload_bytes``.
FORM_OVERHEAD_BYTES = 64 * 1024


async def _read_form(request: Request, page: Page) -> FormData:
    """Parse the posted form; a body larger than the upload limit is refused unread."""
    length = request.headers.get("content-length", "")
    limit = page.app.settings.max_upload_bytes + FORM_OVERHEAD_BYTES
    if length.isdigit() and int(length) > limit:
        raise PatronError("The file is too large", "file", code="payload_too_large", status=413)
    return await request.form(max_part_size=1024 * 1024, max_files=4)


def _check_token(sent: object, expected: str) -> None:
    if not isinstance(sent, str) or not sent or not hmac.compare_digest(sent, expected):
        raise CsrfRejected


async def signed_in_form(request: Request, page: SignedInPage) -> FormData:
    """The posted form of a signed-in person, after checking the session's CSRF token."""
    form = await _read_form(request, page)
    _check_token(request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD), page.csrf_token)
    return form


async def any_form(request: Request, page: AnyPage) -> FormData:
    """A form that also works signed out (the language switcher): either token kind."""
    form = await _read_form(request, page)
    _check_token(request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD), page.csrf_token)
    return form


async def login_form(request: Request, page: AnyPage) -> FormData:
    """The login form: always the pre-session double-submit token, never a session's."""
    form = await _read_form(request, page)
    nonce = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    if len(nonce) < 16:
        raise CsrfRejected
    _check_token(form.get(CSRF_FIELD), login_token_for(page.app, nonce))
    return form


PostedForm = Annotated[FormData, Depends(signed_in_form)]
AnyForm = Annotated[FormData, Depends(any_form)]
LoginForm = Annotated[FormData, Depends(login_form)]
