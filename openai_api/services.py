"""OpenAI requests as ordinary runs, and runs as OpenAI objects.

Every request creates a run through ``agents.services.run_create``: limits, budget,
concurrency, moderation and the cost ledger apply as to any run. Ids are the run's:
``chatcmpl-<run uuid>``, ``resp_<run uuid>``.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from agents.lifecycle import RunStatus
from agents.models import Agent, Run, Thread
from agents.selectors import agent_list
from agents.services import run_create
from agents.thread_services import thread_create
from openai_api.errors import invalid_param, model_not_found
from openai_api.params import RunRequest

CHAT_PREFIX = "chatcmpl-"
RESPONSE_PREFIX = "resp_"


def models_for(user: Any) -> QuerySet[Agent]:
    """The agents ``user`` may run: the active ones it can see."""
    return agent_list(user).filter(is_active=True).order_by("slug")


def model_for(user: Any, model: str) -> Agent:
    agent = models_for(user).filter(slug=model).first()
    if agent is None:
        raise model_not_found(model)
    return agent


def model_object(agent: Agent) -> dict[str, Any]:
    return {
        "id": agent.slug,
        "object": "model",
        "created": int(agent.created_at.timestamp()),
        "owned_by": "switchyard",
    }


def run_id_of(public_id: str, prefix: str) -> uuid.UUID | None:
    if not public_id.startswith(prefix):
        return None
    try:
        return uuid.UUID(public_id[len(prefix) :])
    except ValueError:
        return None


def chat_run_create(
    *, user: AbstractBaseUser, agent: Agent, request: RunRequest, idempotency_key: str | None
) -> Run:
    """A run for a chat completion: the last user message is its input, the earlier turns
    its history, system messages added to the agent's instructions."""
    run, _ = run_create(
        agent=agent,
        owner=user,
        input=request.input,
        idempotency_key=idempotency_key,
        limits=request.limits or None,
        history=request.history,
        extra_instructions=request.instructions,
        model_settings=request.model_settings,
        client={"api": "chat.completions", **request.client},
    )
    return run


def response_run_create(
    *, user: AbstractBaseUser, agent: Agent, request: RunRequest, idempotency_key: str | None
) -> Run:
    """A run for a response. Each response lives in a thread, so that a later one can
    continue it with ``previous_response_id``."""
    thread = _thread_to_continue(user, agent, request.previous_response_id)
    if thread is None:
        thread = thread_create(agent=agent, owner=user, title="Responses API")
    run, _ = run_create(
        agent=agent,
        owner=user,
        input=request.input,
        idempotency_key=idempotency_key,
        limits=request.limits or None,
        thread=thread,
        history=request.history,
        extra_instructions=request.instructions,
        model_settings=request.model_settings,
        client={
            "api": "responses",
            "instructions": request.instructions,
            "previous_response_id": request.previous_response_id,
            "background": request.background,
            **request.client,
        },
    )
    return run


def _thread_to_continue(user: Any, agent: Agent, previous: str | None) -> Thread | None:
    if previous is None:
        return None
    run_id = run_id_of(previous, RESPONSE_PREFIX)
    found = (
        Run.objects.filter(pk=run_id, owner=user).select_related("thread").first()
        if run_id
        else None
    )
    if found is None or found.thread is None:
        raise invalid_param(
            "previous_response_id", f"No response '{previous}'.", code="previous_response_not_found"
        )
    if found.agent_id != agent.pk:
        raise invalid_param(
            "previous_response_id", "The previous response was made by another model."
        )
    return found.thread


def response_for(user: Any, public_id: str) -> Run | None:
    """The user's own run behind a response id (None for another's, or no such id)."""
    run_id = run_id_of(public_id, RESPONSE_PREFIX)
    if run_id is None:
        return None
    return (
        Run.objects.filter(pk=run_id, owner=user, config__client__api="responses")
        .select_related("agent")
        .first()
    )


def output_limited(run: Run) -> bool:
    """The run was stopped by its output-token cap (the client's max_tokens)."""
    return run.error_code == "limit_exceeded" and "output_tokens" in run.error_message


def finish_reason(run: Run) -> str | None:
    """A chat ``finish_reason`` for a finished run, or None when it ended in an error."""
    if run.status == RunStatus.SUCCEEDED:
        return "stop"
    if run.status == RunStatus.BLOCKED:
        return "content_filter"
    if output_limited(run):
        return "length"
    return None


def chat_usage(run: Run) -> dict[str, Any]:
    return {
        "prompt_tokens": run.input_tokens,
        "completion_tokens": run.output_tokens,
        "total_tokens": run.input_tokens + run.output_tokens,
    }


def chat_completion_object(run: Run, reason: str) -> dict[str, Any]:
    """The whole completion of a finished run. A blocked run carries only the text
    moderation released before it stopped, never the blocked text."""
    return {
        "id": f"{CHAT_PREFIX}{run.id}",
        "object": "chat.completion",
        "created": int(run.created_at.timestamp()),
        "model": run.agent.slug,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": run.output, "refusal": None},
                "logprobs": None,
                "finish_reason": reason,
            }
        ],
        "usage": chat_usage(run),
    }


def chat_chunk(
    run: Run, delta: dict[str, Any] | None, reason: str | None = None, *, with_usage: bool
) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": f"{CHAT_PREFIX}{run.id}",
        "object": "chat.completion.chunk",
        "created": int(run.created_at.timestamp()),
        "model": run.agent.slug,
        "system_fingerprint": None,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}],
    }
    if with_usage:
        chunk["usage"] = chat_usage(run) if delta is None else None
    return chunk


# A run's status as a response's (docs/openai.md has the table).
RESPONSE_STATUS = {
    RunStatus.QUEUED: "queued",
    RunStatus.RUNNING: "in_progress",
    RunStatus.CANCELLING: "in_progress",
    RunStatus.SUCCEEDED: "completed",
    RunStatus.FAILED: "failed",
    RunStatus.TIMED_OUT: "failed",
    RunStatus.BLOCKED: "incomplete",
    RunStatus.CANCELLED: "cancelled",
}


def response_status(run: Run) -> str:
    if output_limited(run):
        return "incomplete"
    return RESPONSE_STATUS[RunStatus(run.status)]


def message_item(run: Run, text: str, status: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": f"msg_{run.id.hex}",
        "status": status,
        "role": "assistant",
        "content": [output_text_part(text)],
    }


def output_text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def response_object(run: Run, *, text: str | None = None) -> dict[str, Any]:
    """A response as ``GET /v1/responses/<id>`` and the stream's lifecycle events show it.

    ``text`` overrides the run's stored output (what a stream has sent so far)."""
    status = response_status(run)
    client = run.config.get("client", {})
    output_text = run.output if text is None else text
    finished = status not in {"queued", "in_progress"}
    error = None
    if status == "failed":
        error = {"code": run.error_code or "server_error", "message": run.error_message}
    incomplete = None
    if status == "incomplete":
        reason = "content_filter" if run.status == RunStatus.BLOCKED else "max_output_tokens"
        incomplete = {"reason": reason}
    settings = run.config.get("model_settings", {})
    return {
        "id": f"{RESPONSE_PREFIX}{run.id}",
        "object": "response",
        "created_at": int(run.created_at.timestamp()),
        "status": status,
        "background": bool(client.get("background")),
        "error": error,
        "incomplete_details": incomplete,
        "instructions": client.get("instructions") or None,
        "max_output_tokens": run.limits.get("max_output_tokens"),
        "model": run.agent.slug,
        "output": [message_item(run, output_text, "completed" if finished else "in_progress")]
        if output_text or status == "completed"
        else [],
        "parallel_tool_calls": True,
        "previous_response_id": client.get("previous_response_id"),
        "temperature": settings.get("temperature"),
        "top_p": settings.get("top_p"),
        "tool_choice": "auto",
        "tools": [],
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "user": client.get("user"),
        "metadata": client.get("metadata", {}),
        "usage": response_usage(run) if finished else None,
    }


def response_usage(run: Run) -> dict[str, Any]:
    return {
        "input_tokens": run.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": run.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": run.input_tokens + run.output_tokens,
    }
