"""Celery tasks of the core: buffered fan-out for large channels (the batch window and the
task that closes it), and the sweep of uploaded files (messaging.attachments).

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

from . import attachments, layer
from .events import batch_event, membership_event
from .mentions import with_unread_mentions
from .models import Conversation, Membership, Message
from .payloads import conversation_payload, message_payload
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


@shared_task(name="parley.bulk.sweep_uploads", ignore_result=True)
def sweep_uploads() -> int:
    """Periodic (beat, every PARLEY_UPLOAD_SWEEP_INTERVAL_SECONDS): delete uploads never
    attached within PARLEY_UPLOAD_ORPHAN_SECONDS and the files of deleted messages whose
    deletion after commit failed. No retry: the next run is the retry. Returns files deleted."""
    return attachments.sweep()


# Members per page when a large conversation's new title or topic is announced.
_ANNOUNCE_PAGE = 500


@shared_task(name="parley.bulk.announce_conversation_updated", acks_late=True, ignore_result=True)
def announce_conversation_updated(conversation_id: int) -> int:
    """Tell every member of a large conversation its new state (a title or a topic), a page of
    members at a time, each with their own ``me``; returns how many were told. Reads the
    conversation as it is now, so a late or repeated task sends the latest state."""
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is None:
        return 0
    told, after = 0, 0
    members = with_unread_mentions(Membership.objects.filter(conversation=conversation)).order_by("pk")
    while page := list(members.filter(pk__gt=after)[:_ANNOUNCE_PAGE]):
        for membership in page:
            layer.publish(layer.user_group(membership.user_id),
                          membership_event("updated", conversation_payload(conversation, membership)))
        told += len(page)
        after = page[-1].pk
    return told
