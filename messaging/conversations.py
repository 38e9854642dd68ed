"""Conversation use cases: create, join, add and remove members, leave, rename, set the topic,
roles, a member's own notification settings, and the default channels of a new user
(CONTRACT, "Conversations"; v1.1, "Conversation settings and management").

Every change keeps ``member_count`` right and tells the affected users' open sockets after
commit (``conversation.joined`` / ``left`` / ``updated``), so a device follows a new
conversation without reconnecting and stops receiving a left one at once. Who may do what
is messaging.roles, and only there.

Lock order: the conversation row, then membership rows, as the send path takes them
(messaging.send.allocate_seq), so a removal and a send by the member removed cannot deadlock.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from . import fanout, layer, tasks
from .access import access_conversation, access_membership, as_id, require_not_suspended
from .checks import check_text, check_title, check_user_ids
from .errors import Invalid, NotFound
from .mentions import with_unread_mentions
from .models import Conversation, Membership, User
from .payloads import MembershipState, conversation_payload, membership_state
from .roles import Action, require

# "Leave it as it is" for optional fields of a PATCH.
UNSET: Any = object()


@dataclass(frozen=True)
class CreateResult:
    conversation: Conversation
    membership: Membership
    created: bool


def _announce_joined(conversation: Conversation, memberships: Iterable[Membership]) -> None:
    for membership in memberships:
        fanout.membership_changed(user_id=membership.user_id, change="joined",
                                  conversation=conversation_payload(conversation, membership))


def announce_updated(conversation: Conversation, *, to_large: bool = False) -> None:
    """Tell every member the conversation's new state (``conversation.updated``).

    Small conversations are told from here, after commit. A large one's member count moves
    with every join and is not broadcast; what its members must see (a new title or topic,
    ``to_large``) goes out from a bulk task, a page of members at a time, so a request never
    publishes thousands of events itself.
    """
    if fanout.is_large(conversation.member_count):
        if to_large:
            layer.after_commit(lambda: tasks.announce_conversation_updated.delay(conversation.pk))
        return
    for membership in with_unread_mentions(Membership.objects.filter(conversation=conversation)):
        fanout.membership_changed(user_id=membership.user_id, change="updated",
                                  conversation=conversation_payload(conversation, membership))


def _refresh_member_count(conversation: Conversation) -> None:
    was_large = fanout.is_large(conversation.member_count)
    conversation.member_count = Membership.objects.filter(conversation=conversation).count()
    updates: dict[str, Any] = {"member_count": conversation.member_count}
    if fanout.is_large(conversation.member_count) and not was_large:
        # Switching to buffered fan-out: everything stored so far went out directly, so the
        # first batch starts after it (the row lock orders this against allocate_seq).
        updates["fanout_seq"] = F("last_seq")
    Conversation.objects.filter(pk=conversation.pk).update(**updates)


def do_get_or_create_direct(*, creator: User, other_user_id: Any) -> CreateResult:
    """The one direct conversation of a pair: created once, returned ever after (direct_key is unique)."""
    require_not_suspended(creator)
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
    require_not_suspended(creator)
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
    require_not_suspended(actor)
    membership = access_membership(actor, conversation_id)
    conversation = membership.conversation
    require(membership, Action.ADD_MEMBERS)
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
            announce_updated(conversation)
    return [m.user_id for m in added]


def do_join_channel(*, user: User, conversation_id: Any) -> CreateResult:
    require_not_suspended(user)
    conversation, membership = access_conversation(user, conversation_id)
    if membership is not None:
        return CreateResult(conversation, membership, created=False)
    return _join(conversation, user)


def _join(conversation: Conversation, user: User) -> CreateResult:
    with transaction.atomic():
        membership, created = Membership.objects.get_or_create(conversation=conversation, user=user)
        if created:
            _refresh_member_count(conversation)
            _announce_joined(conversation, [membership])
            announce_updated(conversation)
    return CreateResult(conversation, membership, created=created)


def join_default_channels(user: User) -> list[Conversation]:
    """A new user joins every channel marked default (``Conversation.is_default``, set by a
    site admin), as if they had joined each themselves."""
    joined = []
    for conversation in Conversation.objects.filter(kind=Conversation.Kind.CHANNEL, is_default=True).order_by("pk"):
        if _join(conversation, user).created:
            joined.append(conversation)
    return joined


def do_remove_member(*, actor: User, conversation_id: Any, user_id: Any) -> None:
    """Members leave (their own id); owners and admins remove members of a lower role.
    Delivery to the removed user's sockets stops at once. An owner who leaves hands the
    conversation to the longest-standing admin, else to the longest-standing member."""
    membership = access_membership(actor, conversation_id)
    conversation = membership.conversation
    removed_id = as_id(user_id)
    if removed_id is None:
        raise NotFound("member not found")
    leaving = removed_id == actor.pk
    if not leaving:
        require_not_suspended(actor)  # leaving is the one write a suspended user keeps
    require(membership, Action.LEAVE if leaving else Action.REMOVE_MEMBER)
    with transaction.atomic():
        # The conversation row before the membership row (module docstring): the other order
        # deadlocks with a send by the member being removed.
        Conversation.objects.select_for_update(no_key=True).values_list("pk").get(pk=conversation.pk)
        target = Membership.objects.filter(conversation=conversation, user_id=removed_id).first()
        if target is None:
            raise NotFound("member not found")
        if not leaving:
            require(membership, Action.REMOVE_MEMBER, target=target)
        target.delete()
        if target.role == Membership.Role.OWNER:
            _hand_over_ownership(conversation)
        _refresh_member_count(conversation)
        fanout.membership_changed(user_id=removed_id, change="left",
                                  conversation=conversation_payload(conversation, None))
        announce_updated(conversation)


def _hand_over_ownership(conversation: Conversation) -> None:
    remaining = Membership.objects.filter(conversation=conversation).order_by("joined_at", "pk")
    successor = remaining.filter(role=Membership.Role.ADMIN).first() or remaining.first()
    if successor is not None:
        Membership.objects.filter(pk=successor.pk).update(role=Membership.Role.OWNER)


def do_set_role(*, actor: User, conversation_id: Any, user_id: Any, role: Any) -> Membership:
    """The owner makes another member an admin, or an admin a member again."""
    require_not_suspended(actor)
    membership = access_membership(actor, conversation_id)
    if role not in (Membership.Role.ADMIN, Membership.Role.MEMBER):
        raise Invalid("role must be admin or member", fields={"role": ["Must be admin or member."]})
    target_id = as_id(user_id)
    target = (Membership.objects.select_related("conversation", "user")
              .filter(conversation_id=membership.conversation_id, user_id=target_id).first()
              if target_id is not None else None)
    if target is None:
        raise NotFound("member not found")
    require(membership, Action.SET_ROLE, target=target)
    if target.role != role:
        with transaction.atomic():
            Membership.objects.filter(pk=target.pk).update(role=role)
            target.role = role
            announce_updated(membership.conversation)
    return target


def check_topic(topic: Any) -> str:
    return check_text(topic, "topic", max_length=settings.PARLEY_MAX_TOPIC_LENGTH).strip()


def do_update_conversation(*, actor: User, conversation_id: Any, title: Any = UNSET,
                           topic: Any = UNSET) -> tuple[Conversation, Membership]:
    """Owners and admins of a group or channel rename it and set its topic; every member's
    devices get ``conversation.updated``. A channel keeps a title; a group may go untitled."""
    require_not_suspended(actor)
    membership = access_membership(actor, conversation_id)
    conversation = membership.conversation
    require(membership, Action.EDIT)
    changes: dict[str, str] = {}
    if title is not UNSET:
        changes["title"] = check_title(title, required=conversation.is_channel)
    if topic is not UNSET:
        changes["topic"] = check_topic(topic)
    with transaction.atomic():
        if _write_changed(conversation, changes):
            announce_updated(conversation, to_large=True)
    return conversation, membership


def check_notify(notify: Any) -> str:
    if notify not in Membership.Notify.values:
        raise Invalid("notify must be all, mentions or none", fields={"notify": ["Must be all, mentions or none."]})
    return str(notify)


def check_muted_until(muted_until: Any) -> datetime | None:
    if muted_until is None:
        return None
    if not isinstance(muted_until, datetime) or timezone.is_naive(muted_until):
        raise Invalid("muted_until must be a time with its zone, or null",
                      fields={"muted_until": ["A time with its zone (ISO 8601), or null."]})
    return muted_until


def do_update_my_settings(*, user: User, conversation_id: Any, notify: Any = UNSET,
                          muted_until: Any = UNSET) -> MembershipState:
    """A member's own notification settings here: ``notify`` (which messages notify) and
    ``muted_until`` (nothing notifies before then; null unmutes). The push path reads them
    when it decides a push and again before each attempt (notifications.bursts, .delivery).
    The member's other devices get ``conversation.updated``, so every open app shows it."""
    membership = access_membership(user, conversation_id)
    changes: dict[str, Any] = {}
    if notify is not UNSET:
        changes["notify"] = check_notify(notify)
    if muted_until is not UNSET:
        changes["muted_until"] = check_muted_until(muted_until)
    with transaction.atomic():
        if _write_changed(membership, changes):
            fanout.membership_changed(user_id=user.pk, change="updated",
                                      conversation=conversation_payload(membership.conversation, membership))
    return membership_state(membership.conversation, membership)


def _write_changed(instance: Conversation | Membership, changes: dict[str, Any]) -> bool:
    """Store the fields of ``changes`` whose values differ from ``instance``'s, in one UPDATE,
    and set them on it; whether any did (an edit that changes nothing announces nothing)."""
    changed = {field: value for field, value in changes.items() if getattr(instance, field) != value}
    if changed:
        type(instance)._default_manager.filter(pk=instance.pk).update(**changed)
        for field, value in changed.items():
            setattr(instance, field, value)
    return bool(changed)
