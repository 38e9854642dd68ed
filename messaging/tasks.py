"""Celery tasks of the messaging app. Tasks take ids and re-read state; names are stable."""
from __future__ import annotations

from celery import shared_task
from django.conf import settings

from . import fanout
from .events import message_payload
from .models import Conversation, Message


@shared_task(name="parley.fanout.flush_channel_batch", acks_late=True, ignore_result=True)
def flush_channel_batch(conversation_id: int) -> int:
    """Publish what a large channel stored since its last batch, as one contiguous run.

    Invariant: ``fanout_seq`` only moves forward, and a batch always starts right after it,
    so batches are contiguous and in order. Two workers flushing the same channel at once
    may publish overlapping runs; gateways drop what a connection already holds. Returns the
    number of messages published.
    """
    fanout.batch_window_closed(conversation_id)  # before reading: later messages open a new window
    row = Conversation.objects.filter(pk=conversation_id).values("fanout_seq", "last_seq").first()
    if row is None or row["fanout_seq"] >= row["last_seq"]:
        return 0
    limit = settings.PARLEY_REPLAY_PAGE_SIZE
    messages = list(
        Message.objects.filter(conversation_id=conversation_id, seq__gt=row["fanout_seq"])
        .select_related("sender").order_by("seq")[:limit]
    )
    if not messages:
        return 0
    fanout.publish_batch(conversation_id=conversation_id, messages=[message_payload(m) for m in messages])
    Conversation.objects.filter(pk=conversation_id, fanout_seq__lt=messages[-1].seq).update(
        fanout_seq=messages[-1].seq
    )
    if len(messages) == limit:
        fanout.schedule_channel_batch(conversation_id)  # more waiting: next window at once
    return len(messages)
