"""The cost ledger of one run: prices each model call, enforces cost limits and budgets.

Prices, in order of precedence: a ``PriceOverride`` for the model (self-hosted models,
negotiated prices, the demo model), the demo provider's 0, the cost the provider reported
itself (OpenRouter does), then the ``genai-prices`` table. A model none of them knows
costs 0 with source ``unknown``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from agents.models import ModelCall, PriceOverride, PriceSource, ProviderKind
from agents.runtime.events import EventEmitter
from agents.runtime.providers import CallObserver, CallRecord
from core.serializers import money_str

MTOK = Decimal(1_000_000)
GENAI_PROVIDER_IDS = {ProviderKind.OPENAI: "openai", ProviderKind.ANTHROPIC: "anthropic"}


class RunLimitExceeded(Exception):
    """A per-run limit was reached; ``limit`` names it (docs/agents.md)."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


class BudgetExhausted(Exception):
    """The agent's monthly budget is spent."""


def price_from_override(record: CallRecord, override: PriceOverride) -> Decimal:
    cached_rate = override.cached_input_per_mtok_usd
    if cached_rate is None:
        cached_rate = override.input_per_mtok_usd
    uncached = max(record.input_tokens - record.cached_tokens, 0)
    return (
        uncached * override.input_per_mtok_usd
        + record.cached_tokens * cached_rate
        + record.output_tokens * override.output_per_mtok_usd
    ) / MTOK


def price_from_table(record: CallRecord, provider: dict[str, Any]) -> Decimal | None:
    """genai-prices' price, matched by the provider's URL first (it knows OpenRouter, Groq,
    Azure ... by URL), then by the provider kind."""
    from genai_prices import Usage, calc_price

    usage = Usage(
        input_tokens=record.input_tokens,
        output_tokens=record.output_tokens,
        cache_read_tokens=record.cached_tokens or None,
    )
    attempts: list[dict[str, Any]] = []
    if provider.get("base_url"):
        attempts.append({"provider_api_url": provider["base_url"]})
    if provider["kind"] in GENAI_PROVIDER_IDS:
        attempts.append({"provider_id": GENAI_PROVIDER_IDS[provider["kind"]]})
    for kwargs in attempts:
        try:
            return Decimal(str(calc_price(usage, record.model, **kwargs).total_price))
        except LookupError:
            continue
    return None


def price_call(
    record: CallRecord, provider: dict[str, Any], override: PriceOverride | None
) -> tuple[Decimal, str]:
    """(cost in USD, price source) for one call. The demo provider is free unless an
    override prices it (seed_demo gives it one, so budgets and the ledger show numbers)."""
    if override is not None:
        return price_from_override(record, override), PriceSource.OVERRIDE
    if provider["kind"] == ProviderKind.DEMO:
        return Decimal(0), PriceSource.FREE
    if record.provider_cost is not None:
        return Decimal(str(record.provider_cost)), PriceSource.PROVIDER
    cost = price_from_table(record, provider)
    if cost is None:
        return Decimal(0), PriceSource.UNKNOWN
    return cost, PriceSource.PRICE_TABLE


def find_override(provider_id: int | None, model: str) -> PriceOverride | None:
    """The most specific override: this provider's first, then any provider's."""
    from django.db.models import Q

    candidates = PriceOverride.objects.filter(
        Q(provider_id=provider_id) | Q(provider__isnull=True), model_name=model
    )
    return min(candidates, key=lambda o: o.provider_id is None, default=None)


@dataclass
class RunLedger(CallObserver):
    run_id: Any
    agent_id: int
    attempt: int
    config: dict[str, Any]
    emitter: EventEmitter
    override: PriceOverride | None = None
    max_cost_usd: Decimal | None = None
    budget_left_usd: Decimal | None = None  # the month's budget minus what was spent at start
    calls: list[ModelCall] = field(default_factory=list)
    cost: Decimal = Decimal(0)
    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False
    budget_exhausted: bool = False

    def on_retry(self, *, attempt: int, code: str, delay_s: float, error: str) -> None:
        self.emitter.emit(
            "provider.retry",
            {"attempt": attempt, "code": code, "delay_s": round(delay_s, 3), "error": error},
        )

    def on_call(self, record: CallRecord) -> None:
        provider = self.config["provider"]
        cost, source = price_call(record, provider, self.override)
        self.calls.append(
            ModelCall(
                run_id=self.run_id,
                agent_id=self.agent_id,
                provider_id=provider.get("id"),
                model=record.model,
                attempt=self.attempt,
                input_tokens=record.input_tokens,
                output_tokens=record.output_tokens,
                cached_tokens=record.cached_tokens,
                usage_estimated=record.estimated,
                cost_usd=cost,
                price_source=source,
                latency_ms=round(record.latency_ms, 1),
            )
        )
        self.cost += cost
        self.input_tokens += record.input_tokens
        self.output_tokens += record.output_tokens
        self.estimated = self.estimated or record.estimated
        self._check_limits()

    def _check_limits(self) -> None:
        if self.max_cost_usd is not None and self.cost >= self.max_cost_usd:
            raise RunLimitExceeded(
                "max_cost_usd", f"The run cost ${self.cost:.6f}, its limit is ${self.max_cost_usd}."
            )
        if self.budget_left_usd is not None and self.cost >= self.budget_left_usd:
            # The call that crossed the line has finished and is kept; no further call
            # starts (see before_call), but an answer it already gave still counts.
            self.budget_exhausted = True

    def before_call(self) -> None:
        if self.budget_exhausted:
            raise BudgetExhausted("The agent's monthly budget is spent.")

    def usage(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": money_str(self.cost),
            "estimated": self.estimated,
        }
