"""``/v1/``: thin async views (no thread per streaming client under daphne).

Each view authenticates the bearer token, applies the REST API's per-token throttles, validates
the body (``openai_api.params``) and calls a service; every error leaves in OpenAI's
shape (``openai_api.errors``). Only bearer tokens are accepted, so CSRF does not apply.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import wraps
from types import SimpleNamespace
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from knox.settings import CONSTANTS

from agents.auth import bearer_credentials, user_for_token
from agents.lifecycle import TERMINAL
from agents.services import run_cancel
from agents.transport import write_buffer_of
from core.errors import ApplicationError
from core.throttles import RunCreateRateThrottle, TokenRateThrottle
from openai_api import params, services, streams
from openai_api.errors import (
    OpenAIError,
    from_application_error,
    invalid_param,
    not_authenticated,
    run_failure,
)

View = Callable[..., Awaitable[HttpResponse]]
MAX_IDEMPOTENCY_KEY = 255
TOKEN_KEY = CONSTANTS.TOKEN_KEY_LENGTH  # knox's lookup prefix, the throttles' key


def _throttle_wait(user: Any, token: str, throttle: TokenRateThrottle) -> float | None:
    """Seconds to wait if the token is over ``throttle``'s rate, counted together with
    the REST API's requests of the same token (the same cache keys)."""
    request = SimpleNamespace(user=user, auth=SimpleNamespace(token_key=token[:TOKEN_KEY]))
    if throttle.allow_request(request, None):
        return None
    return throttle.wait() or 1.0


def _rate_limited(wait: float) -> OpenAIError:
    return OpenAIError(
        429,
        "Rate limit reached for requests; try again later.",
        type="requests",
        code="rate_limit_exceeded",
        retry_after=max(1, round(wait)),
    )


def openai_view(*methods: str, creates_runs: bool = False) -> Callable[[View], View]:
    """Method check, bearer authentication, throttling and the error shape for a view;
    a view that ``creates_runs`` is also held to the token's run-creation rate."""

    def decorate(view: View) -> View:
        @csrf_exempt
        @wraps(view)
        async def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                if request.method not in methods:
                    raise OpenAIError(
                        405, f"Use {' or '.join(methods)}.", code="method_not_allowed"
                    )
                token = bearer_credentials(request.headers.get("Authorization", ""))
                user = await user_for_token(token) if token else None
                if user is None or not user.is_authenticated:
                    raise not_authenticated()
                throttles = [TokenRateThrottle()]
                if creates_runs:
                    throttles.append(RunCreateRateThrottle())
                for throttle in throttles:
                    wait = await sync_to_async(_throttle_wait)(user, token or "", throttle)
                    if wait is not None:
                        raise _rate_limited(wait)
                return await view(request, user, *args, **kwargs)
            except ApplicationError as exc:
                return from_application_error(exc).response()
            except OpenAIError as exc:
                return exc.response()

        return wrapped

    return decorate


def _body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise OpenAIError(
            400, "We could not parse the JSON body of your request.", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise OpenAIError(400, "The request body must be a JSON object.", code="invalid_json")
    return body


def _idempotency_key(request: HttpRequest) -> str | None:
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY:
        raise OpenAIError(400, "Idempotency-Key is too long (max 255).", code="invalid_value")
    return key


def _event_stream(body: Any) -> StreamingHttpResponse:
    response = StreamingHttpResponse(body, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


@openai_view("GET")
async def models_list(request: HttpRequest, user: Any) -> HttpResponse:
    agents = await sync_to_async(lambda: list(services.models_for(user)))()
    return JsonResponse({"object": "list", "data": [services.model_object(a) for a in agents]})


@openai_view("GET")
async def model_detail(request: HttpRequest, user: Any, model: str) -> HttpResponse:
    agent = await sync_to_async(services.model_for)(user, model)
    return JsonResponse(services.model_object(agent))


@openai_view("POST", creates_runs=True)
async def chat_completions(request: HttpRequest, user: Any) -> HttpResponse:
    body = _body(request)
    key = _idempotency_key(request)

    def create() -> Any:
        run_request, agent = params.chat_request(body, lambda m: services.model_for(user, m))
        run = services.chat_run_create(
            user=user, agent=agent, request=run_request, idempotency_key=key
        )
        return run_request, run

    run_request, run = await sync_to_async(create)()
    if run_request.stream:
        congested = write_buffer_of(request.scope).congested  # type: ignore[attr-defined]
        return _event_stream(
            streams.chat_stream(run, include_usage=run_request.include_usage, congested=congested)
        )
    done = await streams.finished_run(run.id)
    reason = services.finish_reason(done)
    if reason is None:
        raise run_failure(done.error_code, done.error_message)
    return JsonResponse(services.chat_completion_object(done, reason))


@openai_view("POST", creates_runs=True)
async def responses_create(request: HttpRequest, user: Any) -> HttpResponse:
    body = _body(request)
    key = _idempotency_key(request)

    def create() -> Any:
        run_request, agent = params.responses_request(body, lambda m: services.model_for(user, m))
        run = services.response_run_create(
            user=user, agent=agent, request=run_request, idempotency_key=key
        )
        return run_request, run

    run_request, run = await sync_to_async(create)()
    if run_request.stream:
        congested = write_buffer_of(request.scope).congested  # type: ignore[attr-defined]
        return _event_stream(streams.response_stream(run, congested=congested))
    if not run_request.background:
        run = await streams.finished_run(run.id)
    return JsonResponse(services.response_object(run))


async def _response(user: Any, response_id: str) -> Any:
    run = await sync_to_async(services.response_for)(user, response_id)
    if run is None:
        raise OpenAIError(
            404, f"No response with id '{response_id}'.", param="response_id", code="not_found"
        )
    return run


@openai_view("GET")
async def response_detail(request: HttpRequest, user: Any, response_id: str) -> HttpResponse:
    return JsonResponse(services.response_object(await _response(user, response_id)))


@openai_view("POST")
async def response_cancel(request: HttpRequest, user: Any, response_id: str) -> HttpResponse:
    """Cancel a background response. A running run stops within seconds; the answer
    shows ``in_progress`` until then, ``cancelled`` after."""
    run = await _response(user, response_id)
    if not run.config.get("client", {}).get("background"):
        raise invalid_param("response_id", "Only a background response can be cancelled.")
    if run.status not in TERMINAL or run.status == "cancelled":
        await sync_to_async(run_cancel)(run_id=run.id, actor=user)
    run = await sync_to_async(services.response_for)(user, response_id)
    if run.status not in {"cancelled", "cancelling"}:
        raise OpenAIError(
            400,
            f"The response already finished ({services.response_status(run)}).",
            param="response_id",
            code="response_finished",
        )
    return JsonResponse(services.response_object(run))


@csrf_exempt
def not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    return OpenAIError(
        404, f"Unknown request URL: {request.method} {request.path}.", code="unknown_url"
    ).response()
