"""Who needs a push, and claiming it (docs/notifications.md, steps 2 and 6).

A burst (``parley.push.burst``) lists the members who need a notification; each member's
task claims it by raising the member's notified watermark, a compare-and-set that exactly
one task wins, so concurrent bursts, the sweep and a redelivered task never notify the same
messages twice. The sweep finds what a lost task or a down broker dropped: members behind
whose watermark is behind too, within the staleness cut-off.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import Iterable, Iterator

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, QuerySet
from django.utils import timezone

from messaging import presence
from messaging.models import Membership, Mention, Message

from . import markers, outbox
from .models import NotificationState, PushKind, PushSubscription

# Members per presence lookup and per page of the burst and sweep queries.
_CHUNK = 500


def push_level(membership: Membership, now: datetime | None = None) -> str:
    """Which messages may notify this member now: ``all``, ``mentions`` or ``none``.

    The member's ``notify`` setting, except while muted (``muted_until`` ahead): then nothing,
    mentions included. Read when a push is decided and again before every attempt, like the
    read mark, so a change of mind applies to pushes already on their way.
    """
    if membership.is_muted(now or timezone.now()):
        return Membership.Notify.NONE
    return membership.notify


def _pending(memberships: QuerySet[Membership]) -> QuerySet[Membership]:
    """Members behind, with a subscription, whose notified watermark is behind too.

    Muted members and those notified of nothing are among them: their claim records the
    decision (nothing to push), so unmuting later never pushes what came meanwhile."""
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


def members_to_notify(*, conversation_id: int) -> Iterator[int]:
    pairs = (_pending(Membership.objects.filter(conversation_id=conversation_id))
             .values_list("conversation_id", "user_id").iterator(chunk_size=_CHUNK))
    return (user_id for _, user_id in _offline(pairs))


def overdue_notifications(*, now: datetime | None = None) -> Iterator[tuple[int, int]]:
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
    """Members whose shown notification carries message ``seq`` (their markers are consumed)."""
    notified = NotificationState.objects.filter(conversation_id=conversation_id, user_id=OuterRef("user_id"),
                                                notified_seq__gte=seq)
    user_ids = list(Membership.objects.filter(conversation_id=conversation_id, read_seq__lt=seq)
                    .filter(Exists(notified)).values_list("user_id", flat=True))
    return markers.take_showing(conversation_id, user_ids, seq)


# --- Claiming a burst ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    """A member's notification to send: about messages after ``after_seq``, one pending push
    per subscription, each to hand to a ``deliver`` task."""

    after_seq: int
    handouts: list[outbox.Handout]


def _is_stale(message: Message) -> bool:
    return message.created_at < timezone.now() - timedelta(seconds=settings.PARLEY_PUSH_STALE_AFTER_SECONDS)


def newest_unread(conversation_id: int, user_id: int, after_seq: int, last_seq: int, *,
                  mentioning: bool = False) -> Message | None:
    """The newest message worth a push: after ``after_seq``, someone else's, not removed or
    deleted; with ``mentioning``, the newest of those that mention the user."""
    messages = (Message.objects.select_related("sender")
                .filter(conversation_id=conversation_id, seq__gt=after_seq, seq__lte=last_seq,
                        state=Message.State.VISIBLE)
                .exclude(sender_id=user_id))
    if mentioning:
        messages = messages.filter(pk__in=Mention.objects.filter(
            user_id=user_id, conversation_id=conversation_id, seq__gt=after_seq, seq__lte=last_seq,
        ).values("message_id"))
    return messages.order_by("-seq").first()


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
    leave without reading, the sweep looks again). Only removed messages, only ones older
    than the staleness cut-off, a member muted or notified of nothing, or, under
    ``mentions``, no mention among them -> the watermark moves (decided, so the sweep leaves
    it, and unmuting later does not push what came meanwhile) but no push goes out. The claim and its pending pushes commit together: a worker killed right
    after the claim leaves pushes the sweep finds (notifications.outbox), never a member
    marked notified with nothing on its way.
    """
    if not markers.enabled():  # keys removed while tasks were queued
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
    level = push_level(membership)
    newest = (None if level == Membership.Notify.NONE else
              newest_unread(conversation_id, user_id, after_seq, last_seq,
                            mentioning=level == Membership.Notify.MENTIONS))
    with transaction.atomic():
        if not _advance_notified(conversation_id, user_id, seen=notified, to=last_seq):
            return None
        if newest is None or _is_stale(newest):
            return None
        handouts = outbox.open_pushes(subscription_ids=subscription_ids_of(user_id=user_id),
                                      conversation_id=conversation_id, kind=PushKind.MESSAGE, after_seq=after_seq)
    return Claim(after_seq=after_seq, handouts=handouts)


def subscription_ids_of(*, user_id: int) -> list[int]:
    return list(PushSubscription.objects.filter(device__user_id=user_id).order_by("pk").values_list("pk", flat=True))
