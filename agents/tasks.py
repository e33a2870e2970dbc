"""Celery tasks: thin wrappers that take ids and call one service or coroutine."""

from __future__ import annotations

from celery import shared_task
from celery.exceptions import Reject

from agents.runtime.executors import BROKER_ERRORS, HandBack, admit_run


@shared_task(name="agents.execute_run", acks_late=True, reject_on_worker_lost=True)
def execute_run_task(run_id: str) -> bool:
    """Admit the run (acknowledged once it is claimed; see executors.admit_run).

    A full worker hands the message back by publishing it again (to the queue's tail, for
    any worker with room) before this one is acknowledged: a crash in between leaves a
    duplicate, which claims nothing twice. Should the broker refuse, the message is
    rejected for requeueing, or comes back after the visibility timeout.
    """
    try:
        return admit_run(run_id)
    except HandBack:
        try:
            execute_run_task.apply_async((run_id,), retry=False)
        except BROKER_ERRORS as exc:
            raise Reject(exc, requeue=True) from exc
        return False


@shared_task(name="agents.purge_expired_tokens", ignore_result=True)
def purge_expired_tokens_task() -> int:
    from agents.token_services import tokens_purge_expired

    return tokens_purge_expired()


@shared_task(name="agents.reap_runs", ignore_result=True)
def reap_runs_task() -> dict[str, int]:
    from agents.services import runs_reap

    return runs_reap()
