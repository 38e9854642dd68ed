"""``access_*``: an object only if the actor may see it, else :class:`NotFound`.

A private conversation that is not yours answers exactly like one that does not exist
(CONTRACT "Semantics" 7): no caller can tell them apart, whatever id it tries.
"""
from __future__ import annotations

import uuid
from typing import Any

from .errors import Forbidden, NotFound
from .models import Conversation, Device, Membership, Message, User


def as_id(value: Any) -> int | None:
    """An id from a path or a frame, or None if it cannot be one."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def as_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        return None


def require_not_suspended(user: User) -> None:
    """A suspended user (messaging.moderation.do_set_suspended) may read and leave, and make no
    other write: no message, conversation, member, join or flag. Costs no query: the
    suspension is on the user's row."""
    if user.is_suspended:
        raise Forbidden("your account is suspended; you can read and leave conversations, nothing more")


def access_membership(user: User, conversation_id: Any) -> Membership:
    """The user's membership with its conversation loaded, or NotFound (member or not, alike)."""
    conversation_id = as_id(conversation_id)
    membership = (
        Membership.objects.select_related("conversation")
        .filter(conversation_id=conversation_id, user=user).first()
        if conversation_id is not None else None
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
        public_id = as_id(conversation_id)
        conversation = Conversation.objects.filter(
            pk=public_id, public=True, kind=Conversation.Kind.CHANNEL,
        ).first() if public_id is not None else None
        if conversation is None:
            raise
        return conversation, None


def access_message(user: User, message_id: Any) -> tuple[Message, Membership]:
    """A message of a conversation the user belongs to, or NotFound."""
    message_id = as_id(message_id)
    message = (Message.objects.select_related("sender", "reply_to__sender", "conversation").filter(pk=message_id).first()
               if message_id is not None else None)
    if message is None:
        raise NotFound("message not found")
    membership = Membership.objects.filter(conversation_id=message.conversation_id, user=user).first()
    if membership is None:
        raise NotFound("message not found")
    membership.conversation = message.conversation
    return message, membership


def access_device(user: User, device_id: Any) -> Device:
    device_uuid = as_uuid(device_id)
    device = Device.objects.filter(pk=device_uuid, user=user).first() if device_uuid else None
    if device is None:
        raise NotFound("device not found")
    return device
