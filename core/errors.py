"""The application error that services raise, and the one shape every API error has.

Services know what went wrong, not how HTTP says it: they raise an ``ApplicationError``
(or one of its kinds) with a stable code, a message for people and optional details. The
exception handler in ``core.handlers`` is the one place that maps a kind to a status
(HackSoft's ``core/exceptions.py`` + ``api/exception_handlers.py``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.http import JsonResponse


class ApplicationError(Exception):
    """A request that cannot be carried out, for a reason the caller can act on."""

    kind: ClassVar[str] = "invalid"

    def __init__(self, code: str, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class NotFoundError(ApplicationError):
    """The thing named does not exist, or the caller may not know that it does."""

    kind = "not_found"


class ConflictError(ApplicationError):
    """The request clashes with the current state (a name taken, a run already ended)."""

    kind = "conflict"


class ForbiddenError(ApplicationError):
    """The caller is known but may not do this."""

    kind = "forbidden"


class QuotaExhaustedError(ApplicationError):
    """A spending budget is used up (distinct from a rate limit: waiting will not help soon)."""

    kind = "quota_exhausted"


class UnprocessableError(ApplicationError):
    """Well-formed, but refused as a whole (an Idempotency-Key reused with another body)."""

    kind = "unprocessable"


class RateLimitedError(ApplicationError):
    """Too much at once; try again after ``retry_after`` seconds."""

    kind = "rate_limited"

    def __init__(
        self, code: str, message: str, *, retry_after: int = 1, details: Any = None
    ) -> None:
        super().__init__(code, message, details=details)
        self.retry_after = retry_after


class UnavailableError(RateLimitedError):
    """Shed on purpose (a dependency down, the server full); try again after ``retry_after``."""

    kind = "unavailable"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The one error shape: ``{"error": {"code", "message", "details"}}``."""
    return {"error": {"code": code, "message": message, "details": details}}


def json_error(code: str, message: str, http_status: int, details: Any = None) -> JsonResponse:
    """The error shape outside DRF views (plain Django views, handler404/500)."""
    return JsonResponse(error_body(code, message, details), status=http_status)
