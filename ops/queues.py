"""Celery queue lag, measured on the broker (docs/operations.md, "Queue lag").

Every task published by a Parley process carries the time it was published (a message
header stamped by ``before_task_publish``). With the Redis broker a queue is a Redis list:
kombu pushes on the left and workers pop from the right, so the oldest waiting task is at
index -1. A queue's lag is the age of that task: ``now - max(published at, eta)``, or 0 for
an empty queue. It is read straight from the broker, so it keeps rising while every worker
is stuck, which a probe task waiting in the same queue could not report. Tasks a worker
has already reserved (ETA tasks held until due, prefetched ones) are not waiting and do not
count.

Costs two Redis commands per queue (``LLEN``, ``LINDEX -1``). Other brokers (and the eager
embedded default) have no lists to read: :func:`measure` returns nothing there.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import structlog
from celery.signals import before_task_publish, task_postrun, task_prerun
from django.conf import settings

from . import metrics

logger = logging.getLogger(__name__)

PUBLISHED_AT_HEADER = "parley_published_at"


@before_task_publish.connect
def _stamp_published_at(headers: dict | None = None, **_) -> None:
    if headers is not None:
        headers[PUBLISHED_AT_HEADER] = time.time()


@task_prerun.connect
def _bind_task(task_id: str | None = None, task=None, **_) -> None:
    structlog.contextvars.bind_contextvars(task_id=task_id, task=getattr(task, "name", None))


@task_postrun.connect
def _unbind_task(**_) -> None:
    structlog.contextvars.unbind_contextvars("task_id", "task")


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    length: int
    lag: float  # seconds


def queue_names() -> list[str]:
    return [queue.name for queue in settings.CELERY_TASK_QUEUES]


@lru_cache(maxsize=1)
def _broker(url: str):
    import redis

    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def _waiting_since(raw: bytes) -> float | None:
    headers = json.loads(raw).get("headers") or {}
    published = headers.get(PUBLISHED_AT_HEADER)
    if published is None:
        return None
    eta = headers.get("eta")
    if eta:
        published = max(published, datetime.fromisoformat(eta).timestamp())
    return float(published)


def measure(*, now: float | None = None) -> list[QueueDepth]:
    """Length and lag of every Celery queue (Redis broker only); sets the queue gauges."""
    url = settings.CELERY_BROKER_URL
    if settings.CELERY_TASK_ALWAYS_EAGER or not url.startswith(("redis://", "rediss://", "unix://")):
        return []
    now = time.time() if now is None else now
    client = _broker(url)
    pipeline = client.pipeline(transaction=False)
    names = queue_names()
    for name in names:
        pipeline.llen(name)
        pipeline.lindex(name, -1)
    replies = pipeline.execute()
    depths = []
    for index, name in enumerate(names):
        length, oldest = replies[2 * index], replies[2 * index + 1]
        since = _waiting_since(oldest) if oldest is not None else None
        depth = QueueDepth(name, int(length), max(now - since, 0.0) if since is not None else 0.0)
        metrics.QUEUE_LENGTH.labels(queue=name).set(depth.length)
        metrics.QUEUE_LAG.labels(queue=name).set(depth.lag)
        depths.append(depth)
    return depths
