"""Model clients for a run's provider, and the wrapper that meters and retries each call.

``build_model`` turns a run's frozen provider configuration into a pydantic-ai model.
``MeteredModel`` wraps it: it retries transient failures (429, 5xx, connection errors,
timeouts) with exponential backoff and jitter, honouring ``Retry-After``, but only before
the first byte of a response has been streamed (after that a retry would repeat text a
client has already seen); and it reports every finished call, with its usage and
latency, to the run's ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelAuthenticationError,
    ModelConnectionError,
    ModelHTTPError,
    ModelRateLimitError,
    ModelRequestRejectedError,
    ModelRequestTimeout,
    ModelServerError,
    UnexpectedModelBehavior,
)
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse

# Imported with this module (a worker imports it at start), never on the runtime loop.
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.providers.anthropic import AnthropicProvider
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.settings import ModelSettings

from agents.models import ProviderKind
from agents.runtime.demo import demo_model


class ProviderConfigError(Exception):
    """The run's provider cannot be used as configured."""


# --- Building clients --------------------------------------------------------------------


def build_model(config: dict[str, Any], *, api_key: str | None = None) -> Model:
    """The pydantic-ai model for a run; ``api_key`` is the revealed vault value, if any.

    Shared: one model (and so one provider client, with its HTTP connection pool and TLS
    context) per provider, model name and key per event loop, reused by every run on that
    loop. Building one costs ~36 ms of CPU (a new ``ssl.create_default_context()`` and
    HTTP client), which done per run on the shared loop stalled every other run. A change
    of the provider's settings or of its key gives another fingerprint, and the entry is
    rebuilt; clients are per loop because their connections belong to the loop that
    opened them.
    """
    provider = config["provider"]
    if provider["kind"] == ProviderKind.DEMO:
        return demo_model(config["model_name"])
    try:
        loop: Any = asyncio.get_running_loop()
    except RuntimeError:  # built outside a loop (a synchronous check): not shared
        return _new_model(config, api_key=api_key)
    slot = (
        provider.get("id") or provider.get("base_url") or "",
        provider["kind"],
        config["model_name"],
    )
    fingerprint = _fingerprint(provider, api_key)
    models = _shared_models.setdefault(loop, {})
    cached = models.get(slot)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    model = _new_model(config, api_key=api_key)
    if len(models) >= MAX_SHARED_MODELS and slot not in models:
        models.pop(next(iter(models)))  # the oldest entry
    models[slot] = (fingerprint, model)
    return model


MAX_SHARED_MODELS = 256
_shared_models: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], tuple[str, Model]]] = (
    weakref.WeakKeyDictionary()
)


def _fingerprint(provider: dict[str, Any], api_key: str | None) -> str:
    """What makes a client differ: its settings and its key (a digest; the key itself
    never leaves the client)."""
    parts = {
        "kind": provider["kind"],
        "base_url": provider.get("base_url") or "",
        "timeout_s": provider.get("timeout_s"),
        "extra_headers": provider.get("extra_headers") or {},
        "key": hashlib.sha256((api_key or "").encode()).hexdigest(),
    }
    return json.dumps(parts, sort_keys=True)


def _new_model(config: dict[str, Any], *, api_key: str | None) -> Model:
    provider = config["provider"]
    kind = provider["kind"]
    settings: ModelSettings = {
        "timeout": float(60 if provider.get("timeout_s") is None else provider["timeout_s"]),
        # Retries are ours (MeteredModel), so that each one is visible in the run's events.
        "max_retries": 0,
    }
    if provider.get("extra_headers"):
        settings["extra_headers"] = dict(provider["extra_headers"])
    if kind == ProviderKind.OPENAI:
        client = OpenAIProvider(
            base_url=provider.get("base_url") or None, api_key=api_key or "not-needed"
        )
        return OpenAIChatModel(config["model_name"], provider=client, settings=settings)
    if kind == ProviderKind.ANTHROPIC:
        if not api_key:
            raise ProviderConfigError("The Anthropic provider needs an API key.")
        anthropic = AnthropicProvider(base_url=provider.get("base_url") or None, api_key=api_key)
        return AnthropicModel(config["model_name"], provider=anthropic, settings=settings)
    raise ProviderConfigError(f"Provider kind {kind!r} is not available.")


# --- Errors --------------------------------------------------------------------------------

TRANSIENT = frozenset({"provider_rate_limited", "provider_unavailable"})


def error_code(exc: BaseException) -> str:
    """Our error code for a provider failure (docs/agents.md lists them)."""
    status = getattr(exc, "status_code", None)
    if isinstance(exc, ModelAuthenticationError) or status in (401, 403):
        return "provider_auth_failed"
    if isinstance(exc, ModelRateLimitError) or status == 429:
        return "provider_rate_limited"
    if isinstance(exc, ModelServerError | ModelConnectionError | ModelRequestTimeout):
        return "provider_unavailable"
    if isinstance(exc, ModelHTTPError) and status is not None and status >= 500:
        return "provider_unavailable"
    if status == 408:
        return "provider_unavailable"
    if isinstance(exc, ModelRequestRejectedError | ModelHTTPError):
        return "provider_bad_request"
    if isinstance(exc, UnexpectedModelBehavior) and "tool" in str(exc).lower():
        # pydantic-ai gave up on a tool the model kept calling wrongly: unrecoverable.
        return "tool_failed"
    if isinstance(exc, ModelAPIError | UnexpectedModelBehavior):
        return "provider_bad_response"
    return "internal_error"


def error_message(exc: BaseException) -> str:
    """A message safe to store and show: the exception's class and status, never the body
    (a provider may echo request headers back)."""
    status = getattr(exc, "status_code", None)
    described = {
        "provider_auth_failed": "The provider refused the credentials",
        "provider_rate_limited": "The provider kept rate-limiting the requests",
        "provider_unavailable": "The provider could not be reached or failed",
        "provider_bad_response": "The provider sent a response that could not be read",
        "provider_bad_request": "The provider rejected the request",
    }.get(error_code(exc), "The model call failed")
    return f"{described} ({type(exc).__name__}{f', HTTP {status}' if status else ''})."


def backoff_delay(attempt: int, retry_after: float | None, *, base: float, cap: float) -> float:
    """Full-jitter exponential backoff, or the provider's Retry-After when it gave one."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), cap)
    return random.uniform(0, min(cap, base * (2**attempt)))


# --- Metering -------------------------------------------------------------------------------


@dataclass
class CallRecord:
    model: str
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    estimated: bool
    latency_ms: float
    provider_cost: float | None


class CallObserver:
    """What the run executor wants to hear about each model call (see engine.py)."""

    def before_call(self) -> None:
        """Raise to stop the run before another call starts (e.g. the budget is spent)."""

    def on_retry(self, *, attempt: int, code: str, delay_s: float, error: str) -> None: ...

    def on_call(self, record: CallRecord) -> None: ...


def _estimate_tokens(text_chars: int) -> int:
    return max(1, text_chars // 4)


def call_record(response: StreamedResponse, model: str, latency_ms: float) -> CallRecord:
    usage = response.usage
    estimated = not (usage.input_tokens or usage.output_tokens)
    output_tokens = usage.output_tokens
    if estimated:
        text = "".join(getattr(p, "content", "") or "" for p in response.get().parts)
        output_tokens = _estimate_tokens(len(text)) if text else 0
    details = response.get().provider_details or {}
    cost = details.get("cost")
    return CallRecord(
        model=model,
        input_tokens=usage.input_tokens,
        output_tokens=output_tokens,
        cached_tokens=usage.cache_read_tokens,
        estimated=estimated,
        latency_ms=latency_ms,
        provider_cost=float(cost) if isinstance(cost, int | float) else None,
    )


class MeteredModel(WrapperModel):
    def __init__(
        self,
        wrapped: Model,
        *,
        observer: CallObserver,
        retries: int = 3,
        base_delay_s: float = 0.5,
        max_delay_s: float = 30.0,
        sleep: Callable[[float], Any] = asyncio.sleep,
        fence: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(wrapped)
        # Awaited before every request to the provider (the first and each retry): it
        # raises when this attempt no longer owns the run (agents/runtime/fencing.py).
        self.fence = fence
        self.observer = observer
        self.retries = retries
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self._sleep = sleep

    @contextlib.asynccontextmanager
    async def request_stream(
        self,
        messages: list[Any],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: Any = None,
    ) -> AsyncGenerator[StreamedResponse]:
        self.observer.before_call()
        async with contextlib.AsyncExitStack() as stack:
            started = time.monotonic()
            stream = await self._open(
                stack, messages, model_settings, model_request_parameters, run_context
            )
            try:
                yield stream
            finally:
                # Also on cancel or a failure mid-stream: what was used is still paid for.
                latency_ms = (time.monotonic() - started) * 1000
                self.observer.on_call(call_record(stream, self.model_name, latency_ms))

    async def _open(
        self,
        stack: contextlib.AsyncExitStack,
        messages: list[Any],
        model_settings: ModelSettings | None,
        params: ModelRequestParameters,
        run_context: Any,
    ) -> StreamedResponse:
        attempt = 0
        while True:
            if self.fence is not None:
                await self.fence()
            try:
                return await stack.enter_async_context(
                    self.wrapped.request_stream(messages, model_settings, params, run_context)
                )
            except ModelAPIError as exc:
                code = error_code(exc)
                if code not in TRANSIENT or attempt >= self.retries:
                    raise
                delay = backoff_delay(
                    attempt,
                    getattr(exc, "retry_after", None),
                    base=self.base_delay_s,
                    cap=self.max_delay_s,
                )
                attempt += 1
                self.observer.on_retry(
                    attempt=attempt, code=code, delay_s=delay, error=error_message(exc)
                )
                await self._sleep(delay)
