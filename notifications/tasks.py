"""Celery tasks of the offline path: thin interfaces to notifications.bursts and .delivery.

Every task takes ids, re-checks the state it acts on, has an explicit ``parley.push.*`` name
(routed to the ``push`` queue) and acknowledges late: a worker killed mid-task has the
broker hand the task out again, and the re-checks make the second run harmless. Each push
is a pending row until an attempt finishes it (notifications.outbox), so a push whose worker
was killed, or whose task was lost, goes out with the next sweep instead of waiting for the
broker's visibility timeout. The flow is in docs/notifications.md.

``deliver`` returns its outcome (``sent``, ``gone``, ``dead-letter``, ``skipped``) and
retries by raising Celery's ``Retry``: operations count push outcomes from those, by the
task's name (ops.observers), so the offline path itself carries no metrics code.
"""
from __future__ import annotations

import time

from celery import Task, shared_task
from django.conf import settings

from . import bursts, delivery, markers, outbox


@shared_task(name="parley.push.due", acks_late=True)
def due(now: float | None = None) -> int:
    """Periodic (beat, every PARLEY_PUSH_DUE_POLL_SECONDS): start the bursts whose window has
    passed by ``now`` (default: the present), each once, however many processes opened them."""
    if not markers.enabled():
        return 0
    started = 0
    while True:
        taken = markers.take_due_bursts(now=time.time() if now is None else now,
                                        limit=settings.PARLEY_PUSH_DUE_BATCH)
        for conversation_id in taken:
            burst.delay(conversation_id)
        started += len(taken)
        if len(taken) < settings.PARLEY_PUSH_DUE_BATCH:
            return started


@shared_task(name="parley.push.burst", acks_late=True)
def burst(conversation_id: int) -> int:
    """A conversation's burst window has passed: one notify_member per member to notify."""
    markers.close_burst(conversation_id)  # taken already when started by `due`; not when eager
    count = 0
    for user_id in bursts.members_to_notify(conversation_id=conversation_id):
        notify_member.delay(conversation_id, user_id)
        count += 1
    return count


@shared_task(name="parley.push.notify_member", acks_late=True)
def notify_member(conversation_id: int, user_id: int) -> int:
    """Claim the member's notification of this burst; one delivery per subscription."""
    claim = bursts.claim_notification(conversation_id=conversation_id, user_id=user_id)
    if claim is None:
        return 0
    for handout in claim.handouts:
        deliver.delay(*handout.args)
    return len(claim.handouts)


@shared_task(name="parley.push.close", acks_late=True)
def close(conversation_id: int, user_id: int) -> int:
    """The member read what was notified elsewhere: close the notification on every device."""
    handouts = outbox.open_pushes(subscription_ids=bursts.subscription_ids_of(user_id=user_id),
                                  conversation_id=conversation_id, kind=delivery.CLOSE, after_seq=0)
    for handout in handouts:
        deliver.delay(*handout.args)
    return len(handouts)


@shared_task(name="parley.push.retract", acks_late=True)
def retract(conversation_id: int, seq: int) -> int:
    """Message ``seq`` was removed: withdraw the notifications that show it."""
    subscription_ids = [subscription_id
                        for user_id in bursts.take_notifications_showing(conversation_id=conversation_id, seq=seq)
                        for subscription_id in bursts.subscription_ids_of(user_id=user_id)]
    handouts = outbox.open_pushes(subscription_ids=subscription_ids, conversation_id=conversation_id,
                                  kind=delivery.RETRACT, after_seq=seq)
    for handout in handouts:
        deliver.delay(*handout.args)
    return len(handouts)


@shared_task(bind=True, name="parley.push.deliver", acks_late=True, max_retries=None)
def deliver(self: Task, subscription_id: int, conversation_id: int, kind: str, after_seq: int = 0,
            token: int = 0) -> str:
    """One attempt of a pending push (its identity and the ``token`` of this hand-out; a task
    whose token is no longer current does nothing). Retry policy: 429, 5xx and network errors
    retry up to PARLEY_PUSH_MAX_RETRIES times, counted across hand-outs, with exponential
    backoff and jitter; 404/410 deletes the subscription; other answers, an endpoint the rules
    refuse, and the last failed retry become a dead letter."""
    push = delivery.prepare_delivery(subscription_id=subscription_id, conversation_id=conversation_id,
                                     kind=kind, after_seq=after_seq, token=token)
    if push is None:
        return "skipped"
    try:
        delivery.send(push)
    except delivery.SubscriptionGone:
        delivery.forget_subscription(delivery=push)
        return "gone"
    except delivery.PushFailed as failure:
        if failure.retryable and push.attempt <= settings.PARLEY_PUSH_MAX_RETRIES:
            countdown = delivery.retry_countdown(push.attempt - 1, retry_after=failure.retry_after)
            delivery.postpone(push, seconds=countdown)
            raise self.retry(countdown=countdown, exc=failure)
        delivery.record_dead_letter(push, error=str(failure))
        return "dead-letter"
    return "sent"


@shared_task(name="parley.push.sweep", acks_late=True)
def sweep() -> int:
    """Periodic (beat): re-enqueue the notifications a lost task or a down broker dropped, and
    hand out again the pushes whose lease ran out (a worker killed mid-push)."""
    if not markers.enabled():
        return 0
    count = 0
    for conversation_id, user_id in bursts.overdue_notifications():
        notify_member.delay(conversation_id, user_id)
        count += 1
    for handout in outbox.hand_out_overdue():
        deliver.delay(*handout.args)
        count += 1
    return count
