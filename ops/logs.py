"""Structured logs (structlog) for every process: one line per event, with its context.

Every ``logging`` call in Parley (and in Django, Channels, Celery) goes through structlog's
formatter, so each line carries the level, the logger, a UTC timestamp and whatever the
current context bound: ``request_id`` (ops.middleware, per HTTP request), ``connection_id``,
``user_id`` and ``device_id`` (the WebSocket consumer, per socket), ``task_id`` and ``task``
(ops.queues, per Celery task). ``PARLEY_LOG_FORMAT=json`` writes one JSON object per line
for a log pipeline; the default, ``console``, writes ``key=value`` lines for people.

Imported by the settings module: no Django imports here.
"""
from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def formatter(*, fmt: str = "console") -> logging.Formatter:
    """The formatter every handler uses: stdlib records rendered by structlog, context merged."""
    if fmt == "json":
        finishing: list[Any] = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        # Plain tracebacks: rich's (the default when rich is installed) render every frame's
        # locals, which costs seconds per logged 404 and can print secrets held in locals.
        finishing = [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(),
                                                   exception_formatter=structlog.dev.plain_traceback)]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *finishing],
    )


def configure_logging(*, level: str, fmt: str) -> dict[str, Any]:
    """Configure structlog and return the LOGGING dict that routes stdlib logging through it."""
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.PositionalArgumentsFormatter(),
                    structlog.processors.StackInfoRenderer(),
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structlog": {"()": "ops.logs.formatter", "fmt": fmt}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structlog"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"django.channels.server": {"level": "WARNING"}},
    }
