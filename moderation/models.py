"""Moderation policies, their rules, and the flags that form the triage queue (DESIGN 9).

The matching itself lives in the Django-free engine (``moderation.engine``); these models
only store what an operator configures and what a run found.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from moderation import engine
from moderation.engine.types import SEVERITIES

ALL_STAGES = sorted(engine.STAGES)


class Stage(models.TextChoices):
    INPUT = "input", "Input"
    OUTPUT = "output", "Output"
    TOOL_OUTPUT = "tool_output", "Tool output"


class Action(models.TextChoices):
    ALLOW = "allow", "Allow"
    REDACT = "redact", "Redact"
    FLAG = "flag", "Flag"
    BLOCK = "block", "Block"


class Severity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


# Straight from the engine, so a new rule kind needs no model change (only a migration).
RULE_KIND_CHOICES = [(k, k.replace("_", " ").capitalize()) for k in engine.RULE_KINDS]


def all_stages() -> list[str]:
    return list(ALL_STAGES)


class Policy(models.Model):
    class FailMode(models.TextChoices):
        # What a run does when moderation itself breaks (a rule that no longer compiles,
        # an unexpected error): "closed" blocks, "open" lets the text through unmoderated.
        OPEN = "open", "Open (let text through)"
        CLOSED = "closed", "Closed (block)"

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    fail_mode = models.CharField(max_length=10, choices=FailMode.choices, default=FailMode.CLOSED)
    created_at = models.DateTimeField(auto_now_add=True)
    # Also bumped whenever one of its rules changes: compiled policies are cached by it.
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return self.name


class Rule(models.Model):
    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="rules")
    order = models.PositiveIntegerField(default=0, help_text="Rules run in this order.")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=30, choices=RULE_KIND_CHOICES)
    params = models.JSONField(
        default=dict, blank=True, help_text="Kind-specific parameters; see docs/moderation.md."
    )
    stages = models.JSONField(default=all_stages, help_text="Subset of input, output, tool_output.")
    action = models.CharField(max_length=10, choices=Action.choices, default=Action.FLAG)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.MEDIUM)
    is_active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["policy", "order", "id"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "name"], name="moderation_rule_name_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}, {self.action})"

    def to_spec(self) -> engine.RuleSpec:
        """The engine's view of this rule. Its id is the primary key, so a finding can be
        traced back to the row."""
        stages = self.stages if isinstance(self.stages, list | tuple) else []
        return engine.RuleSpec(
            id=str(self.pk),
            name=self.name,
            kind=self.kind,
            params=self.params if self.params is not None else {},
            stages=frozenset(s for s in stages if isinstance(s, str)),
            action=self.action,
            severity=self.severity,
        )

    def clean(self) -> None:
        """Run the engine's validation, so a bad regex or an empty keyword list is a form
        error now instead of a failing run later."""
        stages = self.stages
        if (
            not isinstance(stages, list)
            or not stages
            or not all(isinstance(s, str) and s in engine.STAGES for s in stages)
        ):
            raise ValidationError({"stages": f"A non-empty subset of {', '.join(ALL_STAGES)}."})
        if len(set(stages)) != len(stages):
            raise ValidationError({"stages": "Each stage at most once."})
        if self.kind not in engine.RULE_KINDS or self.action not in engine.ACTIONS:
            return  # the choices validation of those fields reports it
        if self.severity not in SEVERITIES:
            return
        if self.params is None:
            self.params = {}  # an emptied JSON box in the admin means "no parameters"
        if not isinstance(self.params, dict):
            raise ValidationError({"params": 'A JSON object such as {"terms": ["falcon"]}.'})
        try:
            engine.validate_rule(self.to_spec())
        except engine.RuleParamsError as exc:
            field = "action" if self.kind == "max_length" and self.action == "allow" else "params"
            raise ValidationError({field: str(exc)}) from None


@receiver(post_save, sender=Rule)
@receiver(post_delete, sender=Rule)
def _touch_policy(sender: Any, instance: Rule, **kwargs: Any) -> None:
    # Compiled policies are cached per (policy id, updated_at): any rule change must
    # move the policy's timestamp or runs would keep using the old rules.
    Policy.objects.filter(pk=instance.policy_id).update(updated_at=timezone.now())


class Flag(models.Model):
    """One flag/block finding of a run: an item of the triage queue.

    ``excerpt`` is the context around the match with every sensitive span (PII, secrets,
    redactions, the finding itself when sensitive) replaced by a marker.
    ``allow_candidate`` holds the matched text only for kinds whose excerpt shows it
    verbatim anyway (keyword, regex, prompt injection, when not redacted), so that
    "dismiss and allow-list" can add it to the rule; for everything else it is empty.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        DISMISSED = "dismissed", "Dismissed (false positive)"
        CONFIRMED = "confirmed", "Confirmed"
        ESCALATED = "escalated", "Escalated"

    run = models.ForeignKey("agents.Run", on_delete=models.CASCADE, related_name="flags")
    # Denormalised from the run so the queue can filter by agent without a join.
    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="flags")
    rule = models.ForeignKey(
        Rule, null=True, blank=True, on_delete=models.SET_NULL, related_name="flags"
    )
    rule_name = models.CharField(max_length=100)
    stage = models.CharField(max_length=20, choices=Stage.choices)
    kind = models.CharField(max_length=100)
    action = models.CharField(max_length=10, choices=Action.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    excerpt = models.TextField(blank=True)
    allow_candidate = models.TextField(blank=True, editable=False)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "-created_at"], name="mod_flag_status_created"),
            models.Index(fields=["agent", "status", "-created_at"], name="mod_flag_agent_status"),
            models.Index(fields=["rule", "status"], name="mod_flag_rule_status"),
            models.Index(fields=["kind", "status"], name="mod_flag_kind_status"),
            models.Index(fields=["severity", "status"], name="mod_flag_severity_status"),
        ]

    def __str__(self) -> str:
        return f"{self.rule_name}: {self.kind} ({self.stage}, {self.status})"
