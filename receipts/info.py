"""A message's receipt state per recipient, derived from the members' watermarks.

There are no per-message receipt rows (docs/architecture.md, "Receipts"): a recipient has
*read* a message when its ``read_seq >= seq``, has it *delivered* when its
``delivered_seq >= seq``, and otherwise it is only *sent* (stored, with a seq).
"""
from __future__ import annotations

from typing import Any, TypedDict

from messaging.access import access_message, as_id
from messaging.errors import Forbidden, NotFound
from messaging.models import MODERATE_PERMISSION, Membership, Message, User
from messaging.payloads import MessagePayload, UserPayload, message_payload, user_payload
from messaging.selectors import MESSAGE_JOINS


class RecipientState(TypedDict):
    user: UserPayload
    state: str


class MessageInfo(TypedDict):
    message: MessagePayload
    recipients: list[RecipientState]
    counts: dict[str, int]


def access_message_info(user: User, message_id: Any) -> Message:
    """A message whose receipts the user may see: the sender's own, or any for a moderator.

    Outsiders get NotFound, as for the conversation itself; a member who did not send the
    message may know it exists and gets Forbidden.
    """
    try:
        message, _membership = access_message(user, message_id)
    except NotFound:
        if not user.has_perm(MODERATE_PERMISSION):
            raise
        message_id = as_id(message_id)
        anywhere = Message.objects.select_related(*MESSAGE_JOINS).filter(pk=message_id).first() if message_id else None
        if anywhere is None:
            raise
        return anywhere
    if message.sender_id != user.pk and not user.has_perm(MODERATE_PERMISSION):
        raise Forbidden("only the sender or a moderator sees who received a message")
    return message


def state_for(membership: Membership, seq: int) -> str:
    if membership.read_seq >= seq:
        return "read"
    if membership.delivered_seq >= seq:
        return "delivered"
    return "sent"


def message_info(message: Message) -> MessageInfo:
    """Every current member but the sender, each counted once under its state."""
    recipients = Membership.objects.filter(conversation_id=message.conversation_id).exclude(
        user_id=message.sender_id).select_related("user").order_by("user_id")
    counts = {"sent": 0, "delivered": 0, "read": 0}
    states: list[RecipientState] = []
    for membership in recipients:
        state = state_for(membership, message.seq)
        counts[state] += 1
        states.append({"user": user_payload(membership.user), "state": state})
    return {"message": message_payload(message), "recipients": states, "counts": counts}
