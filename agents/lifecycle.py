"""The run status machine (DESIGN section 5), in one place.

    queued -> running -> succeeded | failed | timed_out | blocked
       \\          \\-> cancelling -> cancelled
        \\-> cancelled

``running -> queued`` is the reaper putting a run whose worker died back in line.
``services.run_transition`` is the only writer of ``Run.status``; it asks this module
which source states a target state may be reached from.
"""

from __future__ import annotations

from django.db import models


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    BLOCKED = "blocked"
    CANCELLED = "cancelled"


TERMINAL: frozenset[str] = frozenset(
    {
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
        RunStatus.TIMED_OUT,
        RunStatus.BLOCKED,
        RunStatus.CANCELLED,
    }
)

# Executing (a worker owns it, its heartbeat counts), and that plus waiting, in the order
# reports list them.
ACTIVE: tuple[str, ...] = (RunStatus.RUNNING, RunStatus.CANCELLING)
UNFINISHED: tuple[str, ...] = (RunStatus.QUEUED, *ACTIVE)

ALLOWED: dict[str, frozenset[str]] = {
    RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED, RunStatus.FAILED}),
    RunStatus.RUNNING: frozenset(
        {
            RunStatus.SUCCEEDED,
            RunStatus.FAILED,
            RunStatus.TIMED_OUT,
            RunStatus.BLOCKED,
            RunStatus.CANCELLING,
            RunStatus.QUEUED,
        }
    ),
    # A cancel request is confirmed by the executing side (or settled by the reaper when
    # that side is gone); it never turns into another outcome.
    RunStatus.CANCELLING: frozenset({RunStatus.CANCELLED}),
    RunStatus.SUCCEEDED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.TIMED_OUT: frozenset(),
    RunStatus.BLOCKED: frozenset(),
    RunStatus.CANCELLED: frozenset(),
}

# The event each status change emits (``running -> queued`` emits ``run.retrying``).
EVENT_FOR_STATUS: dict[str, str] = {
    RunStatus.RUNNING: "run.started",
    RunStatus.QUEUED: "run.retrying",
    RunStatus.SUCCEEDED: "run.succeeded",
    RunStatus.FAILED: "run.failed",
    RunStatus.TIMED_OUT: "run.timed_out",
    RunStatus.BLOCKED: "run.blocked",
    RunStatus.CANCELLED: "run.cancelled",
}

TERMINAL_EVENTS: frozenset[str] = frozenset(EVENT_FOR_STATUS[s] for s in TERMINAL)


def can_transition(source: str, target: str) -> bool:
    """Whether ``source -> target`` is an edge of the status machine."""
    return target in ALLOWED.get(source, frozenset())


def sources_of(target: str) -> frozenset[str]:
    """Every status from which ``target`` may be reached."""
    return frozenset(s for s, targets in ALLOWED.items() if target in targets)


def is_terminal(status: str) -> bool:
    return status in TERMINAL
