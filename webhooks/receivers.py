"""Connects the webhooks app to the signals of the apps below it."""

from __future__ import annotations

from typing import Any


def _on_run_finished(sender: Any, *, run_id: Any, event: Any, **kwargs: Any) -> None:
    from webhooks.services import deliveries_for_run_finished

    if event is not None:
        deliveries_for_run_finished(run_id=run_id, event=event)


def _on_flags_recorded(sender: Any, *, flags: Any, **kwargs: Any) -> None:
    from webhooks.services import deliveries_for_flags

    deliveries_for_flags(flags=flags)


def connect() -> None:
    from agents.signals import run_finished
    from moderation.signals import flags_recorded

    run_finished.connect(_on_run_finished, dispatch_uid="webhooks.run_finished")
    flags_recorded.connect(_on_flags_recorded, dispatch_uid="webhooks.flags_recorded")
