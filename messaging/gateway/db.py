"""The gateway's database threads: one pool per process, sized by a setting.

Everything a gateway process does with PostgreSQL (sends, hello and replay reads, gap
fills, ack flushes, presence, the tick) runs here, off the event loop, never thread-sensitive
(calls run in parallel instead of queueing behind one shared thread). The pool is sized by
``PARLEY_GATEWAY_DB_THREADS`` rather than the loop's default (cores + 4: 6 on two cores),
because these calls mostly wait: on a busy database a send holds its thread through the
commit's WAL flush and the after-commit publish, and six such waits would stall every other
socket's reads. Each thread keeps its own connection (``DJANGO_CONN_MAX_AGE``), so size
PostgreSQL's ``max_connections`` for gateways x threads.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

from channels.db import database_sync_to_async
from django.conf import settings

_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=settings.PARLEY_GATEWAY_DB_THREADS,
                                       thread_name_prefix="parley-db")
    return _executor


def db(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """``fn`` as a coroutine function running on the gateway's database threads."""
    return database_sync_to_async(fn, thread_sensitive=False, executor=_pool())
