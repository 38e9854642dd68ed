"""A gateway process's database threads, sized by a setting.

Everything a gateway does with PostgreSQL (sends, hello and replay reads, gap fills, ack
flushes, presence) and with the shared cache from sync code (rate limits) runs here, off the
event loop, never thread-sensitive (calls run in parallel instead of queueing behind one
shared thread). The pool is sized by ``PARLEY_GATEWAY_DB_THREADS`` rather than the loop's
default (cores + 4: 6 on two cores), because these calls mostly wait: on a busy database a
send holds its thread through the commit's WAL flush and the after-commit publish, and six
such waits would stall every other socket's reads. A thread borrows a connection from the
process's pool for each call and gives it back when the call ends (channels'
``database_sync_to_async`` closes it, which returns it); the pool, not the thread count, bounds
the process's PostgreSQL connections (``PARLEY_DB_POOL_MAX_SIZE``, docs/operations.md). A call
that waited ``PARLEY_DB_POOL_TIMEOUT_SECONDS`` for a connection in vain raises ``Unavailable``
(the socket answers ``unavailable`` with a retry hint), like a REST request's 503.

Two more things live here:

* how long calls waited for a free thread (:meth:`DatabaseThreads.take_queue_wait`): when a
  flood fills the pool, sends wait behind it, and degraded mode's gateway-lag signal must
  see that;
* :meth:`DatabaseThreads.control`, a thread of its own for the process's tick (degraded mode,
  metrics), so the decision to shed load is never queued behind the load it should shed.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable, ParamSpec, TypeVar

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import OperationalError, close_old_connections

from ops.database import busy, pool_exhausted

P = ParamSpec("P")
R = TypeVar("R")


class DatabaseThreads:
    def __init__(self, size: int | None = None) -> None:
        self.pool = ThreadPoolExecutor(max_workers=size or settings.PARLEY_GATEWAY_DB_THREADS,
                                       thread_name_prefix="parley-db")
        self.control_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parley-control")
        self._queue_wait = 0.0  # the longest wait for a thread since take_queue_wait (seconds)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
        """``fn`` as a coroutine function running on the database threads."""

        async def call(*args: P.args, **kwargs: P.kwargs) -> R:
            submitted = time.monotonic()

            def timed(*a: Any, **k: Any) -> R:
                # A racy max is fine here: a lost update only drops one sample.
                self._queue_wait = max(self._queue_wait, time.monotonic() - submitted)
                return returning_the_connection(fn, *a, **k)

            try:
                return await database_sync_to_async(timed, thread_sensitive=False, executor=self.pool)(*args, **kwargs)
            except OperationalError as error:
                if pool_exhausted(error):  # every pooled connection lent out for too long
                    raise busy() from error
                raise

        return call

    def control(self, fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
        """``fn`` on the process's control thread (the tick), apart from socket work."""
        def returning(*a: P.args, **k: P.kwargs) -> R:
            return returning_the_connection(fn, *a, **k)

        return database_sync_to_async(returning, thread_sensitive=False, executor=self.control_thread)

    def take_queue_wait(self) -> float:
        """The longest a call waited for a database thread since the last call of this."""
        waited, self._queue_wait = self._queue_wait, 0.0
        return waited

    def shutdown(self) -> None:
        """Let the threads go once their calls finish (the runtime is stopping)."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.control_thread.shutdown(wait=False, cancel_futures=True)


def returning_the_connection(fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """``fn``, then the thread's pooled connection goes back to the pool.

    ``database_sync_to_async`` does this too, but through a module attribute that
    ``channels.testing`` replaces with a no-op while a communicator waits (to spare a test's
    own transaction): a call finishing in that window kept its connection until its thread
    died, and a long test session ran the pool dry. Closing here, in the thread that used the
    connection, holds wherever the call runs.
    """
    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()
