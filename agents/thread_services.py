"""Threads and the history a run continues: create, delete, and the messages loaded from
earlier runs of the thread and from the caller."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from agents.models import Agent, Run, Thread
from agents.selectors import thread_history_list


def thread_history(run: Run) -> list[Any]:
    """The thread's earlier messages, cut to the newest whole runs that fit the budget.

    Whole runs are kept or dropped together so a tool result never loses its call.
    """
    if run.thread_id is None:
        return []
    from pydantic_ai.messages import ModelMessagesTypeAdapter

    kept = thread_history_list(run.thread_id, before=run.created_at)
    flat = [m for _, messages in kept for m in messages]
    return list(ModelMessagesTypeAdapter.validate_python(flat))


def run_history(run: Run) -> list[Any]:
    """The messages a run continues: its thread's, then those its caller brought along."""
    return thread_history(run) + client_history(run.config.get("history") or [])


def client_history(turns: list[dict[str, str]]) -> list[Any]:
    """Caller-supplied turns as model messages (user prompts and assistant answers)."""
    from pydantic_ai.messages import ModelRequest, ModelResponse, TextPart, UserPromptPart

    messages: list[Any] = []
    for turn in turns:
        if turn["role"] == "assistant":
            messages.append(ModelResponse(parts=[TextPart(content=turn["content"])]))
        else:
            messages.append(ModelRequest(parts=[UserPromptPart(content=turn["content"])]))
    return messages


def thread_delete(*, thread: Thread) -> None:
    """Delete a thread; its runs stay, detached (``Run.thread`` is SET_NULL)."""
    thread.delete()


def thread_create(*, agent: Agent, owner: AbstractBaseUser, title: str = "") -> Thread:
    """A conversation: runs created with it continue the same message history."""
    # django-stubs types the key as User; callers hold request.user's AbstractBaseUser.
    return Thread.objects.create(agent=agent, owner=owner, title=title)  # type: ignore[misc]
