"""Pushes decided and not finished yet, and who may work on them (docs/notifications.md,
"Unfinished pushes").

Why a table and not the broker alone: Celery acknowledges push tasks late, and with the Redis
broker a task whose worker was killed comes back only after the broker's visibility timeout
(an hour: a transport-wide option of kombu's Redis transport, not a per-queue one, and it must
outlast the longest countdown of every queue). The member is already marked notified by then,
so nothing else would look. Here every push is a row until an attempt finishes it, and the
sweep hands out again the rows whose lease ran out.

A hand-out is the push's identity plus a random ``token``. Only the task holding the current
token may start an attempt (:func:`take`) or finish the push; the sweep's new hand-out makes
the old task, should the broker deliver it after all, do nothing.
"""
from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from .models import PendingPush

# Rows per statement when the sweep takes pushes over.
_CHUNK = 500


@dataclass(frozen=True)
class Handout:
    """One pending push, given to one task: exactly the task's arguments."""

    subscription_id: int
    conversation_id: int
    kind: str
    after_seq: int
    token: int

    @property
    def args(self) -> tuple[int, int, str, int, int]:
        return self.subscription_id, self.conversation_id, self.kind, self.after_seq, self.token


def _held(handout: Handout) -> QuerySet[PendingPush]:
    """The push, if this hand-out still holds it."""
    return PendingPush.objects.filter(subscription_id=handout.subscription_id, conversation_id=handout.conversation_id,
                                      kind=handout.kind, after_seq=handout.after_seq, token=handout.token)


def _token() -> int:
    return secrets.randbits(62) + 1  # never 0, which a task queued before this table carries


def _lease(extra_seconds: float = 0.0) -> datetime:
    # Never shorter than two attempts' time budget: a lease that ran out under a live attempt
    # would have the sweep send the push a second time.
    lease = max(settings.PARLEY_PUSH_LEASE_SECONDS, 2 * settings.PARLEY_PUSH_TIMEOUT_SECONDS)
    return timezone.now() + timedelta(seconds=lease + extra_seconds)


def _handout(row: PendingPush) -> Handout:
    return Handout(subscription_id=row.subscription_id, conversation_id=row.conversation_id, kind=row.kind,
                   after_seq=row.after_seq, token=row.token)


def open_pushes(*, subscription_ids: Iterable[int], conversation_id: int, kind: str, after_seq: int) -> list[Handout]:
    """Record pushes to send, one per subscription; call it in the transaction that decides them.

    A push already pending with the same identity (a second close while the first waits for a
    retry) is renewed instead: a fresh retry budget, and the new task is the one holding it.
    """
    rows = [PendingPush(subscription_id=subscription_id, conversation_id=conversation_id, kind=kind,
                        after_seq=after_seq, token=_token(), lease_until=_lease())
            for subscription_id in subscription_ids]
    PendingPush.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=["subscription", "conversation", "kind", "after_seq"],
        update_fields=["token", "attempts", "lease_until"],
    )
    return [_handout(row) for row in rows]


def take(handout: Handout) -> int | None:
    """Start an attempt: renew the lease and count it. The attempt's number (1 for the first),
    or None when the push is finished or was handed to another task."""
    with transaction.atomic():
        row = _held(handout).select_for_update().first()
        if row is None:
            return None
        row.attempts += 1
        row.lease_until = _lease()
        row.save(update_fields=["attempts", "lease_until"])
        return int(row.attempts)


def postpone(handout: Handout, *, seconds: float) -> None:
    """A retry waits ``seconds``: the lease covers the wait and then the retry's own attempt."""
    _held(handout).update(lease_until=_lease(seconds))


def finish(handout: Handout) -> None:
    _held(handout).delete()


def hand_out_overdue(*, now: datetime | None = None) -> list[Handout]:
    """What the sweep takes over: pushes whose lease ran out, each under a new token.

    Pushes decided before the staleness cut-off (``PARLEY_PUSH_STALE_AFTER_SECONDS``) are
    dropped instead: after an outage nothing old is pushed, as everywhere else.
    """
    now = now or timezone.now()
    overdue = PendingPush.objects.filter(lease_until__lt=now)
    overdue.filter(created_at__lt=now - timedelta(seconds=settings.PARLEY_PUSH_STALE_AFTER_SECONDS)).delete()
    handouts: list[Handout] = []
    while True:
        with transaction.atomic():
            # SKIP LOCKED: a row an attempt is renewing right now is not overdue any more.
            rows = list(overdue.select_for_update(skip_locked=True).order_by("lease_until")[:_CHUNK])
            if not rows:
                return handouts
            for row in rows:
                row.token, row.lease_until = _token(), _lease()
            PendingPush.objects.bulk_update(rows, ["token", "lease_until"])
        handouts += [_handout(row) for row in rows]
