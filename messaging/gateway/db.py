"""The gateway's database threads: one pool per process, sized by a setting.

Everything a gateway process does with PostgreSQL (sends, hello and replay reads, gap
fills, ack flushes, presence) and the shared cache from sync code (rate limits) runs here,
off the event loop, never thread-sensitive (calls run in parallel instead of queueing
behind one shared thread). The pool is sized by ``PARLEY_GATEWAY_DB_THREADS`` rather than
the loop's default (cores + 4: 6 on two cores), because these calls mostly wait: on a busy
database a send holds its thread through the commit's WAL flush and the after-commit
publish, and six such waits would stall every other socket's reads. Each thread keeps its
own connection (``DJANGO_CONN_MAX_AGE``), so size PostgreSQL's ``max_connections`` for
gateways x threads.

Two more things live here:

* how long calls waited for a free thread (:func:`take_queue_wait`): when a flood fills the
  pool, sends wait behind it, and degraded mode's gateway-lag signal must see that;
* :func:`control`, a thread of its own for the process's tick (degraded mode, metrics), so the
  decision to shed load is never queued behind the load it should shed.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

from channels.db import database_sync_to_async
from django.conf import settings

_executor: ThreadPoolExecutor | None = None
_control_executor: ThreadPoolExecutor | None = None
_queue_wait = 0.0  # the longest wait for a thread since take_queue_wait (seconds)


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=settings.PARLEY_GATEWAY_DB_THREADS,
                                       thread_name_prefix="parley-db")
    return _executor


def db(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """``fn`` as a coroutine function running on the gateway's database threads."""

    async def call(*args: Any, **kwargs: Any) -> Any:
        submitted = time.monotonic()

        def timed(*a: Any, **k: Any) -> Any:
            global _queue_wait
            _queue_wait = max(_queue_wait, time.monotonic() - submitted)  # a racy max is fine here
            return fn(*a, **k)

        return await database_sync_to_async(timed, thread_sensitive=False, executor=_pool())(*args, **kwargs)

    return call


def take_queue_wait() -> float:
    """The longest a call waited for a database thread since the last call of this."""
    global _queue_wait
    waited, _queue_wait = _queue_wait, 0.0
    return waited


def control(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """``fn`` on the process's control thread (the tick), apart from socket work."""
    global _control_executor
    if _control_executor is None:
        _control_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parley-control")
    return database_sync_to_async(fn, thread_sensitive=False, executor=_control_executor)
