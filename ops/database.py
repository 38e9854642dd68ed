"""The process's PostgreSQL connection pool, seen from operations (docs/operations.md,
"Database connections").

A pool of ``PARLEY_DB_POOL_MAX_SIZE`` connections per process makes every thread that needs
the database borrow one (chatproject/settings.py). When all are lent out, a borrower waits up
to ``PARLEY_DB_POOL_TIMEOUT_SECONDS``; past that, psycopg_pool raises ``PoolTimeout``, which
Django hands on as an ``OperationalError``. That is overload, not a fault: the edges answer it
as ``unavailable`` (REST 503 with ``Retry-After``, the socket's ``send.error``), never as a
server error, and the client retries with the same ``client_msg_id``.
"""
from __future__ import annotations

from psycopg_pool import PoolTimeout

from messaging.errors import Unavailable

RETRY_AFTER_MS = 1000


def pool_exhausted(error: BaseException) -> bool:
    """Whether ``error`` (or what it was raised from) is a wait for a pooled connection that ran out."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, PoolTimeout):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def busy() -> Unavailable:
    return Unavailable("the server is busy; try again", retry_after_ms=RETRY_AFTER_MS)
