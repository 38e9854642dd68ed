"""The contract's objects (user, message, conversation), built once for every edge.

REST responses, WebSocket frames, replay pages and layer events all carry these shapes, so a
message looks the same whichever way it reached a client.
"""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, TypedDict

from django.conf import settings

if TYPE_CHECKING:  # the shapes are importable before Django is set up (gateway.server)
    from .models import Conversation, Membership, Message, MessageChange, User


class UserPayload(TypedDict):
    id: int
    username: str
    display_name: str


class ReplyPayload(TypedDict):
    """The message answered, as a reply shows it; read with the reply, so it follows the
    original's edits and deletion."""

    id: int
    seq: int
    sender: UserPayload
    excerpt: str  # "" once the original is deleted or removed
    state: str


class ReactionPayload(TypedDict):
    emoji: str
    count: int
    users: list[int]  # the first PARLEY_REACTION_USERS_SHOWN to react


# Where the API serves files (api/urls.py "file" and "file-thumbnail"; a test pins the two together).
FILES_PATH = "/api/v1/files/"


class AttachmentSummary(TypedDict):
    """An attachment as the message row keeps it (``Message.attachments``, messaging.attachments)."""

    id: int
    name: str
    size: int
    content_type: str
    width: int | None
    height: int | None
    thumbnail: bool


class AttachmentPayload(TypedDict):
    id: int
    name: str
    size: int
    content_type: str
    url: str  # served to the conversation's members only
    thumbnail_url: str | None  # images only
    width: int | None  # images only
    height: int | None


class MessagePayload(TypedDict):
    id: int
    conversation: int
    seq: int
    sender: UserPayload
    body: str
    html: str
    client_msg_id: str
    created_at: str
    state: str
    edited_at: str | None
    reply_to: ReplyPayload | None
    mentions: list[int]
    reactions: list[ReactionPayload]
    attachments: list[AttachmentPayload]
    version: int  # the change that last changed it (0: never); a newer copy wins


class ChangePayload(TypedDict):
    """A change record (CONTRACT v1.1): the message as it is now, after change number ``change``."""

    change: int
    conversation: int
    kind: str
    message: MessagePayload
    actor: int | None
    at: str


class MembershipState(TypedDict):
    role: str
    delivered_seq: int
    read_seq: int
    unread: int
    unread_mentions: int
    notify: str  # all | mentions | none: which messages notify me (offline pushes, in-tab alerts)
    muted_until: str | None  # no notification at all before this time
    can: list[str]  # what I may do here (messaging.roles.Action), so clients need not guess


class ConversationPayload(TypedDict):
    id: int
    kind: str
    title: str
    topic: str
    public: bool
    default: bool  # a channel new users join at signup
    member_count: int
    slow_mode_seconds: int
    last_seq: int
    last_change: int
    created_at: str
    last_activity_at: str
    me: MembershipState | None


def timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, as DRF renders datetimes."""
    return moment.isoformat().replace("+00:00", "Z")


def user_payload(user: User) -> UserPayload:
    return {"id": user.pk, "username": user.username, "display_name": user.shown_name}


def excerpt(body: str) -> str:
    """A body shortened for a reply's quote: whitespace collapsed, cut at a word."""
    text = " ".join(body.split())
    limit = settings.PARLEY_REPLY_EXCERPT_CHARS
    if len(text) <= limit:
        return text
    head = text[:limit + 1]  # a word ending right at the limit is kept whole
    cut = head.rsplit(" ", 1)[0] if " " in head else text[:limit]
    return cut.rstrip() + "\u2026"


def reply_payload(original: Message) -> ReplyPayload:
    return {
        "id": original.pk,
        "seq": original.seq,
        "sender": user_payload(original.sender),
        "excerpt": "" if original.is_removed else excerpt(original.body),
        "state": original.state,
    }


def attachment_payload(summary: AttachmentSummary) -> AttachmentPayload:
    url = f"{FILES_PATH}{summary['id']}"
    return {
        "id": summary["id"],
        "name": summary["name"],
        "size": summary["size"],
        "content_type": summary["content_type"],
        "url": url,
        "thumbnail_url": f"{url}/thumbnail" if summary["thumbnail"] else None,
        "width": summary["width"],
        "height": summary["height"],
    }


def message_payload(message: Message, sender: User | None = None) -> MessagePayload:
    """The contract's message object. A removed or deleted message carries no text, no
    reactions, no mentions and no attachments (the store blanked them too: messaging.changes).

    Reads ``reply_to`` and its sender: select them with the message (selectors.MESSAGE_JOINS).
    """
    sender = sender or message.sender
    gone = message.is_removed
    original = message.reply_to if message.reply_to_id is not None else None
    return {
        "id": message.pk,
        "conversation": message.conversation_id,
        "seq": message.seq,
        "sender": user_payload(sender),
        "body": "" if gone else message.body,
        "html": "" if gone else message.html,
        "client_msg_id": message.client_msg_id,
        "created_at": timestamp(message.created_at),
        "state": message.state,
        "edited_at": timestamp(message.edited_at) if message.edited_at else None,
        "reply_to": reply_payload(original) if original is not None else None,
        "mentions": [] if gone else list(message.mention_ids),
        "reactions": [] if gone else list(message.reactions),
        "attachments": [] if gone else [attachment_payload(a) for a in message.attachments],
        "version": message.version,
    }


def change_payload(change: MessageChange, message: Message) -> ChangePayload:
    return {
        "change": change.change,
        "conversation": change.conversation_id,
        "kind": change.kind,
        "message": message_payload(message),
        "actor": change.actor_id,
        "at": timestamp(change.at),
    }


def conversation_payload(conversation: Conversation, membership: Membership | None) -> ConversationPayload:
    """The contract's conversation object, ``me`` from the viewer's membership (None if not a
    member). ``unread_mentions`` costs a query unless the membership was annotated with it
    (messaging.mentions.with_unread_mentions, as the conversation list is)."""
    me = membership_state(conversation, membership) if membership is not None else None
    return {
        "id": conversation.pk,
        "kind": conversation.kind,
        "title": conversation.title,
        "topic": conversation.topic,
        "public": conversation.public,
        "default": conversation.is_default,
        "member_count": conversation.member_count,
        "slow_mode_seconds": conversation.slow_mode_seconds,
        "last_seq": conversation.last_seq,
        "last_change": conversation.last_change,
        "created_at": timestamp(conversation.created_at),
        "last_activity_at": timestamp(conversation.last_activity_at),
        "me": me,
    }


def membership_state(conversation: Conversation, membership: Membership) -> MembershipState:
    """The conversation object's ``me``: the member's marks, settings and what it may do."""
    from .mentions import unread_mentions  # the payload shapes load before Django's apps
    from .roles import allowed
    return {
        "role": membership.role,
        "delivered_seq": membership.delivered_seq,
        "read_seq": membership.read_seq,
        # Sending raises the sender's read_seq to the new seq in the storing transaction,
        # so every message after read_seq is someone else's: unread needs no count query.
        "unread": max(conversation.last_seq - membership.read_seq, 0),
        "unread_mentions": unread_mentions(membership),
        "notify": membership.notify,
        "muted_until": timestamp(membership.muted_until) if membership.muted_until else None,
        "can": allowed(membership, conversation),
    }
