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

Group shape: a conversation's group holds one channel per *gateway process* with a member
online, not one per socket; the gateway's hub dispatches to its sockets locally. User and
device groups address a person's or an installation's sockets the same way.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Callable, Mapping

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
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
    """Ring ``group`` now. ``published_at`` (right after commit for after-commit events) lets
    the gateways time the fan-out dispatch."""
    stamped = {**event, "group": group, "published_at": time.time()}
    try:
        async_to_sync(_group_send)(group, stamped)
    except Exception as error:  # noqa: BLE001 - the store has it; replay repairs a lost doorbell
        # One line, no traceback: during a Redis outage every send lands here.
        logger.warning("fan-out publish to %s failed (%s); gap fill and replay will repair",
                       group, _describe(error))


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
