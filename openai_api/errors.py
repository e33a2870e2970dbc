"""Errors in OpenAI's own shape and statuses, so that OpenAI's SDKs raise their own classes.

``{"error": {"message", "type", "param", "code"}}``: 400 ``BadRequestError``, 401
``AuthenticationError``, 404 ``NotFoundError``, 429 ``RateLimitError``, 5xx an
``InternalServerError``. The SDKs retry 429 and 5xx by themselves; ``x-should-retry:
false`` stops that where a retry would only start another run that fails the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import JsonResponse

from core.errors import ApplicationError

INVALID = "invalid_request_error"


@dataclass
class OpenAIError(Exception):
    status: int
    message: str
    type: str = INVALID
    param: str | None = None
    code: str | None = None
    retry_after: int | None = None
    retry: bool | None = None

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JsonResponse:
        response = JsonResponse(self.body(), status=self.status)
        if self.retry_after is not None:
            response["Retry-After"] = str(self.retry_after)
        if self.retry is not None:
            response["x-should-retry"] = "true" if self.retry else "false"
        return response


def invalid_param(param: str, message: str, code: str = "invalid_value") -> OpenAIError:
    return OpenAIError(400, message, param=param, code=code)


def unsupported_param(param: str, why: str) -> OpenAIError:
    return OpenAIError(
        400, f"'{param}' is not supported here: {why}", param=param, code="unsupported_parameter"
    )


def model_not_found(model: str) -> OpenAIError:
    return OpenAIError(
        404,
        f"The model '{model}' does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


def not_authenticated() -> OpenAIError:
    return OpenAIError(
        401,
        "Incorrect or missing API key: send a Switchyard API token as "
        "'Authorization: Bearer sy_...'.",
        type="invalid_request_error",
        code="invalid_api_key",
    )


def from_application_error(error: ApplicationError) -> OpenAIError:
    """A service's refusal, said the way OpenAI says it."""
    if error.kind == "quota_exhausted":
        # Waiting a few seconds will not help: tell the SDK not to retry.
        return OpenAIError(
            429, error.message, type="insufficient_quota", code="insufficient_quota", retry=False
        )
    if error.kind in {"rate_limited", "unavailable"}:
        retry_after = getattr(error, "retry_after", 1)
        if error.kind == "unavailable":
            return OpenAIError(
                503, error.message, type="server_error", code=error.code, retry_after=retry_after
            )
        # too_many_runs (the run quota) keeps its code: waiting for the owner's runs to
        # finish is another remedy than slowing down.
        code = error.code if error.code == "too_many_runs" else "rate_limit_exceeded"
        return OpenAIError(429, error.message, type="requests", code=code, retry_after=retry_after)
    if error.kind == "not_found":
        return OpenAIError(404, error.message, code=error.code)
    if error.kind == "forbidden":
        return OpenAIError(403, error.message, type="permission_error", code=error.code)
    if error.kind in {"conflict", "unprocessable"}:
        return OpenAIError(409, error.message, code=error.code, retry=False)
    return OpenAIError(400, error.message, code=error.code)


# What a run that ended without an answer becomes (docs/openai.md, "Errors").
_RUN_FAILURES: dict[str, tuple[int, str]] = {
    "budget_exhausted": (429, "insufficient_quota"),
    "provider_auth_failed": (502, "server_error"),
    "provider_rate_limited": (502, "server_error"),
    "provider_unavailable": (502, "server_error"),
    "provider_bad_request": (502, "server_error"),
    "provider_bad_response": (502, "server_error"),
    "timed_out": (504, "server_error"),
    "cancelled": (409, INVALID),
}


def run_failure(code: str, message: str) -> OpenAIError:
    """The error for a run that failed, timed out or was cancelled. Never retried by the
    SDK: the provider layer has retried already, and a retry would start a new run."""
    status, kind = _RUN_FAILURES.get(code, (500, "server_error"))
    if code == "budget_exhausted":
        return OpenAIError(status, message, type=kind, code="insufficient_quota", retry=False)
    return OpenAIError(
        status, message or f"The run ended with {code}.", type=kind, code=code, retry=False
    )
