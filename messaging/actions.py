"""Use-case functions: every edge (REST view, WebSocket consumer, task, admin action,
management command) changes messaging state through these.

Prefixes are promises (as in Zulip):

* ``check_*`` validates untrusted input and raises :class:`Invalid` with field errors;
* ``access_*`` returns an object only if the actor may see it, else :class:`NotFound`
  (never revealing that a private conversation exists);
* ``do_*`` performs a validated change in one short transaction and schedules its events
  after commit (messaging.fanout).

The flows are drawn in docs/architecture.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Subquery
from django.db.models.functions import Greatest
from django.utils import timezone

from . import fanout, metrics, ratelimit
from .errors import Conflict, Forbidden, Invalid, NotFound
from .events import MessagePayload, conversation_payload, message_payload
from .models import Conversation, Device, Membership, Message, User


# --- check_*: untrusted input ---------------------------------------------------------------

def check_body(body: Any) -> str:
    if not isinstance(body, str):
        raise Invalid("body must be a string", fields={"body": ["Must be a string."]})
    if not body.strip():
        raise Invalid("body may not be empty", fields={"body": ["May not be empty."]})
    limit = settings.PARLEY_MAX_BODY_LENGTH
    if len(body) > limit:
        raise Invalid(f"body is longer than {limit} characters",
                      fields={"body": [f"At most {limit} characters."]})
    return body


def check_client_msg_id(client_msg_id: Any) -> str:
    if not isinstance(client_msg_id, str) or not client_msg_id:
        raise Invalid("client_msg_id is required", fields={"client_msg_id": ["A 1-64 character string is required."]})
    if len(client_msg_id) > settings.PARLEY_MAX_CLIENT_MSG_ID_LENGTH:
        raise Invalid("client_msg_id is too long", fields={"client_msg_id": ["At most 64 characters."]})
    return client_msg_id


def check_seq(seq: Any, field: str = "seq") -> int:
    # bool is an int in Python; a JSON true is not a seq.
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or seq > 2**62:
        raise Invalid(f"{field} must be a non-negative integer", fields={field: ["A non-negative integer is required."]})
    return seq


# --- access_*: authorization ----------------------------------------------------------------

def access_membership(user: User, conversation_id: Any) -> Membership:
    """The user's membership with its conversation loaded, or NotFound (member or not, alike)."""
    try:
        conversation_id = int(conversation_id)
    except (TypeError, ValueError):
        raise NotFound("conversation not found") from None
    membership = (
        Membership.objects.select_related("conversation")
        .filter(conversation_id=conversation_id, user=user)
        .first()
    )
    if membership is None:
        raise NotFound("conversation not found")
    return membership


def access_conversation(user: User, conversation_id: Any) -> tuple[Conversation, Membership | None]:
    """A conversation the user may see: any they belong to, and public channels."""
    try:
        membership = access_membership(user, conversation_id)
        return membership.conversation, membership
    except NotFound:
        conversation = Conversation.objects.filter(
            pk=conversation_id if str(conversation_id).isdigit() else None, public=True,
            kind=Conversation.Kind.CHANNEL,
        ).first()
        if conversation is None:
            raise
        return conversation, None


def access_message(user: User, message_id: Any) -> tuple[Message, Membership]:
    """A message of a conversation the user belongs to, or NotFound."""
    try:
        message_id = int(message_id)
    except (TypeError, ValueError):
        raise NotFound("message not found") from None
    message = Message.objects.select_related("sender", "conversation").filter(pk=message_id).first()
    if message is None:
        raise NotFound("message not found")
    membership = Membership.objects.filter(conversation_id=message.conversation_id, user=user).first()
    if membership is None:
        raise NotFound("message not found")
    membership.conversation = message.conversation
    return message, membership


def access_device(user: User, device_id: Any) -> Device:
    device = Device.objects.filter(pk=_as_uuid(device_id), user=user).first() if _as_uuid(device_id) else None
    if device is None:
        raise NotFound("device not found")
    return device


def _as_uuid(value: Any):
    import uuid

    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        return None


# --- The write path -------------------------------------------------------------------------

@dataclass(frozen=True)
class SendResult:
    message: Message
    payload: MessagePayload
    duplicate: bool


def allocate_seq(conversation_id: int) -> int:
    """Take the next seq of a conversation. Call only inside the transaction that stores it.

    Invariant: seqs of a conversation are 1, 2, 3 ... with no gap and no repeat.
    - One statement increments ``last_seq`` and returns the new value. Its row lock on the
      conversation orders the writers of that conversation (and nothing else) until commit.
    - A rolled-back transaction rolls the increment back with it, so a failed send burns no seq.
    - The unique constraint (conversation, seq) is the backstop should anyone bypass this.
    """
    table = Conversation._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_seq = last_seq + 1, last_activity_at = %s WHERE id = %s RETURNING last_seq",
            [timezone.now(), conversation_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise NotFound("conversation not found")
    return row[0]


def _access_membership_for_send(sender: User, conversation_id: Any, client_msg_id: str) -> Membership:
    """:func:`access_membership` and the idempotency lookup in one query (every send pays it):
    the membership, its conversation, and ``prior_send_id``, the id of the sender's message
    already stored under ``client_msg_id`` (anywhere), or None."""
    try:
        conversation_id = int(conversation_id)
    except (TypeError, ValueError):
        raise NotFound("conversation not found") from None
    prior = Message.objects.filter(sender=sender, client_msg_id=client_msg_id).values("pk")[:1]
    membership = (
        Membership.objects.select_related("conversation")
        .filter(conversation_id=conversation_id, user=sender)
        .annotate(prior_send_id=Subquery(prior))
        .first()
    )
    if membership is None:
        raise NotFound("conversation not found")
    return membership


def _find_prior_send(sender: User, client_msg_id: str) -> Message | None:
    return Message.objects.filter(sender=sender, client_msg_id=client_msg_id).first()


def _as_retry(prior: Message, *, sender: User, conversation_id: int, body: str) -> SendResult:
    """Idempotency case 2/3: the same key again is the stored message; a changed send is a 409."""
    if prior.conversation_id != conversation_id or (not prior.is_removed and prior.body != body):
        raise Conflict("client_msg_id was already used for a different message")
    return SendResult(message=prior, payload=message_payload(prior, sender), duplicate=True)


def _enforce_send_limits(sender: User, conversation: Conversation) -> None:
    """Suspension and rate limits of a new send (a retry of a stored one passes free).

    Costs no query: the suspension is on the sender's row, slow mode on the conversation's
    (loaded with the membership), and the counters are in the cache.
    """
    if sender.is_suspended:
        raise Forbidden("your account is suspended; you cannot send messages")
    ratelimit.enforce(ratelimit.SEND, sender.pk, user=sender)
    if conversation.slow_mode_seconds:
        ratelimit.enforce(ratelimit.SLOW_MODE, f"{conversation.pk}:{sender.pk}", user=sender,
                          rate=ratelimit.Rate(1, conversation.slow_mode_seconds))


def do_send_message(*, sender: User, conversation_id: Any, client_msg_id: Any, body: Any,
                    device: Device | None = None) -> SendResult:
    """Store a message and schedule its fan-out. The one write path for REST and WebSocket.

    Idempotency, as numbered cases (each has a test):
    1. first send: a new seq, ``duplicate=False``;
    2. a retry (same sender and client_msg_id, same conversation and body), whether the
       first attempt's answer was lost or it is still in flight: the stored message,
       ``duplicate=True``, no seq burnt;
    3. the same key with another body or conversation: :class:`Conflict`;
    4. two concurrent first sends of one key: the loser's insert hits the unique constraint,
       its transaction (and seq increment) rolls back, and it returns the winner's row.

    A new send (not a retry) must pass :func:`_enforce_send_limits`: a suspended sender is
    :class:`Forbidden`, one over a rate limit :class:`RateLimited`.
    """
    body = check_body(body)
    client_msg_id = check_client_msg_id(client_msg_id)
    membership = _access_membership_for_send(sender, conversation_id, client_msg_id)
    conversation = membership.conversation

    if membership.prior_send_id is not None:
        prior = Message.objects.get(pk=membership.prior_send_id)
        return _as_retry(prior, sender=sender, conversation_id=conversation.pk, body=body)
    _enforce_send_limits(sender, conversation)

    try:
        with metrics.durable_write(), transaction.atomic():  # times the commit too
            seq = allocate_seq(conversation.pk)
            message = Message.objects.create(
                conversation_id=conversation.pk, seq=seq, sender=sender, sender_device=device,
                client_msg_id=client_msg_id, body=body,
            )
            # You have seen what you answer: the sender's own watermarks move to the new seq.
            # No row means a removal committed while this send waited for the conversation
            # lock (removals take it too): the sender may no longer post, and the seq rolls back.
            if not Membership.objects.filter(pk=membership.pk).update(
                delivered_seq=Greatest(F("delivered_seq"), seq), read_seq=Greatest(F("read_seq"), seq)
            ):
                raise NotFound("conversation not found")
            payload = message_payload(message, sender)
            fanout.message_stored(
                conversation_id=conversation.pk, seq=seq, member_count=conversation.member_count, payload=payload
            )
    except IntegrityError:
        prior = _find_prior_send(sender, client_msg_id)
        if prior is None:
            raise
        return _as_retry(prior, sender=sender, conversation_id=conversation.pk, body=body)
    return SendResult(message=message, payload=payload, duplicate=False)


# --- Conversations and membership -----------------------------------------------------------

def check_title(title: Any, *, required: bool) -> str:
    if title is None:
        title = ""
    if not isinstance(title, str):
        raise Invalid("title must be a string", fields={"title": ["Must be a string."]})
    title = title.strip()
    if required and not title:
        raise Invalid("title is required", fields={"title": ["This field is required."]})
    if len(title) > settings.PARLEY_MAX_TITLE_LENGTH:
        raise Invalid("title is too long", fields={"title": [f"At most {settings.PARLEY_MAX_TITLE_LENGTH} characters."]})
    return title


def check_user_ids(user_ids: Any, *, field: str = "members") -> list[int]:
    if not isinstance(user_ids, list) or not all(isinstance(u, int) and not isinstance(u, bool) for u in user_ids):
        raise Invalid(f"{field} must be a list of user ids", fields={field: ["A list of user ids is required."]})
    limit = settings.PARLEY_MAX_MEMBERS_PER_REQUEST
    if len(user_ids) > limit:
        raise Invalid(f"at most {limit} users per request", fields={field: [f"At most {limit} users per request."]})
    unique = sorted(set(user_ids))
    found = set(User.objects.filter(pk__in=unique, is_active=True).values_list("pk", flat=True))
    missing = [u for u in unique if u not in found]
    if missing:
        raise Invalid("unknown users", fields={field: [f"Unknown user ids: {missing}"]})
    return unique


def _announce_joined(conversation: Conversation, memberships: Iterable[Membership]) -> None:
    for membership in memberships:
        fanout.membership_changed(
            user_id=membership.user_id, change="joined",
            conversation=conversation_payload(conversation, membership),
        )


def _refresh_member_count(conversation: Conversation) -> None:
    was_large = fanout.is_large(conversation.member_count)
    conversation.member_count = Membership.objects.filter(conversation=conversation).count()
    updates: dict[str, Any] = {"member_count": conversation.member_count}
    if fanout.is_large(conversation.member_count) and not was_large:
        # Switching to buffered fan-out: everything stored so far went out directly, so the
        # first batch starts after it (the row lock orders this against allocate_seq).
        updates["fanout_seq"] = F("last_seq")
    Conversation.objects.filter(pk=conversation.pk).update(**updates)


@dataclass(frozen=True)
class CreateResult:
    conversation: Conversation
    membership: Membership
    created: bool


def do_get_or_create_direct(*, creator: User, other_user_id: Any) -> CreateResult:
    """The one direct conversation of a pair: created once, returned ever after (direct_key is unique)."""
    (other_id,) = check_user_ids([other_user_id] if not isinstance(other_user_id, list) else other_user_id)
    if other_id == creator.pk:
        raise Invalid("a direct conversation needs another user", fields={"members": ["Pick another user."]})
    key = Conversation.direct_key_for(creator.pk, other_id)
    existing = Conversation.objects.filter(direct_key=key).first()
    if existing is None:
        try:
            with transaction.atomic():
                conversation = Conversation.objects.create(
                    kind=Conversation.Kind.DIRECT, direct_key=key, created_by=creator, member_count=2
                )
                memberships = Membership.objects.bulk_create([
                    Membership(conversation=conversation, user_id=uid, role=Membership.Role.MEMBER)
                    for uid in (creator.pk, other_id)
                ])
                _announce_joined(conversation, memberships)
                mine = next(m for m in memberships if m.user_id == creator.pk)
                return CreateResult(conversation, mine, created=True)
        except IntegrityError:
            existing = Conversation.objects.get(direct_key=key)  # lost a race to the same pair
    return CreateResult(existing, Membership.objects.get(conversation=existing, user=creator), created=False)


def do_create_group(*, creator: User, title: Any, member_ids: Any, kind: str = Conversation.Kind.GROUP,
                    public: bool = False) -> CreateResult:
    title = check_title(title, required=kind == Conversation.Kind.CHANNEL)
    others = [u for u in check_user_ids(member_ids or []) if u != creator.pk]
    with transaction.atomic():
        conversation = Conversation.objects.create(
            kind=kind, title=title, public=public, created_by=creator, member_count=1 + len(others)
        )
        memberships = Membership.objects.bulk_create(
            [Membership(conversation=conversation, user=creator, role=Membership.Role.OWNER)]
            + [Membership(conversation=conversation, user_id=uid) for uid in others]
        )
        _announce_joined(conversation, memberships)
    return CreateResult(conversation, memberships[0], created=True)


def do_add_members(*, actor: User, conversation_id: Any, user_ids: Any) -> list[int]:
    """Owners and admins add members to groups and channels; returns the ids actually added."""
    membership = access_membership(actor, conversation_id)
    conversation = membership.conversation
    if conversation.is_direct:
        raise Forbidden("a direct conversation has exactly two members")
    if not membership.can_manage_members:
        raise Forbidden("only owners and admins add members")
    wanted = check_user_ids(user_ids, field="user_ids")
    with transaction.atomic():
        present = set(Membership.objects.filter(conversation=conversation, user_id__in=wanted)
                      .values_list("user_id", flat=True))
        added = Membership.objects.bulk_create(
            [Membership(conversation=conversation, user_id=uid) for uid in wanted if uid not in present]
        )
        if added:
            _refresh_member_count(conversation)
            _announce_joined(conversation, added)
            _announce_updated(conversation)
    return [m.user_id for m in added]


def do_join_channel(*, user: User, conversation_id: Any) -> CreateResult:
    conversation, membership = access_conversation(user, conversation_id)
    if membership is not None:
        return CreateResult(conversation, membership, created=False)
    with transaction.atomic():
        membership, created = Membership.objects.get_or_create(conversation=conversation, user=user)
        if created:
            _refresh_member_count(conversation)
            _announce_joined(conversation, [membership])
    return CreateResult(conversation, membership, created=created)


def do_remove_member(*, actor: User, conversation_id: Any, user_id: Any) -> None:
    """Members leave; owners and admins remove others. Delivery to the removed user's sockets stops at once."""
    membership = access_membership(actor, conversation_id)
    conversation = membership.conversation
    try:
        user_id = int(user_id)
    except (TypeError, ValueError):
        raise NotFound("member not found") from None
    if user_id != actor.pk and not membership.can_manage_members:
        raise Forbidden("only owners and admins remove other members")
    if conversation.is_direct:
        raise Forbidden("members cannot leave a direct conversation")
    with transaction.atomic():
        # Lock the conversation row before the membership row, the order a send takes them
        # (allocate_seq, then the sender's watermarks): the other order deadlocks with a send
        # by the member being removed.
        Conversation.objects.select_for_update(no_key=True).values_list("pk").get(pk=conversation.pk)
        deleted, _ = Membership.objects.filter(conversation=conversation, user_id=user_id).delete()
        if not deleted:
            raise NotFound("member not found")
        _refresh_member_count(conversation)
        fanout.membership_changed(user_id=user_id, change="left",
                                  conversation=conversation_payload(conversation, None))
        _announce_updated(conversation)


def _announce_updated(conversation: Conversation) -> None:
    """Small conversations tell every member their new member count; large ones don't broadcast it."""
    if fanout.is_large(conversation.member_count):
        return
    for membership in Membership.objects.filter(conversation=conversation):
        fanout.membership_changed(user_id=membership.user_id, change="updated",
                                  conversation=conversation_payload(conversation, membership))
