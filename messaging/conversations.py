"""Conversation use cases: create, join, add and remove members (CONTRACT, "Conversations").

Every change keeps ``member_count`` right and tells the affected users' open sockets after
commit (``conversation.joined`` / ``left`` / ``updated``), so a device follows a new
conversation without reconnecting and stops receiving a left one at once.

Lock order: the conversation row, then membership rows, as the send path takes them
(messaging.send.allocate_seq), so a removal and a send by the member removed cannot deadlock.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from django.db import IntegrityError, transaction
from django.db.models import F

from . import fanout
from .access import access_conversation, access_membership, as_id, require_not_suspended
from .checks import check_title, check_user_ids
from .errors import Forbidden, Invalid, NotFound
from .models import Conversation, Membership, User
from .payloads import conversation_payload


@dataclass(frozen=True)
class CreateResult:
    conversation: Conversation
    membership: Membership
    created: bool


def _announce_joined(conversation: Conversation, memberships: Iterable[Membership]) -> None:
    for membership in memberships:
        fanout.membership_changed(user_id=membership.user_id, change="joined",
                                  conversation=conversation_payload(conversation, membership))


def announce_updated(conversation: Conversation) -> None:
    """Small conversations tell every member their new state; large ones don't broadcast it."""
    if fanout.is_large(conversation.member_count):
        return
    for membership in Membership.objects.filter(conversation=conversation):
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
            announce_updated(conversation)
    return [m.user_id for m in added]


def do_join_channel(*, user: User, conversation_id: Any) -> CreateResult:
    require_not_suspended(user)
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
    removed_id = as_id(user_id)
    if removed_id is None:
        raise NotFound("member not found")
    if removed_id != actor.pk and not membership.can_manage_members:
        raise Forbidden("only owners and admins remove other members")
    if conversation.is_direct:
        raise Forbidden("members cannot leave a direct conversation")
    with transaction.atomic():
        # The conversation row before the membership row (module docstring): the other order
        # deadlocks with a send by the member being removed.
        Conversation.objects.select_for_update(no_key=True).values_list("pk").get(pk=conversation.pk)
        deleted, _ = Membership.objects.filter(conversation=conversation, user_id=removed_id).delete()
        if not deleted:
            raise NotFound("member not found")
        _refresh_member_count(conversation)
        fanout.membership_changed(user_id=removed_id, change="left",
                                  conversation=conversation_payload(conversation, None))
        announce_updated(conversation)
