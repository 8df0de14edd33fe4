"""Sign in and out with a username and password (browser sessions for the API and web)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from patron.api.deps import SESSION_COOKIE, Ctx, CurrentPrincipal, DbSession
from patron.auth import service as auth
from patron.auth import throttle
from patron.auth.schemas import MeRead


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class LoginResult(BaseModel):
    csrf_token: str = Field(description="Send as X-CSRF-Token on every unsafe request")
    me: MeRead


router = APIRouter(prefix="/session", tags=["session"])


def set_session_cookie(response: Response, token: str, *, hours: int, secure: bool) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=hours * 3600, httponly=True,
                        samesite="lax", secure=secure, path="/")


@router.post("", operation_id="login")
def login(ctx: Ctx, session: DbSession, body: LoginRequest, request: Request,
          response: Response) -> LoginResult:
    """Sign in. Repeated failures lock the account (and a guessing address) for a while:
    429 with Retry-After."""
    address = request.client.host if request.client else "unknown"
    throttle.check(session, clock=ctx.clock, username=body.username, address=address)
    user = auth.authenticate(session, clock=ctx.clock, username=body.username,
                             password=body.password)
    throttle.record(session, clock=ctx.clock, username=body.username, address=address,
                    ok=user is not None)
    if user is None:
        session.commit()  # the failure counts even though the request fails
        raise HTTPException(401, "Wrong username or password")
    token, csrf = auth.start_session(session, clock=ctx.clock, user=user,
                                     hours=ctx.settings.session_hours)
    session.commit()
    set_session_cookie(response, token, hours=ctx.settings.session_hours,
                       secure=ctx.settings.cookie_secure)
    p = auth.principal_for_user(user, csrf_token=csrf)
    return LoginResult(csrf_token=csrf, me=MeRead(kind=p.kind, id=p.id, label=p.label,
                                                  role=p.role, store_ids=sorted(p.store_ids),
                                                  language=p.language))


@router.delete("", status_code=204, operation_id="logout")
def logout(request: Request, session: DbSession, _principal: CurrentPrincipal) -> Response:
    if cookie := request.cookies.get(SESSION_COOKIE):
        auth.end_session(session, token=cookie)
        session.commit()
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
