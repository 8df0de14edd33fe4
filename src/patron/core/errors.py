"""Domain errors with stable codes; the API maps them once to RFC 9457 problem+json.

Every error that comes from bad input names the field it is about, so a client (or a
person filling a form) knows what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str
    code: str = "invalid"


class PatronError(Exception):
    """Base of all domain errors. ``status`` is the HTTP status the API uses for it."""

    def __init__(self, message: str, field: str | None = None, code: str = "error",
                 status: int = 400, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code
        self.status = status
        self.problems = problems or ([FieldProblem(field, message, code)] if field else [])

    @property
    def title(self) -> str:
        return self.code.replace("_", " ").capitalize()


class ValidationFailed(PatronError):
    def __init__(self, message: str, field: str | None = None, *,
                 code: str = "invalid", problems: list[FieldProblem] | None = None) -> None:
        super().__init__(message, field, code, 422, problems or [])


class NotFound(PatronError):
    def __init__(self, message: str, field: str | None = None, *, code: str = "not_found") -> None:
        super().__init__(message, field, code, 404)


class Conflict(PatronError):
    def __init__(self, message: str, field: str | None = None, *, code: str = "conflict") -> None:
        super().__init__(message, field, code, 409)


class PermissionDenied(PatronError):
    def __init__(self, message: str = "You are not allowed to do this", *,
                 code: str = "forbidden") -> None:
        super().__init__(message, None, code, 403)


class RuleViolation(PatronError):
    def __init__(self, message: str, field: str | None = None, *,
                 code: str = "rule_violation") -> None:
        super().__init__(message, field, code, 422)


class InsufficientBalance(PatronError):
    def __init__(self, message: str, field: str | None = None, *,
                 code: str = "insufficient_balance") -> None:
        super().__init__(message, field, code, 422)


class TooManyAttempts(PatronError):
    """Too many failed attempts (sign-in, one-time codes): try again after ``retry_after``
    seconds. HTTP 429 with a Retry-After header."""

    def __init__(self, message: str, field: str, retry_after: int) -> None:
        super().__init__(message, field, code="too_many_attempts", status=429)
        self.retry_after = max(1, retry_after)
