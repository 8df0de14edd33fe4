"""Signing in and out, and the language switcher (the dashboard is ``pages.dashboard``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request
from starlette.responses import RedirectResponse, Response

from patron.api.deps import SESSION_COOKIE
from patron.api.routers.session import set_session_cookie
from patron.auth import service as auth
from patron.auth import throttle
from patron.auth.service import LANGUAGES
from patron.core.errors import PermissionDenied, TooManyAttempts
from patron.web import i18n
from patron.web.deps import (
    LOGIN_CSRF_COOKIE,
    AnyForm,
    AnyPage,
    CookieChange,
    Db,
    LoginForm,
    PostedForm,
    SignedInPage,
)
from patron.web.forms import Form
from patron.web.i18n import N_
from patron.web.routing import safe_next, web_router
from patron.web.templating import redirect, render

router = web_router()

LOGIN_FIELDS = ("username", "password")
LANG_COOKIE_MAX_AGE = 365 * 24 * 3600


@router.get("/login")
def login_page(page: AnyPage,
               target: Annotated[str | None, Query(alias="next", max_length=2000)] = None
               ) -> Response:
    """The sign-in form; ``next`` is where to go afterwards (a local path only)."""
    if page.principal is not None:
        return RedirectResponse(safe_next(target), status_code=303)
    return render(page, "login.html", form=Form(fields=frozenset(LOGIN_FIELDS)),
                  next=safe_next(target))


@router.post("/login")
def login(page: AnyPage, session: Db, data: LoginForm) -> Response:
    """Check the password, open a session row, set the httponly session cookie."""
    form = Form.posted(data, LOGIN_FIELDS)
    target = safe_next(form.get("next"))
    username, password = form.get("username"), form.values.get("password", "")
    user = None
    address = page.request.client.host if page.request.client else "unknown"
    if username and password:
        try:
            throttle.check(session, clock=page.app.clock, username=username, address=address)
        except TooManyAttempts:
            form.values.pop("password", None)
            form.add(None, page.gettext(N_("Too many failed sign-ins. Wait 15 minutes and "
                                           "try again.")))
            return render(page, "login.html", status=429, form=form, next=target)
        user = auth.authenticate(session, clock=page.app.clock, username=username,
                                 password=password)
        throttle.record(session, clock=page.app.clock, username=username, address=address,
                        ok=user is not None)
        session.commit()
    if user is None:
        form.values.pop("password", None)
        form.add(None, page.gettext(N_("Wrong username or password.")))
        return render(page, "login.html", status=422, form=form, next=target)
    settings = page.app.settings
    token, _csrf = auth.start_session(session, clock=page.app.clock, user=user,
                                      hours=settings.session_hours)
    session.commit()
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, token, hours=settings.session_hours,
                       secure=settings.cookie_secure)
    page.cookies.append(CookieChange(LOGIN_CSRF_COOKIE, None))
    return page.apply_cookies(response)


@router.post("/logout")
def logout(request: Request, page: SignedInPage, session: Db, _data: PostedForm) -> Response:
    if token := request.cookies.get(SESSION_COOKIE):
        auth.end_session(session, token=token)
        session.commit()
    page.cookies.append(CookieChange(SESSION_COOKIE, None))
    return redirect(page, "/login", flash="signed_out")


@router.post("/language")
def change_language(page: AnyPage, session: Db, data: AnyForm) -> Response:
    """Remember the choice in a cookie and, for a signed-in person, on their account.

    Cashiers may not edit accounts (``auth.update_user`` needs a manager), so for them the
    cookie alone carries the choice.
    """
    form = Form.posted(data, ("lang",))
    language = form.get("lang")
    target = safe_next(form.get("next"))
    if language not in LANGUAGES:
        return redirect(page, target)
    page.cookies.append(CookieChange(i18n.LANG_COOKIE, language, max_age=LANG_COOKIE_MAX_AGE,
                                     httponly=False))
    if page.principal is not None and page.principal.user_id is not None:
        try:
            auth.update_user(session, clock=page.app.clock, actor=page.principal,
                             user_id=page.principal.user_id, language=language)
            session.commit()
        except PermissionDenied:
            session.rollback()
    return redirect(page, target)

