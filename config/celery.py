"""The Celery application. Settings come from Django's settings under the CELERY_ prefix."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import celeryd_after_setup, worker_init, worker_shutting_down
from django_structlog.celery.signals import modify_context_before_task_publish
from django_structlog.celery.steps import DjangoStructLogInitStep

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("switchyard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _serve_metrics(**kwargs: object) -> None:
    from monitoring.worker import serve_worker_metrics

    serve_worker_metrics(**kwargs)


@worker_init.connect
def _warm(**kwargs: object) -> None:
    from config.warmup import warm_process

    warm_process()


# django-structlog: the publisher's request id travels in the task's headers, and the
# worker binds it with the task id before the task runs (DESIGN section 10). The worker
# step connects the worker-side receivers; DJANGO_STRUCTLOG_CELERY_ENABLED the
# publisher's.
app.steps["worker"].add(DjangoStructLogInitStep)


def _carry_log_context(context: dict[str, Any], **kwargs: object) -> None:
    from agents.runtime.executors import carried_log_context

    carried = carried_log_context(context)
    context.clear()
    context.update(carried)


modify_context_before_task_publish.connect(_carry_log_context, weak=False)


@celeryd_after_setup.connect
def _count_pool_threads(instance: Any, **kwargs: object) -> None:
    """Admission keeps one pool thread from waiting for a slot (executors.admit_run)."""
    from agents.runtime.executors import set_pool_threads

    set_pool_threads(int(instance.concurrency))


@worker_shutting_down.connect
def _drain_runs(**kwargs: object) -> None:
    """A warm shutdown lets the runs in flight finish (they are not Celery tasks any
    more once admitted); what is left after the grace period the reaper recovers."""
    from django.conf import settings

    from agents.runtime.executors import drain

    drain(settings.WORKER_SHUTDOWN_GRACE_S)
