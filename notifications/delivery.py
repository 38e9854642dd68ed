"""One push to one subscription: re-check, build, send, and what a failure becomes
(docs/notifications.md, steps 3 to 5).

Every attempt takes its pending push first (notifications.outbox: only the task holding it
may work on it) and re-checks the state (:func:`prepare_delivery`): read -> no push; removed
-> no push; online -> no push. The endpoint is checked again and the push goes only to the
addresses that check approved (notifications.endpoints, notifications.transport). The
service's answer decides what follows: 404/410 forgets the subscription; 429, 5xx and network
errors are retried with exponential backoff and jitter (:func:`retry_countdown`); anything
else, an endpoint refused by the rules, and the last failed retry become a dead letter an
operator can retry or discard. Nothing the push service says is stored but its status code.
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
from django.db import transaction
from django.utils import timezone
from django.utils.text import Truncator
from py_vapid import Vapid
from pywebpush import WebPushException, webpush

from messaging import presence
from messaging.models import Conversation, Membership, Message

from . import endpoints, markers, outbox, transport, vapid
from .bursts import newest_unread, push_level
from .models import NotificationState, PushDeadLetter, PushKind, PushSubscription

logger = logging.getLogger(__name__)

MESSAGE = PushKind.MESSAGE.value
CLOSE = PushKind.CLOSE.value
RETRACT = PushKind.RETRACT.value


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
    handout: outbox.Handout
    attempt: int  # 1 for the first, across retries and hand-outs
    subscription_info: dict[str, Any] = field(repr=False)


def _message_payload(conversation: Conversation, newest: Message, *, unread: int,
                     mention: bool = False) -> dict[str, Any]:
    """The notification of a conversation's unread messages, showing ``newest``; a mention of
    the reader says so in the title (and ``mention: true``)."""
    sender = newest.sender.shown_name
    text = " ".join(newest.body.split())
    if not text and newest.attachments:  # a message of files alone: name them
        files = newest.attachments
        text = f"\U0001F4CE {files[0]['name'] if len(files) == 1 else f'{len(files)} files'}"
    preview = Truncator(text).chars(settings.PARLEY_PUSH_PREVIEW_CHARS)
    place = conversation.title or f"{conversation.kind} #{conversation.pk}"
    if mention:
        title, body = (f"{sender} mentioned you" if conversation.is_direct
                       else f"{sender} mentioned you in {place}"), preview
    elif conversation.is_direct:
        title, body = sender, preview
    else:
        title, body = place, f"{sender}: {preview}"
    payload = {
        "type": MESSAGE, "conversation": conversation.pk, "title": title, "body": body,
        "seq": newest.seq, "unread": unread, "url": f"/c/{conversation.pk}", "tag": markers.tag(conversation.pk),
    }
    if mention:
        payload["mention"] = True
    return payload


def _close_payload(conversation: Conversation, *, read_seq: int) -> dict[str, Any]:
    # Also withdraws a notification whose message was removed: the browser only closes it.
    return {
        "type": CLOSE, "conversation": conversation.pk, "seq": read_seq,
        "unread": max(conversation.last_seq - read_seq, 0), "url": f"/c/{conversation.pk}",
        "tag": markers.tag(conversation.pk),
    }


def prepare_delivery(*, subscription_id: int, conversation_id: int, kind: str, after_seq: int,
                     token: int) -> Delivery | None:
    """Start an attempt of a pending push; None: send nothing (and the push is finished, unless
    another task holds it now).

    A message push goes out only while the member is still behind, offline, not muted, and
    has a message after ``after_seq`` that is not removed (under ``notify: mentions``, one
    that mentions the member; under ``none``, never); it carries the newest such message
    that mentions the member, else the newest such message.
    A close goes out only while every notified message is read (a newer notification, if
    any, has replaced the one to close). A retraction (``after_seq`` is the removed
    message's seq) goes out unless the member has read that far meanwhile (then the read's
    own close has done it).
    """
    handout = outbox.Handout(subscription_id=subscription_id, conversation_id=conversation_id, kind=kind,
                             after_seq=after_seq, token=token)
    attempt = outbox.take(handout)
    if attempt is None:
        return None
    delivery = _build(handout, attempt=attempt)
    if delivery is None:
        outbox.finish(handout)
    return delivery


def _build(handout: outbox.Handout, *, attempt: int) -> Delivery | None:
    conversation_id, kind, after_seq = handout.conversation_id, handout.kind, handout.after_seq
    subscription = PushSubscription.objects.select_related("device").filter(pk=handout.subscription_id).first()
    if subscription is None or not markers.enabled():
        return None
    user_id = subscription.device.user_id
    membership = (Membership.objects.select_related("conversation")
                  .filter(conversation_id=conversation_id, user_id=user_id).first())
    if membership is None:
        return None
    conversation = membership.conversation
    if kind == MESSAGE:
        level = push_level(membership)
        if (level == Membership.Notify.NONE or membership.read_seq >= conversation.last_seq
                or presence.online_user_ids([user_id])):
            return None
        after = max(membership.read_seq, after_seq)
        # A mention among the unread is what the notification shows: it is what the reader
        # most needs to see (and the one reason to push under a "mentions" setting).
        mentioned = newest_unread(conversation_id, user_id, after, conversation.last_seq, mentioning=True)
        newest = mentioned if level == Membership.Notify.MENTIONS else (
            mentioned or newest_unread(conversation_id, user_id, after, conversation.last_seq))
        if newest is None:
            return None
        payload = _message_payload(conversation, newest, unread=conversation.last_seq - membership.read_seq,
                                   mention=mentioned is not None)
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
        payload=payload, handout=handout, attempt=attempt,
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
    """POST one encrypted push (RFC 8291 aes128gcm, VAPID signed) to the push service; on
    success, finish the pending push and remember what the device shows.

    Raises :class:`SubscriptionGone` or :class:`PushFailed` when the service refuses it, or when
    the push is refused before anything is sent (then nothing was contacted).
    """
    if delivery.attempt > settings.PARLEY_PUSH_MAX_RETRIES + 1:
        # Earlier attempts began and never finished (their workers died): the budget is spent
        # all the same, or a push that kills its worker would be handed out forever.
        raise PushFailed(f"{delivery.attempt - 1} attempts never finished", retryable=False)
    try:
        target = endpoints.check_push_target(delivery.subscription_info["endpoint"])
    except endpoints.EndpointRefused as refused:
        logger.warning("push %s to subscription %s refused before sending: %s", delivery.kind,
                       delivery.subscription_id, refused)
        raise PushFailed(f"refused before sending: {refused}", retryable=False) from None
    except endpoints.EndpointUnresolved:
        raise PushFailed("the push service's name did not resolve", retryable=True) from None
    keys = vapid.current()
    if keys is None:  # keys removed while the push waited
        raise PushFailed("no VAPID keys", retryable=False)
    failure: Exception | None = None
    with transport.exchange(target) as exchange:
        try:
            webpush(
                subscription_info=delivery.subscription_info,
                data=json.dumps(delivery.payload, separators=(",", ":")),
                vapid_private_key=_vapid(keys.private),
                vapid_claims={"sub": settings.PARLEY_VAPID_SUBJECT},  # webpush adds aud and exp to it
                ttl=settings.PARLEY_PUSH_TTL_SECONDS,
                headers={"Topic": delivery.payload["tag"], "Urgency": "high" if delivery.kind == MESSAGE else "normal"},
                timeout=settings.PARLEY_PUSH_TIMEOUT_SECONDS,
                requests_session=exchange.session,
            )
        except WebPushException as exc:
            failure = _failure(exc)
        except requests.RequestException as exc:
            # Our own words: an exception's text names the endpoint and may quote the peer.
            failure = PushFailed(f"network error ({type(exc).__name__})", retryable=True)
        # Checked whatever came back: an answer cut off by the deadline can still parse, since
        # http.client takes the end of the stream inside the headers for their end.
        if exchange.timed_out:
            failure = PushFailed(f"no answer within {settings.PARLEY_PUSH_TIMEOUT_SECONDS:g} s", retryable=True)
    if failure is not None:
        raise failure
    with transaction.atomic():
        outbox.finish(delivery.handout)
        if delivery.kind == MESSAGE:
            # What the device now shows: reading up to ``upto`` elsewhere closes it
            # (read_advanced), removing message ``seq`` withdraws it (message_removed).
            markers.note_shown(delivery.conversation_id, delivery.user_id, seq=delivery.payload["seq"],
                               upto=delivery.last_seq)


def _failure(exc: WebPushException) -> Exception:
    """What an answer other than 2xx means; only its status code is kept."""
    status = exc.status_code
    if status is None:  # pywebpush refused to build it (no response at all)
        return PushFailed("the push could not be prepared", retryable=True)
    if status in (404, 410):
        return SubscriptionGone(f"push service answered {status}")
    if 300 <= status < 400:
        return PushFailed(f"push service answered {status}; redirects are not followed", retryable=False)
    retryable = status == 429 or status >= 500
    return PushFailed(f"push service answered {status}", retryable=retryable, retry_after=_seconds(exc.retry_after))


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


def postpone(delivery: Delivery, *, seconds: float) -> None:
    """The next attempt comes in ``seconds``: the pending push stays held until then."""
    outbox.postpone(delivery.handout, seconds=seconds)


def forget_subscription(*, delivery: Delivery) -> None:
    """404/410: the subscription goes, and every push pending for it with it."""
    deleted, _ = PushSubscription.objects.filter(pk=delivery.subscription_id).delete()
    if deleted:
        logger.info("push subscription %s is gone at the push service; deleted", delivery.subscription_id)


def record_dead_letter(delivery: Delivery, *, error: str) -> PushDeadLetter:
    logger.warning("push %s to subscription %s failed %s times; dead letter: %s",
                   delivery.kind, delivery.subscription_id, delivery.attempt, error)
    with transaction.atomic():
        outbox.finish(delivery.handout)
        return PushDeadLetter.objects.create(
            conversation_id=delivery.conversation_id, user_id=delivery.user_id,
            subscription_id=delivery.subscription_id, device_id=delivery.device_id, kind=delivery.kind,
            after_seq=delivery.after_seq, payload={k: v for k, v in delivery.payload.items() if k != "body"},
            last_error=error, attempts=delivery.attempt,
        )
