"""The one error shape: kinds map to statuses in one place, whatever raised them."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions

from core.errors import (
    ApplicationError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    QuotaExhaustedError,
    RateLimitedError,
    UnavailableError,
    UnprocessableError,
)
from core.handlers import api_exception_handler


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ApplicationError("bad", "Bad."), 400),
        (NotFoundError("gone", "Gone."), 404),
        (ConflictError("taken", "Taken."), 409),
        (ForbiddenError("no", "No."), 403),
        (QuotaExhaustedError("budget_exhausted", "Spent."), 402),
        (UnprocessableError("idempotency_key_reused", "Other body."), 422),
        (RateLimitedError("too_many_runs", "Slow down.", retry_after=7), 429),
        (UnavailableError("broker_down", "Later.", retry_after=3), 503),
    ],
)
def test_each_kind_of_application_error_has_its_status_and_the_one_shape(
    error: ApplicationError, status: int
) -> None:
    response = api_exception_handler(error, {})
    assert response is not None and response.status_code == status
    assert response.data == {
        "error": {"code": error.code, "message": error.message, "details": None}
    }


def test_a_rate_limit_says_when_to_come_back() -> None:
    response = api_exception_handler(RateLimitedError("throttled", "Wait.", retry_after=7), {})
    assert response is not None and response["Retry-After"] == "7"


def test_details_are_passed_through() -> None:
    error = ConflictError("version_conflict", "Stale.", details={"current_version": 2})
    response = api_exception_handler(error, {})
    assert response is not None and response.data["error"]["details"] == {"current_version": 2}


def test_djangos_own_errors_come_out_in_the_same_shape() -> None:
    not_found = api_exception_handler(Http404("x"), {})
    invalid = api_exception_handler(DjangoValidationError({"name": ["Too long."]}), {})
    assert not_found is not None and not_found.status_code == 404
    assert not_found.data["error"]["code"] == "not_found"
    assert invalid is not None and invalid.status_code == 400
    assert invalid.data["error"] == {
        "code": "invalid_request",
        "message": "The request is not valid; see details.",
        "details": {"name": ["Too long."]},
    }


def test_drf_exceptions_keep_their_status_with_our_codes() -> None:
    response = api_exception_handler(exceptions.MethodNotAllowed("DELETE"), {})
    assert response is not None and response.status_code == 405
    assert response.data["error"]["code"] == "method_not_allowed"
