"""RFC 9457 problem details: every error leaves the API in one shape that names the field."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from patron.core.errors import PatronError

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://patron.dev/problems/"


def problem(status: int, code: str, title: str, detail: str, *, instance: str | None = None,
            errors: list[dict[str, str]] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": TYPE_BASE + code, "title": title, "status": status,
                            "detail": detail, "code": code}
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_of(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(PatronError)
    async def _patron(request: Request, exc: PatronError) -> JSONResponse:
        errors = [{"field": p.field, "message": p.message, "code": p.code} for p in exc.problems]
        retry = getattr(exc, "retry_after", None)
        return problem(exc.status, exc.code, exc.title, exc.message,
                       instance=request.url.path, errors=errors or None,
                       headers={"Retry-After": str(retry)} if retry else None)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field_of(tuple(e.get("loc", ()))), "message": str(e.get("msg", "")),
                   "code": str(e.get("type", "invalid"))} for e in exc.errors()]
        fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
        return problem(422, "validation_failed", "Validation failed",
                       f"Invalid input in: {fields}", instance=request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {401: "unauthenticated", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 413: "payload_too_large"}
        code = codes.get(exc.status_code, "http_error")
        return problem(exc.status_code, code, code.replace("_", " ").capitalize(),
                       str(exc.detail), instance=request.url.path,
                       headers=getattr(exc, "headers", None))
