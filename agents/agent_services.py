"""Writes for agents and their versions: the one path the API and the admin share.

Every change that alters how an agent runs stores an immutable ``AgentVersion``; the
agent's ``version`` is the number of the newest one. Validation is the model's own
(field validators and ``Agent.clean``), run here with ``full_clean`` so the admin form
and the API report the same field-level errors.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from agents.models import Agent, AgentVersion, Provider
from core.errors import ConflictError, NotFoundError

# The fields whose change alters how the agent runs; name, description and is_active
# do not, and changing them stores no version.
RUN_CONFIG_FIELDS = (
    "provider",
    "model_name",
    "instructions",
    "tools",
    "tool_config",
    "model_settings",
    "moderation_policy",
    "max_requests",
    "max_tool_calls",
    "max_input_tokens",
    "max_output_tokens",
    "max_cost_usd",
    "timeout_s",
    "max_concurrent_runs",
    "monthly_budget_usd",
)
EDITABLE_FIELDS = ("slug", "name", "description", "is_active", *RUN_CONFIG_FIELDS)

Actor = AbstractBaseUser | None


def agent_run_config(agent: Agent) -> dict[str, Any]:
    """The versioned part of an agent as JSON, provider and policy by name."""
    config: dict[str, Any] = {}
    for field in RUN_CONFIG_FIELDS:
        if field == "provider":
            config[field] = agent.provider.name
        elif field == "moderation_policy":
            policy = agent.moderation_policy
            config[field] = policy.name if policy is not None else None
        else:
            value = getattr(agent, field)
            config[field] = str(value) if isinstance(value, Decimal) else value
    return config


def _user(actor: Actor) -> Any:
    return actor if actor is not None and actor.is_authenticated else None


def agent_version_record(*, agent: Agent, actor: Actor = None, note: str = "") -> AgentVersion:
    """Store a version if the agent's run configuration differs from its newest one.

    Returns the newest version (the one just stored, or the unchanged latest). The caller
    holds the agent row locked, so two writers never take the same number.
    """
    config = agent_run_config(agent)
    latest = agent.versions.order_by("-number").first()
    if latest is not None and latest.config == config:
        if agent.version != latest.number:
            Agent.objects.filter(pk=agent.pk).update(version=latest.number)
            agent.version = latest.number
        return latest
    number = latest.number + 1 if latest is not None else max(agent.version or 1, 1)
    version = AgentVersion.objects.create(
        agent=agent, number=number, config=config, created_by=_user(actor), note=note[:200]
    )
    Agent.objects.filter(pk=agent.pk).update(version=number)
    agent.version = number
    return version


def agent_version_current(agent: Agent) -> AgentVersion:
    """The version a run created now runs with (stored first for an agent that has none,
    e.g. one created outside the services)."""
    version = agent.versions.filter(number=agent.version).first()
    if version is not None:
        return version
    with transaction.atomic():
        locked = Agent.objects.select_for_update().select_related("provider").get(pk=agent.pk)
        return agent_version_record(agent=locked)


def _apply(agent: Agent, data: dict[str, Any]) -> None:
    unknown = sorted(set(data) - set(EDITABLE_FIELDS))
    if unknown:
        raise ValidationError({name: "Unknown field." for name in unknown})
    for field, value in data.items():
        setattr(agent, field, value)


def agent_save(*, agent: Agent, actor: Actor = None, note: str = "") -> Agent:
    """Validate and save an agent (new or changed) and store a version if it runs
    differently now. The admin calls this with the form's instance."""
    agent.full_clean()
    with transaction.atomic():
        if agent.pk is not None:
            stored = Agent.objects.select_for_update().filter(pk=agent.pk).first()
            # An agent made outside the services has no history yet: keep what it was.
            if stored is not None and not stored.versions.exists():
                agent_version_record(agent=stored)
        agent.save()
        agent_version_record(agent=agent, actor=actor, note=note)
    return agent


def agent_create(*, data: dict[str, Any], actor: Actor = None) -> Agent:
    """A new agent from field values (``provider`` and ``moderation_policy`` as objects)."""
    agent = Agent()
    _apply(agent, data)
    return agent_save(agent=agent, actor=actor, note="created")


def agent_update(*, agent: Agent, data: dict[str, Any], actor: Actor = None) -> Agent:
    """Change some fields of an agent; a new version when its run configuration changed."""
    with transaction.atomic():
        locked = Agent.objects.select_for_update().get(pk=agent.pk)
        _apply(locked, data)
        return agent_save(agent=locked, actor=actor)


def agent_delete(*, agent: Agent) -> bool:
    """Delete an agent that never ran; deactivate one with runs (their history stays).

    Returns True when the agent was deleted, False when it was deactivated.
    """
    with transaction.atomic():
        locked = Agent.objects.select_for_update().get(pk=agent.pk)
        if not locked.runs.exists():
            locked.delete()
            return True
        if locked.is_active:
            locked.is_active = False
            locked.save(update_fields=["is_active", "updated_at"])
    agent.is_active = False
    return False


def agent_version_restore(*, agent: Agent, number: int, actor: Actor = None) -> AgentVersion:
    """Make the agent run as it did at version ``number``: a new version equal to it."""
    with transaction.atomic():
        locked = Agent.objects.select_for_update().get(pk=agent.pk)
        old = locked.versions.filter(number=number).first()
        if old is None:
            raise NotFoundError(
                "version_not_found", f"Agent '{agent.slug}' has no version {number}."
            )
        data = dict(old.config)
        provider = Provider.objects.filter(name=data["provider"]).first()
        if provider is None:
            raise ConflictError(
                "provider_missing",
                f"Version {number} uses provider '{data['provider']}', which no longer exists.",
            )
        data["provider"] = provider
        policy_name = data.get("moderation_policy")
        data["moderation_policy"] = None
        if policy_name is not None:
            from moderation.models import Policy

            data["moderation_policy"] = Policy.objects.filter(name=policy_name).first()
            if data["moderation_policy"] is None:
                raise ConflictError(
                    "policy_missing",
                    f"Version {number} uses moderation policy '{policy_name}', "
                    "which no longer exists.",
                )
        _apply(locked, {k: v for k, v in data.items() if k in RUN_CONFIG_FIELDS})
        locked.full_clean()
        locked.save()
        version = agent_version_record(agent=locked, actor=actor, note=f"restored version {number}")
    agent.refresh_from_db()
    return version


def version_diff(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """The fields that differ between two version configs, in a stable order."""
    names = [f for f in RUN_CONFIG_FIELDS if f in old or f in new]
    names += sorted((set(old) | set(new)) - set(names))
    return [
        {"field": name, "old": old.get(name), "new": new.get(name)}
        for name in names
        if old.get(name) != new.get(name)
    ]
