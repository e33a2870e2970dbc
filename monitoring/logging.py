"""Logging setup: structlog for our own lines, the same renderer for the stdlib's.

JSON lines in production (``LOG_FORMAT=json``), coloured console output in development.
Context (request id, run id, agent, Celery task id) travels in structlog's contextvars,
so every line logged while handling a request or a run carries it.
"""

from __future__ import annotations

import logging
import logging.config

import structlog

_SHARED_PROCESSORS: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
]


def configure_logging(*, level: str = "INFO", fmt: str = "console") -> None:
    """Route stdlib logging and structlog through one formatter."""
    renderer: structlog.types.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        # Tracebacks as data, but never with frame locals: those hold request bodies,
        # tokens and revealed secrets.
        exc = [
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        ]
    else:
        # Plain tracebacks: with rich installed structlog would render them with rich,
        # frame locals included (secrets again), and slowly (a DEBUG run of the suite
        # spent minutes formatting the template engine's debug tracebacks).
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
        exc = []
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "structlog": {
                    "()": structlog.stdlib.ProcessorFormatter,
                    "processors": [
                        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        *exc,
                        renderer,
                    ],
                    "foreign_pre_chain": _SHARED_PROCESSORS,
                }
            },
            "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "structlog"}},
            "root": {"handlers": ["default"], "level": level},
            "loggers": {
                "django.db.backends": {"level": "INFO"},
                "daphne": {"level": "WARNING"},
                "httpx": {"level": "WARNING"},
                "httpcore": {"level": "WARNING"},
                # django-structlog logs each task's start (with the request id that
                # published it) and our runtime its end (run_finished); Celery's own
                # "received" and "succeeded" lines would repeat both without the ids.
                # Failures and retries are warnings or errors, and still show.
                "celery.app.trace": {"level": "WARNING"},
                "celery.worker.strategy": {"level": "WARNING"},
            },
        }
    )
    # Loggers cached on first use hold the processor list itself, so a second call (a test,
    # a reload) refills that list instead of handing structlog a new one they never see.
    processors = structlog.get_config()["processors"]
    processors[:] = [*_SHARED_PROCESSORS, structlog.stdlib.ProcessorFormatter.wrap_for_formatter]
    structlog.configure(
        processors=processors,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
