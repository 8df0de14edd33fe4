"""HTTP hardening shared by the API and the web pages: security headers, a request body
limit, and the API documentation served from the package (nothing from a CDN).

Headers (OWASP secure headers): a Content-Security-Policy that allows only this origin's
scripts and styles (the pages ship htmx and their own JS; no inline script), no framing,
no MIME sniffing, no referrer leaving the site (links in messages carry signed tokens),
and HSTS when the deployment says it is served over TLS (``PATRON_COOKIE_SECURE``).

The body limit refuses a request whose declared or actual body is larger than the
deployment allows (``PATRON_MAX_UPLOAD_BYTES`` for imports, 1 MiB elsewhere) with a
problem+json 413 before any handler reads it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_BODY_LIMIT = 1024 * 1024
UPLOAD_PATHS = ("/api/v1/members/import", "/api/v1/catalog/products/import",
                "/members/import", "/catalog/import")

STRICT_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
              "img-src 'self' data:; font-src 'self'; connect-src 'self'; "
              "frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'")
# Swagger UI starts itself with an inline script; only the docs page gets that exception.
DOCS_CSP = STRICT_CSP.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'")


class SecurityMiddleware:
    """Adds the security headers to every response and enforces the body size limit."""

    def __init__(self, app: ASGIApp, *, hsts: bool, upload_limit: int,
                 body_limit: int = DEFAULT_BODY_LIMIT) -> None:
        self.app = app
        self.hsts = hsts
        self.upload_limit = upload_limit
        self.body_limit = body_limit

    def _limit(self, path: str) -> int:
        return self.upload_limit if path.startswith(UPLOAD_PATHS) else self.body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        limit = self._limit(path)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(send, limit)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        csp = DOCS_CSP if path == "/docs" else STRICT_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"x-content-type-options", b"nosniff"),
                         (b"x-frame-options", b"DENY"),
                         (b"referrer-policy", b"no-referrer"),
                         (b"cross-origin-opener-policy", b"same-origin"),
                         (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
                         (b"content-security-policy", csp.encode())]
                if self.hsts:
                    extra.append((b"strict-transport-security",
                                  b"max-age=31536000; includeSubDomains"))
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *[(k, v) for k, v in extra if k not in present]]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except BodyTooLarge:
            await _too_large(send, limit)


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"body over {limit} bytes")
        self.limit = limit


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"type": "about:blank", "title": "Request body too large",
                       "status": 413, "detail": f"The request body may be at most {limit:,} "
                       "bytes", "code": "body_too_large",
                       "errors": [{"field": "body", "message": f"at most {limit} bytes",
                                   "code": "body_too_large"}]}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def install_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the files shipped in the ``swagger-ui-bundle`` package."""
    import swagger_ui_bundle

    app.mount("/docs-static", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
              name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/api/v1/openapi.json",
                                   title="patron API",
                                   swagger_js_url="/docs-static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-static/swagger-ui.css",
                                   swagger_favicon_url="/docs-static/favicon-32x32.png")
