"""The events Parley emits, defined once.

Layer events are doorbells, not mailboxes (docs/architecture.md, "Live path"): they carry
``(conversation, seq)`` and a small payload, may be lost, and a gateway that sees a gap
reads PostgreSQL. The wire shapes of messages and conversations also live here, so REST,
WebSocket frames and replay pages serialize a message the same way.
"""
from __future__ import annotations

from typing import Any, TypedDict

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


def user_payload(user: User) -> UserPayload:
    return {"id": user.pk, "username": user.username, "display_name": user.shown_name}


def message_payload(message: Message, sender: User | None = None) -> MessagePayload:
    """The contract's message object. A removed message never carries its body."""
    sender = sender or message.sender
    removed = message.state == Message.State.REMOVED
    return {
        "id": message.pk,
        "conversation": message.conversation_id,
        "seq": message.seq,
        "sender": user_payload(sender),
        "body": "" if removed else message.body,
        "client_msg_id": message.client_msg_id,
        "created_at": message.created_at.isoformat().replace("+00:00", "Z"),
        "state": message.state,
    }


def conversation_payload(conversation: Conversation, membership: Membership | None) -> dict[str, Any]:
    """The contract's conversation object, ``me`` from the viewer's membership (None if not a member)."""
    me = None
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
        "created_at": conversation.created_at.isoformat().replace("+00:00", "Z"),
        "last_activity_at": conversation.last_activity_at.isoformat().replace("+00:00", "Z"),
        "me": me,
    }


# --- Channel-layer events (the "type" selects the gateway handler) -------------------------

class MessageEvent(TypedDict):
    type: str  # "conv.message"
    conversation: int
    seq: int
    message: MessagePayload


class MessagesBatchEvent(TypedDict):
    type: str  # "conv.messages": a contiguous run, built by the buffered fan-out
    conversation: int
    first_seq: int
    last_seq: int
    messages: list[MessagePayload]


class ReceiptMarks(TypedDict):
    user: int
    delivered_seq: int
    read_seq: int


class ReceiptsEvent(TypedDict):
    type: str  # "conv.receipts": the marks of one conversation that advanced together
    conversation: int
    receipts: list[ReceiptMarks]


class MessageRemovedEvent(TypedDict):
    type: str  # "conv.removed"
    conversation: int
    id: int
    seq: int


class MembershipEvent(TypedDict):
    type: str  # "user.joined" | "user.left" | "user.updated"
    conversation: dict[str, Any]


class CloseEvent(TypedDict):
    type: str  # "socket.close"
    code: int
