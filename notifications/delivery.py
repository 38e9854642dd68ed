"""One push to one subscription: re-check, build, send, and what a failure becomes
(docs/notifications.md, steps 3 to 5).

Every attempt re-checks the state first (:func:`prepare_delivery`): read -> no push; removed
-> no push; online -> no push. The service's answer decides what follows: 404/410 forgets
the subscription; 429, 5xx and network errors are retried with exponential backoff and
jitter (:func:`retry_countdown`); anything else, and the last failed retry, becomes a dead
letter an operator can retry or discard.
"""
from __future__ import annotations

import email.utils
import json
import logging
import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import requests
from django.conf import settings
from django.utils import timezone
from django.utils.text import Truncator
from py_vapid import Vapid
from pywebpush import WebPushException, webpush

from messaging import presence
from messaging.models import Conversation, Membership, Message

from . import markers
from .bursts import newest_unread
from .models import NotificationState, PushDeadLetter, PushSubscription

logger = logging.getLogger(__name__)

MESSAGE = PushDeadLetter.Kind.MESSAGE.value
CLOSE = PushDeadLetter.Kind.CLOSE.value
RETRACT = PushDeadLetter.Kind.RETRACT.value


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
        "seq": newest.seq, "unread": unread, "url": f"/c/{conversation.pk}", "tag": markers.tag(conversation.pk),
    }


def _close_payload(conversation: Conversation, *, read_seq: int) -> dict[str, Any]:
    # Also withdraws a notification whose message was removed: the browser only closes it.
    return {
        "type": CLOSE, "conversation": conversation.pk, "seq": read_seq,
        "unread": max(conversation.last_seq - read_seq, 0), "url": f"/c/{conversation.pk}",
        "tag": markers.tag(conversation.pk),
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
    if subscription is None or not markers.enabled():
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
        newest = newest_unread(conversation_id, user_id, max(membership.read_seq, after_seq), conversation.last_seq)
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
        markers.note_shown(delivery.conversation_id, delivery.user_id, seq=delivery.payload["seq"],
                           upto=delivery.last_seq)


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


def record_dead_letter(delivery: Delivery, *, error: str, attempts: int) -> PushDeadLetter:
    logger.warning("push %s to subscription %s failed %s times; dead letter: %s",
                   delivery.kind, delivery.subscription_id, attempts, error)
    return PushDeadLetter.objects.create(
        conversation_id=delivery.conversation_id, user_id=delivery.user_id,
        subscription_id=delivery.subscription_id, device_id=delivery.device_id, kind=delivery.kind,
        after_seq=delivery.after_seq, payload={k: v for k, v in delivery.payload.items() if k != "body"},
        last_error=error, attempts=attempts,
    )
