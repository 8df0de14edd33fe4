"""The route class of every web page: domain errors and auth signals become HTML.

The JSON API maps ``PatronError`` to problem+json once (``api/problems.py``); the web does
the same once here, as a page: a 403 for a role that may not look, a 404 for an unknown
id. ``LoginRequired`` becomes a redirect to ``/login`` (``HX-Redirect`` for htmx swaps, so
an expired session never lands a login page inside a results table), and a missing or
wrong CSRF token a 403 page. Forms catch their own errors first, to show them in place.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from starlette.responses import RedirectResponse, Response

from patron.core.errors import PatronError
from patron.web import i18n
from patron.web.deps import CsrfRejected, LoginRequired, Page
from patron.web.forms import translate_error
from patron.web.i18n import N_
from patron.web.templating import render

Handler = Callable[[Request], Coroutine[Any, Any, Response]]

ERROR_TITLES = {
    400: N_("Something is wrong with this request"),
    403: N_("You don't have access to this page"),
    404: N_("Page not found"),
    409: N_("This conflicts with the current data"),
    422: N_("Something is wrong with this request"),
}


def safe_next(target: str | None) -> str:
    """Only local paths are followed after login (no open redirect to another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = "/login" if target == "/" else f"/login?next={quote(target, safe='/')}"
    if request.headers.get("HX-Request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def error_page(request: Request, status: int, message: str | None) -> HTMLResponse:
    """Render the error page in the caller's language, with the nav if they are signed in."""
    page: Page | None = getattr(request.state, "web_page", None)
    if page is None:  # failed before the page context was built: no nav, default language
        ctx = request.app.state.ctx
        language = i18n.choose_language(user_language=None,
                                        cookie=request.cookies.get(i18n.LANG_COOKIE),
                                        default=ctx.settings.default_language)
        page = Page(request=request, app=ctx, principal=None, language=language,
                    tz=ZoneInfo(ctx.settings.default_timezone))
    title = ERROR_TITLES.get(status, N_("Something went wrong"))
    return render(page, "error.html", status=status, title=page.gettext(title),
                  message=message, status_code=status)


class WebRoute(APIRoute):
    """An ``APIRoute`` whose failures render as pages rather than JSON."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def web_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                return login_redirect(request)
            except CsrfRejected:
                page = getattr(request.state, "web_page", None)
                text = N_("This form has expired or did not come from this site. "
                          "Reload the page and try again.")
                message = page.gettext(text) if page else text
                return error_page(request, 403, message)
            except PatronError as exc:
                page = getattr(request.state, "web_page", None)
                message = translate_error(page, exc.message, exc.code) if page else exc.message
                return error_page(request, exc.status, message)
            except RequestValidationError:
                return error_page(request, 404, None)

        return web_handler


def web_router() -> APIRouter:
    """A router for admin pages: HTML responses, kept out of the OpenAPI document."""
    return APIRouter(route_class=WebRoute, include_in_schema=False,
                     default_response_class=HTMLResponse)
