"""Buffered fan-out for large channels: the batch window and the task that closes it.

messaging.fanout decides which conversations take this path (docs/architecture.md, "Large
channels"). The send path pays a cache flag and, once per window, a look at when the last
batch went out and an enqueue; a worker then publishes the window's messages as one
contiguous run.

The window only batches what arrives while one is in flight (issue 15): a message into a
channel that published no batch within the last ``PARLEY_BATCH_WINDOW_MS`` is flushed at once
(a lone message waits for no window), and one arriving sooner waits for the rest of that
window, so a busy channel still sends at most one batch per window.

Invariant: ``fanout_seq`` only moves forward, and a batch always starts right after it, so
batches are contiguous and in order. Two workers flushing the same channel at once may
publish overlapping runs; gateways drop what a connection already holds.
"""
from __future__ import annotations

import logging
import time

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from . import layer
from .events import batch_event
from .models import Conversation, Message
from .payloads import message_payload
from .selectors import MESSAGE_JOINS

logger = logging.getLogger(__name__)


def _pending_key(conversation_id: int) -> str:
    return f"parley:batch-pending:{conversation_id}"


def _flushed_key(conversation_id: int) -> str:
    return f"parley:batch-flushed:{conversation_id}"


def batch_delay(last_flush: float | None, now: float, window: float) -> float:
    """How long a newly opened window waits: nothing when the channel is idle (no batch went
    out within the last window), else what is left of the window since the last batch."""
    if last_flush is None:
        return 0.0
    return min(window, max(0.0, last_flush + window - now))


def schedule_channel_batch(conversation_id: int) -> None:
    """Open a batch window for a large channel unless one is already open.

    The pending flag is cleared by the batch task *before* it reads the store, so a message
    committed after that read opens a new window: none is stranded. The flag expires on its
    own, so a lost task only delays delivery until the next message or the gateways' tail
    check, never loses it.
    """
    window = settings.PARLEY_BATCH_WINDOW_MS / 1000
    try:
        opened = cache.add(_pending_key(conversation_id), 1, timeout=max(5, int(window * 20)))
        delay = batch_delay(cache.get(_flushed_key(conversation_id)), time.time(), window) if opened else 0.0
    except Exception:  # noqa: BLE001 - cache down: send a batch for this message alone
        logger.warning("batch window flag unavailable; flushing at once", exc_info=True)
        opened, delay = True, 0.0
    if not opened:
        return
    try:
        flush_channel_batch.apply_async((conversation_id,), countdown=delay)
    except Exception:  # noqa: BLE001 - broker down: the gateways' tail check repairs
        logger.warning("could not enqueue the batch of conversation %s", conversation_id, exc_info=True)


@shared_task(name="parley.fanout.flush_channel_batch", acks_late=True, ignore_result=True)
def flush_channel_batch(conversation_id: int) -> int:
    """Publish what a large channel stored since its last batch, as one contiguous run;
    returns the number of messages published."""
    cache.delete(_pending_key(conversation_id))  # before reading: later messages open a new window
    cache.set(_flushed_key(conversation_id), time.time(), timeout=max(5, int(settings.PARLEY_BATCH_WINDOW_MS / 50)))
    row = Conversation.objects.filter(pk=conversation_id).values("fanout_seq", "last_seq").first()
    if row is None or row["fanout_seq"] >= row["last_seq"]:
        return 0
    limit = settings.PARLEY_REPLAY_PAGE_SIZE
    messages = list(
        Message.objects.filter(conversation_id=conversation_id, seq__gt=row["fanout_seq"])
        .select_related(*MESSAGE_JOINS).order_by("seq")[:limit]
    )
    if not messages:
        return 0
    layer.publish(layer.conversation_group(conversation_id),
                  batch_event(conversation_id, [message_payload(m) for m in messages]))
    Conversation.objects.filter(pk=conversation_id, fanout_seq__lt=messages[-1].seq).update(
        fanout_seq=messages[-1].seq
    )
    if len(messages) == limit:
        schedule_channel_batch(conversation_id)  # more waiting: next window at once
    return len(messages)
