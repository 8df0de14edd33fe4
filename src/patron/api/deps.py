"""Request-scoped dependencies: the app context, the database session and the caller.

Authentication: a POS terminal sends ``Authorization: Bearer pk_...`` (or ``X-API-Key``);
a person in the browser has the ``patron_session`` cookie, and then every unsafe method
must carry the session's CSRF token (``X-CSRF-Token`` header or ``csrf_token`` form field).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from patron.auth import service as auth
from patron.auth.principal import Principal
from patron.core.clock import Clock
from patron.core.db import Database
from patron.core.settings import Settings

SESSION_COOKIE = "patron_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class AppContext:
    settings: Settings
    db: Database
    clock: Clock


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


def get_session(request: Request, ctx: Ctx) -> Iterator[Session]:
    """One session per request; writes get ``BEGIN IMMEDIATE`` on SQLite.

    Handlers that change data call ``session.commit()`` themselves before returning, so a
    response is only sent for work that is durable; anything uncommitted is rolled back.
    """
    session = ctx.db.session(write=request.method not in SAFE_METHODS)
    try:
        yield session
    finally:
        session.rollback()
        session.close()


DbSession = Annotated[Session, Depends(get_session)]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-key")


def resolve_principal(request: Request, ctx: AppContext) -> Principal | None:
    """The caller, from an API key or a session cookie; None if neither is valid.

    Looked up in a short read transaction of its own, so that it never holds a lock while
    the request's work runs (value-moving calls open their own transactions).
    """
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    token = bearer_token(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    principal = None
    if token or cookie:
        with ctx.db.read() as session:
            if token:
                principal = auth.principal_for_api_key(session, clock=ctx.clock, token=token)
            elif cookie:
                principal = auth.principal_for_session(session, clock=ctx.clock, token=cookie)
    request.state.principal = principal
    return principal


async def _form_csrf(request: Request) -> str | None:
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get("csrf_token")
        return value if isinstance(value, str) else None
    return None


async def csrf_from_request(request: Request) -> str | None:
    return request.headers.get(CSRF_HEADER) or await _form_csrf(request)


def require_principal(request: Request, ctx: Ctx) -> Principal:
    principal = resolve_principal(request, ctx)
    if principal is None:
        raise HTTPException(401, "Sign in or send an API key (Authorization: Bearer pk_...)",
                            headers={"WWW-Authenticate": "Bearer"})
    return principal


async def check_csrf(request: Request) -> None:
    """Cookie-authenticated unsafe requests must echo the session's CSRF token."""
    if request.method in SAFE_METHODS or bearer_token(request):
        return
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None or principal.csrf_token is None:
        return
    sent = await csrf_from_request(request)
    if not sent or not hmac.compare_digest(sent, principal.csrf_token):
        raise HTTPException(403, "Missing or wrong CSRF token")


def current_principal(
    principal: Annotated[Principal, Depends(require_principal)],
    _csrf: Annotated[None, Depends(check_csrf)],
) -> Principal:
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def raw_body(request: Request) -> bytes:
    """The request body as sent (Starlette caches it, so the JSON body parser still works)."""
    return await request.body()


RawBody = Annotated[bytes, Depends(raw_body)]
