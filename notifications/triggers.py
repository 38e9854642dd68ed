"""What starts push work: the core's announcements, and an operator's retry of dead letters.

Connected in ``NotificationsConfig.ready()`` (messaging.hooks): the core announces, this app
reacts, and the core never imports it. Every receiver runs after the write's commit and only
enqueues; the tasks re-check the state when they run (docs/notifications.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from messaging import hooks, layer

from . import markers, outbox, tasks
from .models import PushDeadLetter


def on_message_stored(event: hooks.MessageStored) -> None:
    """A message committed: the first of a window opens the conversation's burst, which the
    beat's ``parley.push.due`` starts once the window has passed. With tasks run in-process
    (the embedded defaults: no worker, no beat) the burst runs at once instead."""
    if (markers.enabled() and markers.open_burst(event.conversation_id)
            and settings.CELERY_TASK_ALWAYS_EAGER):
        tasks.burst.delay(event.conversation_id)


def on_read_advanced(event: hooks.ReadAdvanced) -> None:
    """A read mark moved: close the notification it made stale, on every device."""
    if markers.enabled() and markers.take_shown_if_read(event.conversation_id, event.user_id, event.read_seq):
        tasks.close.delay(event.conversation_id, event.user_id)


def on_message_removed(event: hooks.MessageRemoved) -> None:
    """A moderator removed a message: withdraw the notifications that show it."""
    if markers.enabled():
        tasks.retract.delay(event.conversation_id, event.seq)


def connect() -> None:
    hooks.message_stored.connect(on_message_stored)
    hooks.read_advanced.connect(on_read_advanced)
    hooks.message_removed.connect(on_message_removed)


@dataclass(frozen=True)
class RetryResult:
    retried: int
    dropped: int  # their subscription is gone: nothing to send them to


def do_retry_dead_letters(dead_letters: QuerySet[PushDeadLetter]) -> RetryResult:
    """Send dead letters again with a fresh retry budget, and remove them from the table.

    The attempt re-checks the state like any other: what was read or removed meanwhile is
    not sent. A dead letter whose subscription is gone has nowhere to go and is removed.
    """
    with transaction.atomic():
        # Locked so two operators retrying the same letter send it once; re-queried without
        # the caller's joins, which FOR UPDATE cannot lock.
        letters = list(PushDeadLetter.objects.select_for_update().filter(pk__in=dead_letters.values("pk")))
        PushDeadLetter.objects.filter(pk__in=[letter.pk for letter in letters]).delete()
        retried = 0
        for letter in letters:
            if letter.subscription_id is None:
                continue
            (handout,) = outbox.open_pushes(subscription_ids=[letter.subscription_id],
                                            conversation_id=letter.conversation_id, kind=letter.kind,
                                            after_seq=letter.after_seq)
            layer.after_commit(partial(tasks.deliver.delay, *handout.args))
            retried += 1
    return RetryResult(retried=retried, dropped=len(letters) - retried)
