"""The channel layer as a doorbell: group names, and publishing that never runs ahead of commit.

docs/architecture.md, "Live path". Invariants:

* Nothing leaves before commit. An event about a write is scheduled with
  :func:`publish_after_commit`; a rolled-back transaction sends nothing. The payload is
  serialized when it is scheduled, so one that cannot travel fails the request, not a later
  callback.
* The layer is a doorbell, not a mailbox (channels' own spec: a full channel drops group
  messages silently). A lost event is repaired by the gateway's gap fill and by replay from
  PostgreSQL, so a failure to publish is logged and never fails the write that caused it.
* A publish is bounded: it waits at most ``PARLEY_PUBLISH_TIMEOUT_SECONDS`` for the layer,
  then gives the doorbell up (logged; repaired like a lost one). The channel layer's Redis
  connections have no socket timeout (idle hubs must not be dropped), so an unanswering
  Redis would otherwise hold the sending request's thread, and its pooled database
  connection, forever; and a gateway could not shut down while one was waiting
  (docs/operations.md, "Restarts").
* A publish from sync code costs the sending thread little (issue 15, the send path's CPU).
  On Parley's Redis layer (chatproject.layers) the thread sends itself, with redis-py's
  blocking client: no event loop is woken for it. A layer without that (channels-redis' own
  class, or Sentinel hosts) is handed the publish on the caller's event loop when the thread
  belongs to one (a gateway's database threads, a REST view under daphne), and otherwise (a
  Celery worker, a script) on one long-lived loop thread per process, never
  ``async_to_sync``'s new loop and thread per call. Either way the caller waits, bounded as
  above. The in-memory layer (the embedded defaults, tests) keeps ``async_to_sync``: its
  queues belong to the loop that reads them.

Group shape: a conversation's group holds one channel per *gateway process* with a member
online, not one per socket; the gateway's hub dispatches to its sockets locally. User and
device groups address a person's or an installation's sockets the same way.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Coroutine, Mapping

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

# The prefix of each gateway process's one layer channel. channels-redis reads a process's
# channels of one prefix through one Redis list and one reader at a time; anything else in a
# gateway process that needs a reply channel (the /readyz probe) must share it, or it would
# wait behind the hub's receive forever.
GATEWAY_CHANNEL_PREFIX = "gateway."


def conversation_group(conversation_id: int) -> str:
    return f"conv.{conversation_id}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def device_group(device_id: Any) -> str:
    return f"device.{str(device_id).replace('-', '')}"


def group_id(group: str) -> int:
    """The id in a ``conv.<id>`` or ``user.<id>`` group name."""
    return int(group.split(".", 1)[1])


def after_commit(action: Callable[[], None]) -> None:
    """Run ``action`` once the current transaction commits (at once outside a transaction);
    an exception in it is logged and does not stop the callbacks after it."""
    def run() -> None:
        action()

    # Django's robust on_commit logs a failure by the callback's __qualname__, which a
    # functools.partial lacks (the log call itself would raise): name it after the action.
    run.__qualname__ = getattr(action, "__qualname__", None) or repr(action)
    transaction.on_commit(run, robust=True)


def publish(group: str, event: Mapping[str, Any]) -> None:
    """Ring ``group`` now, from sync code (see the module's docstring for how). ``published_at``
    (right after commit for after-commit events) lets the gateways time the fan-out dispatch."""
    stamped = {**event, "group": group, "published_at": time.time()}
    try:
        channel_layer = get_channel_layer()
        if isinstance(channel_layer, InMemoryChannelLayer):
            async_to_sync(_group_send)(group, stamped)
            return
        if getattr(channel_layer, "can_send_blocking", False):
            channel_layer.group_send_blocking(group, stamped, timeout=settings.PARLEY_PUBLISH_TIMEOUT_SECONDS)
            return
        loop = _callers_loop()
        # The publish's own bound (wait_for) ends it; the extra second only guards this wait.
        timeout = settings.PARLEY_PUBLISH_TIMEOUT_SECONDS + 1
        if loop is not None:
            asyncio.run_coroutine_threadsafe(_group_send(group, stamped), loop).result(timeout)
        else:
            _own_loop().run(_group_send(group, stamped), timeout=timeout)
    except Exception as error:  # noqa: BLE001 - the store has it; replay repairs a lost doorbell
        # One line, no traceback: during a Redis outage every send lands here.
        logger.warning("fan-out publish to %s failed (%s); gap fill and replay will repair",
                       group, _describe(error))


def _callers_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop whose work this thread is doing (asgiref's sync_to_async marks its
    threads with it), or None in a process or thread without one."""
    if getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None) != os.getpid():
        return None
    loop: asyncio.AbstractEventLoop | None = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    return loop if loop is not None and loop.is_running() and not loop.is_closed() else None


class _LoopThread:
    """One event loop on a daemon thread, for a process that has none (Celery's children, scripts)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="parley-publish", daemon=True).start()

    def run(self, coroutine: Coroutine[Any, Any, None], *, timeout: float) -> None:
        future: Future[None] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        future.result(timeout)


_loop_thread: _LoopThread | None = None
_loop_thread_lock = threading.Lock()


def _own_loop() -> _LoopThread:
    global _loop_thread
    with _loop_thread_lock:
        if _loop_thread is None or _loop_thread.pid != os.getpid():  # a forked child starts its own
            _loop_thread = _LoopThread()
        return _loop_thread


def publish_after_commit(group: str, event: Mapping[str, Any]) -> None:
    json.dumps(event)  # fail now, inside the request, if the payload cannot travel
    after_commit(lambda: publish(group, event))


async def apublish(group: str, event: Mapping[str, Any]) -> None:
    """From async code, for events with no transaction to wait for (a committed ack batch,
    typing, presence). Lossy like every doorbell; a failure is logged."""
    try:
        await _group_send(group, {**event, "group": group})
    except Exception as error:  # noqa: BLE001 - lossy by design; the store has what matters
        logger.warning("publish to %s failed (%s)", group, _describe(error))


async def _group_send(group: str, event: Mapping[str, Any]) -> None:
    """The layer's group send, given up after ``PARLEY_PUBLISH_TIMEOUT_SECONDS``."""
    await asyncio.wait_for(get_channel_layer().group_send(group, event),
                           settings.PARLEY_PUBLISH_TIMEOUT_SECONDS)


def _describe(error: Exception) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {settings.PARLEY_PUBLISH_TIMEOUT_SECONDS} s"
    return str(error) or type(error).__name__
