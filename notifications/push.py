"""The offline path: one coalesced Web Push per conversation and burst for members with no
online device. The flow, its decisions and its settings are in docs/notifications.md.

1. A committed send rings the conversation's burst doorbell (:func:`message_stored`): the
   first message of a window schedules ``parley.push.burst`` after the window, later ones
   ride along. The send path pays one cache write and no query; the task decides.
2. The burst lists the members who need a push (:func:`members_to_notify`); each gets
   ``parley.push.notify_member``, which re-checks and *claims* the burst by raising the
   member's notified watermark (:func:`claim_notification`).
3. One ``parley.push.deliver`` per subscription sends the newest state, tagged with the
   conversation so it replaces the older notification. Every attempt re-checks first
   (:func:`prepare_delivery`): read -> no push; removed -> no push; online -> no push.
4. Failures retry with exponential backoff and jitter (:func:`retry_countdown`); 404/410
   deletes the subscription; after the last retry the push becomes a dead letter.
5. Reading elsewhere sends a ``close`` follow-up (:func:`read_advanced`); removing the
   message a notification shows withdraws it the same way (:func:`message_removed`).
6. ``parley.push.sweep`` finds members behind whose watermark is behind too, within the
   staleness cut-off, and enqueues them again (:func:`overdue_notifications`): a lost task
   never loses a notification, and an outage never ends in a storm of old pushes.
"""
from __future__ import annotations

import email.utils
import json
import logging
import random
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache, partial
from itertools import islice
from typing import Any, Iterable, Iterator

import requests
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, QuerySet
from django.utils import timezone
from django.utils.text import Truncator
from py_vapid import Vapid
from pywebpush import WebPushException, webpush

from messaging import fanout
from messaging.gateway import presence
from messaging.models import Conversation, Membership, Message

from . import tasks
from .models import NotificationState, PushDeadLetter, PushSubscription

logger = logging.getLogger(__name__)

MESSAGE = PushDeadLetter.Kind.MESSAGE.value
CLOSE = PushDeadLetter.Kind.CLOSE.value
RETRACT = PushDeadLetter.Kind.RETRACT.value

# Members per presence lookup and per page of the burst and sweep queries.
_CHUNK = 500


def enabled() -> bool:
    """Pushes go out only with VAPID keys configured (``manage.py vapid_keys``)."""
    return bool(settings.PARLEY_VAPID_PRIVATE_KEY)


def tag(conversation_id: int) -> str:
    """The notification tag, also the push service's Topic (at most 32 base64url characters),
    so the newest notification of a conversation replaces the older one on the device and in
    the push service's queue."""
    return f"conversation-{conversation_id}"


def _burst_key(conversation_id: int) -> str:
    return f"parley:push:burst:{conversation_id}"


def _shown_key(conversation_id: int, user_id: int) -> str:
    return f"parley:push:shown:{conversation_id}:{user_id}"


# --- Hooks: called by the write path inside its transaction -------------------------------------

def message_stored(*, conversation_id: int) -> None:
    """A message is being stored: once it commits, start the conversation's burst."""
    if enabled():
        fanout.after_commit(partial(_ring_burst, conversation_id))


def _ring_burst(conversation_id: int) -> None:
    window = settings.PARLEY_PUSH_BURST_SECONDS
    # The key outlives the window so a slow queue does not start a second burst; a lost task
    # leaves it to expire, and the sweep has caught up by then.
    if cache.add(_burst_key(conversation_id), 1, timeout=window + settings.PARLEY_PUSH_SWEEP_INTERVAL_SECONDS):
        tasks.burst.apply_async((conversation_id,), countdown=window)


def read_advanced(*, conversation_id: int, user_id: int, read_seq: int) -> None:
    """A read mark is advancing: once it commits, close the notification it made stale."""
    if enabled():
        fanout.after_commit(partial(_close_if_read, conversation_id, user_id, read_seq))


def _close_if_read(conversation_id: int, user_id: int, read_seq: int) -> None:
    # The marker says what the shown notification covers; only reading all of it closes the
    # notification, and the delete lets one reader (of racing ones) send the close.
    key = _shown_key(conversation_id, user_id)
    shown = cache.get(key)
    if shown is not None and read_seq >= shown["upto"] and cache.delete(key):
        tasks.close.delay(conversation_id, user_id)


def message_removed(*, conversation_id: int, seq: int) -> None:
    """A message is being removed: once that commits, withdraw notifications that show it."""
    if enabled():
        fanout.after_commit(partial(tasks.retract.delay, conversation_id, seq))


# --- Who needs a push ---------------------------------------------------------------------------

def _pending(memberships: QuerySet[Membership]) -> QuerySet[Membership]:
    """Members behind, with a subscription, whose notified watermark is behind too."""
    subscribed = PushSubscription.objects.filter(device__user_id=OuterRef("user_id"))
    notified = NotificationState.objects.filter(
        conversation_id=OuterRef("conversation_id"), user_id=OuterRef("user_id"),
        notified_seq__gte=OuterRef("conversation__last_seq"),
    )
    return (memberships.filter(read_seq__lt=F("conversation__last_seq"))
            .filter(Exists(subscribed)).exclude(Exists(notified)))


def _offline(pairs: Iterable[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """(conversation, user) pairs whose user has no greeted socket, one presence lookup per chunk."""
    pairs = iter(pairs)
    while chunk := list(islice(pairs, _CHUNK)):
        online = presence.online_user_ids(sorted({user_id for _, user_id in chunk}))
        yield from ((c, u) for c, u in chunk if u not in online)


def begin_burst(*, conversation_id: int) -> None:
    # Cleared before reading: a message committing from now on starts the next burst, and
    # every one committed before is in what this burst reads.
    cache.delete(_burst_key(conversation_id))


def members_to_notify(*, conversation_id: int) -> Iterator[int]:
    pairs = (_pending(Membership.objects.filter(conversation_id=conversation_id))
             .values_list("conversation_id", "user_id").iterator(chunk_size=_CHUNK))
    return (user_id for _, user_id in _offline(pairs))


def overdue_notifications(*, now=None) -> Iterator[tuple[int, int]]:
    """What the sweep re-enqueues: members pending in conversations active within the staleness
    cut-off, and quiet for two burst windows (a burst still under way is left to its task)."""
    now = now or timezone.now()
    memberships = Membership.objects.filter(
        conversation__last_activity_at__gte=now - timedelta(seconds=settings.PARLEY_PUSH_STALE_AFTER_SECONDS),
        conversation__last_activity_at__lte=now - timedelta(seconds=2 * settings.PARLEY_PUSH_BURST_SECONDS),
    )
    pairs = (_pending(memberships).order_by().values_list("conversation_id", "user_id")
             .iterator(chunk_size=_CHUNK))
    return _offline(pairs)


def take_notifications_showing(*, conversation_id: int, seq: int) -> list[int]:
    """Members whose shown notification carries message ``seq``; their markers are consumed,
    so a later read sends no second close."""
    notified = NotificationState.objects.filter(conversation_id=conversation_id, user_id=OuterRef("user_id"),
                                                notified_seq__gte=seq)
    user_ids = list(Membership.objects.filter(conversation_id=conversation_id, read_seq__lt=seq)
                    .filter(Exists(notified)).values_list("user_id", flat=True))
    keys = {_shown_key(conversation_id, user_id): user_id for user_id in user_ids}
    showing = [keys[key] for key, shown in cache.get_many(list(keys)).items() if shown["seq"] == seq]
    cache.delete_many([_shown_key(conversation_id, user_id) for user_id in showing])
    return showing


# --- Claiming a burst ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    """A member's notification to send: about messages after ``after_seq``, to these subscriptions."""

    after_seq: int
    subscription_ids: list[int]


def _is_stale(message: Message) -> bool:
    return message.created_at < timezone.now() - timedelta(seconds=settings.PARLEY_PUSH_STALE_AFTER_SECONDS)


def _newest_unread(conversation_id: int, user_id: int, after_seq: int, last_seq: int) -> Message | None:
    """The newest message worth a push: after ``after_seq``, someone else's, not removed."""
    return (Message.objects.select_related("sender")
            .filter(conversation_id=conversation_id, seq__gt=after_seq, seq__lte=last_seq,
                    state=Message.State.VISIBLE)
            .exclude(sender_id=user_id).order_by("-seq").first())


def _advance_notified(conversation_id: int, user_id: int, *, seen: int, to: int) -> bool:
    """Compare-and-set the notified watermark from the value this task read: True if it won."""
    won = NotificationState.objects.filter(
        conversation_id=conversation_id, user_id=user_id, notified_seq=seen,
    ).update(notified_seq=to, updated_at=timezone.now())
    if won or seen:
        return bool(won)
    try:
        with transaction.atomic():
            NotificationState.objects.create(conversation_id=conversation_id, user_id=user_id, notified_seq=to)
        return True
    except IntegrityError:  # another task created the row first: it won
        return False


def claim_notification(*, conversation_id: int, user_id: int) -> Claim | None:
    """Decide one member's notification for a burst, and claim it; None when nothing goes out.

    Re-checks against the current state: not a member, everything read, or already notified
    -> nothing. Online -> nothing and nothing recorded (the socket delivers; should the user
    leave without reading, the sweep looks again). Only removed messages, or only ones older
    than the staleness cut-off -> the watermark moves (decided, so the sweep leaves it) but
    no push goes out.
    """
    if not enabled():  # keys removed while tasks were queued
        return None
    membership = (Membership.objects.select_related("conversation")
                  .filter(conversation_id=conversation_id, user_id=user_id).first())
    if membership is None:
        return None
    last_seq = membership.conversation.last_seq
    notified = (NotificationState.objects.filter(conversation_id=conversation_id, user_id=user_id)
                .values_list("notified_seq", flat=True).first() or 0)
    after_seq = max(membership.read_seq, notified)
    if after_seq >= last_seq or presence.online_user_ids([user_id]):
        return None
    newest = _newest_unread(conversation_id, user_id, after_seq, last_seq)
    if not _advance_notified(conversation_id, user_id, seen=notified, to=last_seq):
        return None
    if newest is None or _is_stale(newest):
        return None
    return Claim(after_seq=after_seq, subscription_ids=subscription_ids_of(user_id=user_id))


def subscription_ids_of(*, user_id: int) -> list[int]:
    return list(PushSubscription.objects.filter(device__user_id=user_id).order_by("pk").values_list("pk", flat=True))


# --- One delivery attempt -----------------------------------------------------------------------

@dataclass(frozen=True)
class Delivery:
    """One push to one subscription, ready to send."""

    subscription_id: int
    device_id: Any
    user_id: int
    conversation_id: int
    kind: str
    after_seq: int
    last_seq: int  # the conversation's, when the payload was built
    payload: dict[str, Any]
    subscription_info: dict[str, Any] = field(repr=False)


def _message_payload(conversation: Conversation, newest: Message, *, unread: int) -> dict[str, Any]:
    sender = newest.sender.shown_name
    preview = Truncator(" ".join(newest.body.split())).chars(settings.PARLEY_PUSH_PREVIEW_CHARS)
    if conversation.is_direct:
        title, body = sender, preview
    else:
        title, body = conversation.title or f"{conversation.kind} #{conversation.pk}", f"{sender}: {preview}"
    return {
        "type": MESSAGE, "conversation": conversation.pk, "title": title, "body": body,
        "seq": newest.seq, "unread": unread, "url": f"/c/{conversation.pk}", "tag": tag(conversation.pk),
    }


def _close_payload(conversation: Conversation, *, read_seq: int) -> dict[str, Any]:
    # Also withdraws a notification whose message was removed: the browser only closes it.
    return {
        "type": CLOSE, "conversation": conversation.pk, "seq": read_seq,
        "unread": max(conversation.last_seq - read_seq, 0), "url": f"/c/{conversation.pk}",
        "tag": tag(conversation.pk),
    }


def prepare_delivery(*, subscription_id: int, conversation_id: int, kind: str, after_seq: int) -> Delivery | None:
    """Re-check the state before an attempt and build the newest payload; None: send nothing.

    A message push goes out only while the member is still behind, offline, and has a
    message after ``after_seq`` that is not removed; it carries the newest such message.
    A close goes out only while every notified message is read (a newer notification, if
    any, has replaced the one to close). A retraction (``after_seq`` is the removed
    message's seq) goes out unless the member has read that far meanwhile (then the read's
    own close has done it).
    """
    subscription = PushSubscription.objects.select_related("device").filter(pk=subscription_id).first()
    if subscription is None or not enabled():
        return None
    user_id = subscription.device.user_id
    membership = (Membership.objects.select_related("conversation")
                  .filter(conversation_id=conversation_id, user_id=user_id).first())
    if membership is None:
        return None
    conversation = membership.conversation
    if kind == MESSAGE:
        if membership.read_seq >= conversation.last_seq or presence.online_user_ids([user_id]):
            return None
        newest = _newest_unread(conversation_id, user_id, max(membership.read_seq, after_seq), conversation.last_seq)
        if newest is None:
            return None
        payload = _message_payload(conversation, newest, unread=conversation.last_seq - membership.read_seq)
    elif kind == CLOSE:
        notified = (NotificationState.objects.filter(conversation_id=conversation_id, user_id=user_id)
                    .values_list("notified_seq", flat=True).first() or 0)
        if membership.read_seq < notified:
            return None
        payload = _close_payload(conversation, read_seq=membership.read_seq)
    elif kind == RETRACT:
        if membership.read_seq >= after_seq:
            return None
        payload = _close_payload(conversation, read_seq=membership.read_seq)
    else:
        raise ValueError(f"unknown push kind {kind!r}")
    return Delivery(
        subscription_id=subscription.pk, device_id=subscription.device_id, user_id=user_id,
        conversation_id=conversation_id, kind=kind, after_seq=after_seq, last_seq=conversation.last_seq,
        payload=payload,
        subscription_info=subscription.as_webpush_info(),
    )


class PushFailed(Exception):
    """The push service did not take the push. ``retryable``: worth another attempt later."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class SubscriptionGone(Exception):
    """404/410: the browser unsubscribed or the push service expired the subscription."""


@lru_cache(maxsize=4)
def _vapid(private_key: str) -> Vapid:
    return Vapid.from_string(private_key=private_key)


def send(delivery: Delivery) -> None:
    """POST one encrypted push (RFC 8291 aes128gcm, VAPID signed) to the push service.

    Raises :class:`SubscriptionGone` or :class:`PushFailed` when the service refuses it.
    """
    try:
        webpush(
            subscription_info=delivery.subscription_info,
            data=json.dumps(delivery.payload, separators=(",", ":")),
            vapid_private_key=_vapid(settings.PARLEY_VAPID_PRIVATE_KEY),
            vapid_claims={"sub": settings.PARLEY_VAPID_SUBJECT},  # webpush adds aud and exp to it
            ttl=settings.PARLEY_PUSH_TTL_SECONDS,
            headers={"Topic": delivery.payload["tag"], "Urgency": "high" if delivery.kind == MESSAGE else "normal"},
            timeout=settings.PARLEY_PUSH_TIMEOUT_SECONDS,
        )
    except WebPushException as exc:
        status = exc.status_code
        if status in (404, 410):
            raise SubscriptionGone(f"push service answered {status}") from exc
        retryable = status is None or status == 429 or status >= 500
        raise PushFailed(f"push service answered {status}: {_reason(exc)}", retryable=retryable,
                         retry_after=_seconds(exc.retry_after)) from exc
    except requests.RequestException as exc:
        raise PushFailed(f"{type(exc).__name__}: {exc}", retryable=True) from exc
    if delivery.kind == MESSAGE:
        # What the device now shows: reading up to ``upto`` elsewhere closes it
        # (read_advanced), removing message ``seq`` withdraws it (message_removed).
        cache.set(_shown_key(delivery.conversation_id, delivery.user_id),
                  {"seq": delivery.payload["seq"], "upto": delivery.last_seq},
                  timeout=settings.PARLEY_PUSH_CLOSE_WINDOW_SECONDS)


def _reason(exc: WebPushException) -> str:
    response = exc.response
    text = getattr(response, "text", "") or getattr(response, "reason", "") or ""
    return Truncator(text.strip()).chars(500)


def _seconds(retry_after: str | None) -> float | None:
    """A Retry-After header (delta seconds or an HTTP date) as seconds from now."""
    if not retry_after:
        return None
    if retry_after.strip().isdigit():
        return float(retry_after)
    try:
        when = email.utils.parsedate_to_datetime(retry_after)
    except (TypeError, ValueError):
        return None
    return max((when - timezone.now()).total_seconds(), 0.0)


def retry_countdown(retries: int, *, retry_after: float | None = None) -> float:
    """Seconds before retry number ``retries + 1``: exponential backoff with "equal jitter".

    The n-th retry waits between half and all of ``base * 2**n`` (capped), so waits grow with
    every failure while the retries of many pushes that failed together spread out instead
    of hitting a recovering push service at once. A Retry-After from the service is honoured
    up to the cap.
    """
    ceiling = min(settings.PARLEY_PUSH_BACKOFF_MAX_SECONDS, settings.PARLEY_PUSH_BACKOFF_BASE_SECONDS * 2 ** retries)
    wait = ceiling / 2 + random.uniform(0, ceiling / 2)
    if retry_after:
        wait = max(wait, min(retry_after, settings.PARLEY_PUSH_BACKOFF_MAX_SECONDS))
    return wait


def forget_subscription(*, subscription_id: int) -> None:
    deleted, _ = PushSubscription.objects.filter(pk=subscription_id).delete()
    if deleted:
        logger.info("push subscription %s is gone at the push service; deleted", subscription_id)


# --- Dead letters -------------------------------------------------------------------------------

def record_dead_letter(delivery: Delivery, *, error: str, attempts: int) -> PushDeadLetter:
    logger.warning("push %s to subscription %s failed %s times; dead letter: %s",
                   delivery.kind, delivery.subscription_id, attempts, error)
    return PushDeadLetter.objects.create(
        conversation_id=delivery.conversation_id, user_id=delivery.user_id,
        subscription_id=delivery.subscription_id, device_id=delivery.device_id, kind=delivery.kind,
        after_seq=delivery.after_seq, payload={k: v for k, v in delivery.payload.items() if k != "body"},
        last_error=error, attempts=attempts,
    )


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
        retried = [letter for letter in letters if letter.subscription_id is not None]
        PushDeadLetter.objects.filter(pk__in=[letter.pk for letter in letters]).delete()
        for letter in retried:
            fanout.after_commit(partial(
                tasks.deliver.delay, letter.subscription_id, letter.conversation_id, letter.kind, letter.after_seq,
            ))
    return RetryResult(retried=len(retried), dropped=len(letters) - len(retried))
