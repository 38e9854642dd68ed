"""The contract's objects (user, message, conversation), built once for every edge.

REST responses, WebSocket frames, replay pages and layer events all carry these shapes, so a
message looks the same whichever way it reached a client.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:  # the shapes are importable before Django is set up (gateway.server)
    from .models import Conversation, Membership, Message, User


class UserPayload(TypedDict):
    id: int
    username: str
    display_name: str


class MessagePayload(TypedDict):
    id: int
    conversation: int
    seq: int
    sender: UserPayload
    body: str
    client_msg_id: str
    created_at: str
    state: str


class MembershipState(TypedDict):
    role: str
    delivered_seq: int
    read_seq: int
    unread: int


class ConversationPayload(TypedDict):
    id: int
    kind: str
    title: str
    public: bool
    member_count: int
    slow_mode_seconds: int
    last_seq: int
    created_at: str
    last_activity_at: str
    me: MembershipState | None


def timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, as DRF renders datetimes."""
    return moment.isoformat().replace("+00:00", "Z")


def user_payload(user: User) -> UserPayload:
    return {"id": user.pk, "username": user.username, "display_name": user.shown_name}


def message_payload(message: Message, sender: User | None = None) -> MessagePayload:
    """The contract's message object. A removed message never carries its body."""
    sender = sender or message.sender
    return {
        "id": message.pk,
        "conversation": message.conversation_id,
        "seq": message.seq,
        "sender": user_payload(sender),
        "body": "" if message.is_removed else message.body,
        "client_msg_id": message.client_msg_id,
        "created_at": timestamp(message.created_at),
        "state": message.state,
    }


def conversation_payload(conversation: Conversation, membership: Membership | None) -> ConversationPayload:
    """The contract's conversation object, ``me`` from the viewer's membership (None if not a member)."""
    me: MembershipState | None = None
    if membership is not None:
        me = {
            "role": membership.role,
            "delivered_seq": membership.delivered_seq,
            "read_seq": membership.read_seq,
            # Sending raises the sender's read_seq to the new seq in the storing transaction,
            # so every message after read_seq is someone else's: unread needs no count query.
            "unread": max(conversation.last_seq - membership.read_seq, 0),
        }
    return {
        "id": conversation.pk,
        "kind": conversation.kind,
        "title": conversation.title,
        "public": conversation.public,
        "member_count": conversation.member_count,
        "slow_mode_seconds": conversation.slow_mode_seconds,
        "last_seq": conversation.last_seq,
        "created_at": timestamp(conversation.created_at),
        "last_activity_at": timestamp(conversation.last_activity_at),
        "me": me,
    }
