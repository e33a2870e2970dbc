"""The Celery application. Settings come from Django's settings under the CELERY_ prefix."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("switchyard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _serve_metrics(**kwargs: object) -> None:
    from monitoring.worker import serve_worker_metrics

    serve_worker_metrics(**kwargs)
