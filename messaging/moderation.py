"""Moderation use cases (CONTRACT, "Moderation"; threats and decisions in docs/security.md).

Members flag messages. Moderators (``MODERATE_PERMISSION``, the "Moderators" group) work the
queue and decide: dismiss a flag, remove a message, suspend or reinstate a user, set a
conversation's slow mode. Every decision writes one :class:`ModerationDecision`, the audit
trail, in the transaction that makes it.

Removal tombstones a message in one transaction: ``state`` becomes ``removed``, ``body``
is blanked, and the text moves to the decision as evidence. Blanking (rather than hiding
the body in every serializer) means no read path, present or future (history, replay, gap
fills, pushes, message info, the admin, a database export), can leak it; only the
moderators' queue reads it back, from the decision. After commit the members' sockets get
``message.removed``; devices that were away get it at their next ``hello``
(messaging.replay.removals_to_replay).

Same prefixes as the rest of the core: ``check_*`` validates untrusted input, ``access_*``
authorizes, ``do_*`` changes state and schedules its events after commit.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, TypedDict

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from . import fanout
from .access import access_message, as_id, require_not_suspended
from .changes import record_change, withdraw_text
from .checks import check_text
from .conversations import announce_updated
from .errors import Conflict, Forbidden, Invalid, NotFound
from .events import CLOSE_FORBIDDEN
from .models import (
    MODERATE_PERMISSION,
    Conversation,
    Flag,
    Membership,
    Message,
    MessageChange,
    MessageEdit,
    ModerationDecision,
    User,
    char_limit,
)
from .payloads import (
    ConversationPayload,
    MessagePayload,
    UserPayload,
    conversation_payload,
    message_payload,
    user_payload,
)
from .selectors import MESSAGE_JOINS

Action = ModerationDecision.Action
RESOLUTIONS = (Action.DISMISS.value, Action.REMOVE_MESSAGE.value)
NOTE_MAX_LENGTH = char_limit(Flag, "note")


# --- check_* ---------------------------------------------------------------------------------

def check_flag_reason(reason: Any) -> str:
    if not isinstance(reason, str) or reason not in Flag.Reason.values:
        choices = ", ".join(Flag.Reason.values)
        raise Invalid("reason is not one of the choices", fields={"reason": [f"One of: {choices}."]})
    return reason


def check_note(note: Any) -> str:
    if note is None:
        return ""
    return check_text(note, "note", max_length=NOTE_MAX_LENGTH).strip()


def check_resolution(action: Any) -> str:
    if not isinstance(action, str) or action not in RESOLUTIONS:
        choices = ", ".join(RESOLUTIONS)
        raise Invalid("action is not one of the choices", fields={"action": [f"One of: {choices}."]})
    return action


def check_slow_mode_seconds(seconds: Any) -> int:
    limit = settings.PARLEY_SLOW_MODE_MAX_SECONDS
    if not isinstance(seconds, int) or isinstance(seconds, bool) or not 0 <= seconds <= limit:
        raise Invalid("seconds is out of range", fields={"seconds": [f"An integer from 0 (off) to {limit}."]})
    return seconds


def _as_id(value: Any, what: str) -> int:
    found = as_id(value)
    if found is None:
        raise NotFound(f"{what} not found")
    return found


# --- access_* --------------------------------------------------------------------------------

def access_moderator(user: User) -> None:
    """Only moderators pass; everyone else gets Forbidden (the queue's existence is no secret).
    A suspended moderator's moderation is suspended with the rest."""
    if not (user.is_active and user.has_perm(MODERATE_PERMISSION)):
        raise Forbidden("only moderators may do this")
    require_not_suspended(user)


# --- Flags -----------------------------------------------------------------------------------

def do_flag_message(*, reporter: User, message_id: Any, reason: Any, note: Any = None) -> Flag:
    """Flag a message of a conversation the reporter belongs to (else NotFound).

    One open flag per reporter and message: the partial unique constraint decides, so two
    concurrent flags cannot both get in; the loser gets :class:`Conflict`. A removed message
    has nothing left to report (Conflict).
    """
    require_not_suspended(reporter)
    reason = check_flag_reason(reason)
    note = check_note(note)
    message, _membership = access_message(reporter, message_id)
    if message.is_removed:
        raise Conflict("this message was already removed")
    try:
        with transaction.atomic():
            return Flag.objects.create(message=message, reporter=reporter, reason=reason, note=note,
                                       reported_body=message.body)
    except IntegrityError:
        raise Conflict("you already have an open flag on this message") from None


def flag_queue(*, status: str) -> QuerySet[Flag]:
    """Open flags oldest first (a queue); resolved ones most recently resolved first."""
    flags = Flag.objects.filter(status=status).select_related(
        "reporter", "message__sender", "message__reply_to__sender", "message__conversation", "decision__moderator")
    if status == Flag.Status.OPEN:
        return flags.order_by("created_at", "id")
    return flags.order_by("-resolved_at", "-id")


# REST-only shapes: their datetimes are rendered by the API's JSON encoder.
class DecisionPayload(TypedDict):
    id: int
    action: str
    note: str
    moderator: UserPayload
    created_at: datetime


class EditPayload(TypedDict):
    body: str
    replaced_at: datetime


class FlagPayload(TypedDict):
    id: int
    reason: str
    note: str
    status: str
    created_at: datetime
    resolved_at: datetime | None
    reporter: UserPayload
    message: MessagePayload
    evidence: str
    reported_body: str
    edits: list[EditPayload]
    conversation: ConversationPayload
    decision: DecisionPayload | None


def flag_payloads(flags: Iterable[Flag]) -> list[FlagPayload]:
    """The moderators' view of flags. ``evidence`` is the text now: the body, or once removed
    (or deleted by a moderator), the text the decision kept; ``reported_body`` what it said
    when reported; ``edits`` the bodies it had before each edit, oldest first (a sender's
    delete erases them with the body). Two queries for the whole page."""
    flags = list(flags)
    removed = [f.message_id for f in flags if f.message.is_removed]
    kept = dict(ModerationDecision.objects.filter(message_id__in=removed,
                                                  action__in=(Action.REMOVE_MESSAGE, Action.DELETE_MESSAGE))
                .exclude(removed_body="").values_list("message_id", "removed_body")) if removed else {}
    edits: dict[int, list[EditPayload]] = {}
    for edit in MessageEdit.objects.filter(message_id__in={f.message_id for f in flags}):
        edits.setdefault(edit.message_id, []).append({"body": edit.body, "replaced_at": edit.replaced_at})
    return [{
        "id": flag.pk,
        "reason": flag.reason,
        "note": flag.note,
        "status": flag.status,
        "created_at": flag.created_at,
        "resolved_at": flag.resolved_at,
        "reporter": user_payload(flag.reporter),
        "message": message_payload(flag.message),
        "evidence": kept.get(flag.message_id, "") if flag.message.is_removed else flag.message.body,
        "reported_body": flag.reported_body,
        "edits": edits.get(flag.message_id, []),
        "conversation": conversation_payload(flag.message.conversation, None),
        "decision": None if flag.decision is None else {
            "id": flag.decision.pk,
            "action": flag.decision.action,
            "note": flag.decision.note,
            "moderator": user_payload(flag.decision.moderator),
            "created_at": flag.decision.created_at,
        },
    } for flag in flags]


def do_resolve_flag(*, moderator: User, flag_id: Any, action: Any, note: Any = None) -> Flag:
    """Decide an open flag: ``dismiss`` resolves it; ``remove_message`` tombstones its message
    and resolves every open flag of that message. Either way one decision is recorded.

    Locks the message, then its flags, the same order whoever resolves which flag of it, so
    two moderators deciding flags of one message queue up instead of deadlocking; the
    second finds its flag resolved (Conflict).
    """
    access_moderator(moderator)
    action = check_resolution(action)
    note = check_note(note)
    flag_id = _as_id(flag_id, "flag")
    message_id = Flag.objects.filter(pk=flag_id).values_list("message_id", flat=True).first()
    if message_id is None:
        raise NotFound("flag not found")
    with transaction.atomic():
        message = (Message.objects.select_for_update(no_key=True, of=("self",))
                   .select_related(*MESSAGE_JOINS).get(pk=message_id))
        flag = Flag.objects.select_for_update().get(pk=flag_id)
        if flag.status != Flag.Status.OPEN:
            raise Conflict("this flag is already resolved")
        decision = ModerationDecision(moderator=moderator, action=action, note=note, message=message,
                                      conversation_id=message.conversation_id, user_id=message.sender_id)
        if action == Action.REMOVE_MESSAGE:
            resolved = Flag.objects.filter(message=message, status=Flag.Status.OPEN)
            _tombstone(message, decision)
        else:
            resolved = Flag.objects.filter(pk=flag.pk)
            decision.save()
        resolved.update(status=Flag.Status.RESOLVED, resolved_at=timezone.now(), decision=decision)
    return flag_queue(status=Flag.Status.RESOLVED).get(pk=flag.pk)


def _tombstone(message: Message, decision: ModerationDecision) -> None:
    """Remove a message (its row locked by the caller): the text moves to the decision, and
    the removal is a ``removed`` change on the conversation's change stream."""
    if message.is_removed:  # removed or deleted meanwhile: nothing more to hide
        decision.save()
        return
    decision.removed_body = message.body
    decision.save()
    record_change(message, kind=MessageChange.Kind.REMOVED, actor=decision.moderator,
                  write=lambda change: {**withdraw_text(message), "state": Message.State.REMOVED})


# --- What a moderator sees around a flag, and the audit trail -----------------------------------

class FlagContextPayload(TypedDict):
    flag: int
    conversation: ConversationPayload
    messages: list[MessagePayload]
    flagged_seq: int
    sender: UserPayload
    sender_suspended: bool
    can_open: bool


def flag_context(*, moderator: User, flag_id: Any) -> FlagContextPayload:
    """The flagged message with ``PARLEY_MODERATION_CONTEXT_MESSAGES`` messages before and after
    it (as members see them: removed ones are tombstones), whether its sender is suspended, and
    whether the moderator can open the conversation in the app (a member, or a public channel)."""
    access_moderator(moderator)
    flag = (Flag.objects.select_related("message__conversation", "message__sender")
            .filter(pk=_as_id(flag_id, "flag")).first())
    if flag is None:
        raise NotFound("flag not found")
    message, conversation = flag.message, flag.message.conversation
    around = settings.PARLEY_MODERATION_CONTEXT_MESSAGES
    messages = (Message.objects.filter(conversation=conversation, seq__gte=message.seq - around,
                                       seq__lte=message.seq + around)
                .select_related("sender").order_by("seq"))
    membership = Membership.objects.filter(conversation=conversation, user=moderator).first()
    return {
        "flag": flag.pk,
        "conversation": conversation_payload(conversation, membership),
        "messages": [message_payload(m) for m in messages],
        "flagged_seq": message.seq,
        "sender": user_payload(message.sender),
        "sender_suspended": message.sender.is_suspended,
        "can_open": membership is not None or (conversation.kind == Conversation.Kind.CHANNEL and conversation.public),
    }


class AuditPayload(TypedDict):
    id: int
    action: str
    note: str
    created_at: datetime
    moderator: UserPayload
    user: UserPayload | None
    conversation: ConversationPayload | None
    message_id: int | None
    slow_mode_seconds: int | None


def decision_log(*, moderator: User) -> QuerySet[ModerationDecision]:
    """Every moderation decision, latest first: the audit trail."""
    access_moderator(moderator)
    return (ModerationDecision.objects.select_related("moderator", "user", "conversation")
            .order_by("-created_at", "-id"))


def audit_payloads(decisions: Iterable[ModerationDecision]) -> list[AuditPayload]:
    return [{
        "id": d.pk,
        "action": d.action,
        "note": d.note,
        "created_at": d.created_at,
        "moderator": user_payload(d.moderator),
        "user": user_payload(d.user) if d.user else None,
        "conversation": conversation_payload(d.conversation, None) if d.conversation else None,
        "message_id": d.message_id,
        "slow_mode_seconds": d.slow_mode_seconds,
    } for d in decisions]


# --- Users and conversations ---------------------------------------------------------------------

def do_set_suspended(*, moderator: User, user_id: Any, suspended: bool, note: Any = None) -> User:
    """Suspend a user (no sending, sockets closed and refused with 4403) or lift it.

    The user can still log in and read over REST. A change records a decision; asking for
    the state the user is already in changes and records nothing.
    """
    access_moderator(moderator)
    note = check_note(note)
    if not isinstance(suspended, bool):
        raise Invalid("suspended must be a boolean", fields={"suspended": ["Must be true or false."]})
    user = User.objects.filter(pk=_as_id(user_id, "user")).first()
    if user is None:
        raise NotFound("user not found")
    if suspended and (user.pk == moderator.pk or user.is_superuser):
        raise Forbidden("you cannot suspend yourself or a superuser")
    with transaction.atomic():
        changed = User.objects.filter(pk=user.pk, suspended_at__isnull=suspended).update(
            suspended_at=timezone.now() if suspended else None)
        if changed:
            ModerationDecision.objects.create(moderator=moderator, user=user, note=note,
                                              action=Action.SUSPEND if suspended else Action.UNSUSPEND)
            if suspended:  # and new handshakes are refused with the same 4403 (gateway.auth)
                fanout.close_user_sockets(user_id=user.pk, code=CLOSE_FORBIDDEN)
    user.refresh_from_db(fields=["suspended_at"])
    return user


def do_set_slow_mode(*, moderator: User, conversation_id: Any, seconds: Any,
                     note: Any = None) -> Conversation:
    """Each member may send one message per ``seconds`` in the conversation (0 turns it off);
    moderators and staff are exempt when PARLEY_RATE_LIMIT_EXEMPT_MODERATORS is on."""
    access_moderator(moderator)
    seconds = check_slow_mode_seconds(seconds)
    note = check_note(note)
    conversation = Conversation.objects.filter(pk=_as_id(conversation_id, "conversation")).first()
    if conversation is None:
        raise NotFound("conversation not found")
    with transaction.atomic():
        Conversation.objects.filter(pk=conversation.pk).update(slow_mode_seconds=seconds)
        conversation.slow_mode_seconds = seconds
        ModerationDecision.objects.create(moderator=moderator, action=Action.SLOW_MODE, note=note,
                                          conversation=conversation, slow_mode_seconds=seconds)
        announce_updated(conversation)  # members' clients learn the new pace
    return conversation
