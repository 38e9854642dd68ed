"""Celery tasks of the offline path: thin interfaces to notifications.bursts and .delivery.

Every task takes ids, re-checks the state it acts on, has an explicit ``parley.push.*`` name
(routed to the ``push`` queue) and acknowledges late: a worker killed mid-task has the
broker hand the task out again, and the re-checks make the second run harmless. A task
lost outright is repaired by the sweep. The flow is in docs/notifications.md.

``deliver`` returns its outcome (``sent``, ``gone``, ``dead-letter``, ``skipped``) and
retries by raising Celery's ``Retry``: operations count push outcomes from those, by the
task's name (ops.observers), so the offline path itself carries no metrics code.
"""
from __future__ import annotations

from celery import Task, shared_task
from django.conf import settings

from . import bursts, delivery, markers


@shared_task(name="parley.push.burst", acks_late=True)
def burst(conversation_id: int) -> int:
    """A conversation's burst window has passed: one notify_member per member to notify."""
    markers.close_burst(conversation_id)
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
    for subscription_id in claim.subscription_ids:
        deliver.delay(subscription_id, conversation_id, delivery.MESSAGE, claim.after_seq)
    return len(claim.subscription_ids)


@shared_task(name="parley.push.close", acks_late=True)
def close(conversation_id: int, user_id: int) -> int:
    """The member read what was notified elsewhere: close the notification on every device."""
    subscription_ids = bursts.subscription_ids_of(user_id=user_id)
    for subscription_id in subscription_ids:
        deliver.delay(subscription_id, conversation_id, delivery.CLOSE, 0)
    return len(subscription_ids)


@shared_task(name="parley.push.retract", acks_late=True)
def retract(conversation_id: int, seq: int) -> int:
    """Message ``seq`` was removed: withdraw the notifications that show it."""
    count = 0
    for user_id in bursts.take_notifications_showing(conversation_id=conversation_id, seq=seq):
        for subscription_id in bursts.subscription_ids_of(user_id=user_id):
            deliver.delay(subscription_id, conversation_id, delivery.RETRACT, seq)
            count += 1
    return count


@shared_task(bind=True, name="parley.push.deliver", acks_late=True, max_retries=None)
def deliver(self: Task, subscription_id: int, conversation_id: int, kind: str, after_seq: int = 0) -> str:
    """One push to one subscription. Retry policy: 429, 5xx and network errors retry up to
    PARLEY_PUSH_MAX_RETRIES times with exponential backoff and jitter; 404/410 deletes the
    subscription; other answers, and the last failed retry, become a dead letter."""
    push = delivery.prepare_delivery(subscription_id=subscription_id, conversation_id=conversation_id,
                                     kind=kind, after_seq=after_seq)
    if push is None:
        return "skipped"
    try:
        delivery.send(push)
    except delivery.SubscriptionGone:
        delivery.forget_subscription(subscription_id=subscription_id)
        return "gone"
    except delivery.PushFailed as failure:
        retries = self.request.retries
        if failure.retryable and retries < settings.PARLEY_PUSH_MAX_RETRIES:
            raise self.retry(countdown=delivery.retry_countdown(retries, retry_after=failure.retry_after),
                             exc=failure)
        delivery.record_dead_letter(push, error=str(failure), attempts=retries + 1)
        return "dead-letter"
    return "sent"


@shared_task(name="parley.push.sweep", acks_late=True)
def sweep() -> int:
    """Periodic (beat): re-enqueue the notifications a lost task or a down broker dropped."""
    if not markers.enabled():
        return 0
    count = 0
    for conversation_id, user_id in bursts.overdue_notifications():
        notify_member.delay(conversation_id, user_id)
        count += 1
    return count
