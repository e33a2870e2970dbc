"""Agents, providers, threads, runs and their append-only event log (DESIGN section 4)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from agents.lifecycle import UNFINISHED, RunStatus


class ProviderKind(models.TextChoices):
    DEMO = "demo", "Demo (offline, deterministic)"
    OPENAI = "openai", "OpenAI-compatible"
    ANTHROPIC = "anthropic", "Anthropic"


class Provider(models.Model):
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=ProviderKind.choices)
    base_url = models.URLField(blank=True, help_text="Empty means the provider's default.")
    api_key = models.ForeignKey(
        "secrets_vault.Secret",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="providers",
        help_text="The vault secret holding the API key (revealed once per run).",
    )
    timeout_s = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1), MaxValueValidator(3600)]
    )
    max_retries = models.PositiveSmallIntegerField(default=3, validators=[MaxValueValidator(10)])
    extra_headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        headers = self.extra_headers
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ValidationError(
                {"extra_headers": 'An object of header names to strings, e.g. {"X-Team": "a"}.'}
            )
        if self.kind == ProviderKind.DEMO and self.api_key_id is not None:
            raise ValidationError({"api_key": "The demo provider takes no API key."})


slug_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9-]{0,62}$", "Lower-case letters, digits and dashes, at most 63."
)


class Agent(models.Model):
    slug = models.SlugField(max_length=63, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="agents")
    model_name = models.CharField(max_length=200)
    instructions = models.TextField(blank=True)
    tools = models.JSONField(default=list, blank=True, help_text="Tool names from the registry.")
    tool_config = models.JSONField(
        default=dict,
        blank=True,
        help_text='Per-tool settings, e.g. {"delegate": {"agents": ["helper"]}}.',
    )
    model_settings = models.JSONField(
        default=dict, blank=True, help_text="temperature, max_tokens, top_p ..."
    )
    # Limits per run; a run may lower them, never raise them.
    max_requests = models.PositiveIntegerField(
        default=20, validators=[MinValueValidator(1), MaxValueValidator(10_000)]
    )
    max_tool_calls = models.PositiveIntegerField(default=20, validators=[MaxValueValidator(10_000)])
    max_input_tokens = models.PositiveIntegerField(null=True, blank=True)
    max_output_tokens = models.PositiveIntegerField(null=True, blank=True)
    max_cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    timeout_s = models.PositiveIntegerField(
        default=300, validators=[MinValueValidator(1), MaxValueValidator(86_400)]
    )
    max_concurrent_runs = models.PositiveIntegerField(null=True, blank=True)
    monthly_budget_usd = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    moderation_policy = models.ForeignKey(
        "moderation.Policy",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="agents",
        help_text="Checks input, streamed output and tool output (docs/moderation.md).",
    )
    is_active = models.BooleanField(default=True)
    version = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from agents.tools import all_tools

        if not isinstance(self.tools, list) or not all(isinstance(t, str) for t in self.tools):
            raise ValidationError({"tools": "A list of tool names."})
        unknown = sorted(set(self.tools) - set(all_tools()))
        if unknown:
            known = ", ".join(sorted(all_tools()))
            message = f"Unknown tools: {', '.join(unknown)}. Known: {known}."
            raise ValidationError({"tools": message})
        if not isinstance(self.model_settings, dict):
            raise ValidationError({"model_settings": 'A JSON object such as {"temperature": 0.2}.'})
        if not isinstance(self.tool_config, dict) or not all(
            isinstance(v, dict) for v in self.tool_config.values()
        ):
            raise ValidationError(
                {"tool_config": 'An object of per-tool objects, e.g. {"delegate": {"agents": []}}.'}
            )
        unconfigured = sorted(set(self.tool_config) - set(self.tools))
        if unconfigured:
            message = f"Settings for tools the agent does not use: {', '.join(unconfigured)}."
            raise ValidationError({"tool_config": message})


class AgentVersion(models.Model):
    """An immutable snapshot of how an agent runs, stored on every change that alters it."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    config = models.JSONField(help_text="The agent's run configuration at this version.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    note = models.CharField(max_length=200, blank=True, help_text='e.g. "restored version 1".')
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["agent", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "number"], name="agent_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.agent_id} v{self.number}"


class Thread(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="threads")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="threads"
    )
    title = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title or str(self.id)


class Run(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="runs")
    thread = models.ForeignKey(
        Thread, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="runs"
    )
    status = models.CharField(
        max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True
    )
    input = models.TextField()
    output = models.TextField(blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)
    config = models.JSONField(default=dict, help_text="The agent configuration it ran with.")
    agent_version = models.ForeignKey(
        AgentVersion,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
        help_text="The agent version it ran with.",
    )
    limits = models.JSONField(
        default=dict, blank=True, help_text="Per-run limits, each at most the agent's."
    )
    messages = models.JSONField(
        default=list, blank=True, help_text="Model messages this run added (thread history)."
    )
    depth = models.PositiveSmallIntegerField(default=0, help_text="Delegation depth.")
    attempt = models.PositiveSmallIntegerField(default=0)
    # NULL, not "", means "no key": the unique constraint only covers runs that have one.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    # SHA-256 of the request an idempotency key was first used with (services).
    idempotency_fingerprint = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # When the executor was handed the run (the broker took its message). NULL on a queued
    # run means the hand-over is still owed: the dispatcher retries it (runs_dispatch).
    dispatched_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    requests = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    tool_calls = models.PositiveIntegerField(default=0)
    usage_estimated = models.BooleanField(default=False)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal("0"))

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="run_idempotency_key_unique_per_owner",
            )
        ]
        indexes = [
            models.Index(fields=["agent", "status"]),
            # Usage over a window, for one agent or for one owner's runs.
            models.Index(fields=["agent", "created_at"], name="run_agent_created_idx"),
            models.Index(fields=["owner", "created_at"], name="run_owner_created_idx"),
            # The few unfinished runs among millions: the reaper's and /metrics' queries.
            models.Index(
                fields=["status", "created_at"],
                condition=models.Q(status__in=UNFINISHED),
                name="run_unfinished_idx",
            ),
            # Fair dispatch between owners (claims.FAIREST_QUEUED_RUN): each owner's runs
            # in flight, and its oldest queued run. Also the run quota's count of one
            # owner's unfinished runs at every create (agents.services.reserve_run_slots).
            models.Index(
                fields=["owner", "status", "created_at"],
                condition=models.Q(status__in=UNFINISHED),
                name="run_owner_unfinished_idx",
            ),
            # The dispatcher's query: queued runs whose hand-over failed (usually none).
            models.Index(
                fields=["created_at"],
                condition=models.Q(status=RunStatus.QUEUED, dispatched_at__isnull=True),
                name="run_undispatched_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent_id}:{self.id}"

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


def run_group_name(run_id: uuid.UUID | str) -> str:
    """The channel-layer group a run's events are published to."""
    return f"run.{run_id}"


class RunEvent(models.Model):
    """One event of a run's stream. Append-only: the durable source for replay."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=40)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["run", "seq"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="run_event_seq_unique")]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.seq} {self.type}"


class PriceSource(models.TextChoices):
    PROVIDER = "provider", "Reported by the provider"
    PRICE_TABLE = "genai_prices", "genai-prices table"
    OVERRIDE = "override", "Price override"
    UNKNOWN = "unknown", "Unknown (no price)"
    FREE = "free", "Free (demo model)"


class PriceOverride(models.Model):
    """Prices for models genai-prices does not know (self-hosted) or that you pay
    differently for. An override wins over the price table."""

    provider = models.ForeignKey(
        Provider,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        help_text="Empty: applies to this model name on every provider.",
    )
    model_name = models.CharField(max_length=200)
    input_per_mtok_usd = models.DecimalField(max_digits=12, decimal_places=6)
    output_per_mtok_usd = models.DecimalField(max_digits=12, decimal_places=6)
    cached_input_per_mtok_usd = models.DecimalField(
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="Empty: cached input tokens cost the same as input tokens.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "model_name"],
                name="price_override_unique_per_provider",
                condition=models.Q(provider__isnull=False),
            ),
            models.UniqueConstraint(
                fields=["model_name"],
                name="price_override_unique_any_provider",
                condition=models.Q(provider__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_name} @ {self.provider or 'any provider'}"


class ModelCall(models.Model):
    """The cost ledger: one row per model request."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="model_calls")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="model_calls")
    provider = models.ForeignKey(Provider, null=True, on_delete=models.SET_NULL)
    model = models.CharField(max_length=200)
    attempt = models.PositiveSmallIntegerField(default=1)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    usage_estimated = models.BooleanField(default=False)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal("0"))
    price_source = models.CharField(max_length=20, choices=PriceSource.choices)
    latency_ms = models.FloatField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["agent", "created_at"])]

    def __str__(self) -> str:
        return f"{self.model} {self.input_tokens}/{self.output_tokens} ${self.cost_usd}"


class ApiToken(models.Model):
    """What knox's token does not hold: a name for people and when it was last used.
    knox keeps the digest, owner, creation and expiry (the secret is never stored)."""

    token = models.OneToOneField("knox.AuthToken", on_delete=models.CASCADE, related_name="info")
    name = models.CharField(max_length=100, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name or f"token {self.pk}"


class RunQuota(models.Model):
    """One user's limit on runs queued or running at once, instead of the default
    ``RUNS_MAX_ACTIVE_PER_OWNER`` (edited in the admin; ``agents.services`` enforces it)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="run_quota",
    )
    max_active_runs = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Runs queued or running at once. Empty: the default "
        "(RUNS_MAX_ACTIVE_PER_OWNER); 0: unlimited.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "run quota"

    def __str__(self) -> str:
        limit = "default" if self.max_active_runs is None else self.max_active_runs or "unlimited"
        return f"{self.user}: {limit}"


class RunBatch(models.Model):
    """A batch created under an Idempotency-Key: what a retry of it replays. Batches
    without a key leave no row (their runs are the record)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="run_batches"
    )
    idempotency_key = models.CharField(max_length=255)
    # SHA-256 of the whole request (agents.services.run_batch_fingerprint).
    idempotency_fingerprint = models.CharField(max_length=64)
    run_ids = models.JSONField(default=list, help_text="The batch's runs, in input order.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"], name="run_batch_idempotency_key_unique"
            )
        ]

    def __str__(self) -> str:
        return f"batch {self.id} ({len(self.run_ids)} runs)"
