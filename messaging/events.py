"""Every event that travels, defined once: layer events (server to server) and the frames
a client receives (CONTRACT, "WebSocket", "Server -> client").

Nothing else in Parley writes one of these as a dict literal: a producer calls the builder,
a consumer reads the TypedDict. Layer events are doorbells (docs/architecture.md, "Live
path"): they carry ``(conversation, seq)`` and a small payload and may be lost; a gateway
that sees a gap reads PostgreSQL. Their ``type`` selects the gateway's handling, and
:mod:`messaging.layer` adds ``group`` (and ``published_at`` after a commit) when it
publishes them.
"""
from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from .payloads import ChangePayload, ConversationPayload, MessagePayload

MembershipChange = Literal["joined", "left", "updated"]

# Close codes (CONTRACT, "WebSocket"), and why a server uses each.
CLOSE_INTERNAL_ERROR = 1011     # the server failed (a bug): reconnect with backoff and jitter
CLOSE_RESTARTING = 1012         # this gateway is going away: reconnect with backoff and jitter
CLOSE_BAD_FRAMES = 4400         # kept sending malformed frames
CLOSE_NOT_AUTHENTICATED = 4401  # no valid session or ticket; also a logout everywhere
CLOSE_FORBIDDEN = 4403          # origin refused, device not (or no longer) yours, user suspended
CLOSE_RATE_LIMIT_ABUSE = 4429   # kept going past the rate limits' refusals


# --- Layer events: published by the core, the workers and the gateways ----------------------

class MessageEvent(TypedDict):
    type: Literal["conv.message"]
    conversation: int
    seq: int
    message: MessagePayload


class BatchEvent(TypedDict):
    """A contiguous run of a large channel, built by the buffered fan-out."""

    type: Literal["conv.messages"]
    conversation: int
    first_seq: int
    last_seq: int
    messages: list[MessagePayload]


class ChangeEvent(TypedDict):
    """A change to a stored message (the second stream): doorbell and record at once."""

    type: Literal["conv.change"]
    conversation: int
    change: int
    record: ChangePayload


class ReceiptMarks(TypedDict):
    user: int
    delivered_seq: int
    read_seq: int
    devices: NotRequired[list[str]]  # from an ack flush: the devices whose acks moved the mark


class ReceiptsEvent(TypedDict):
    """The marks of one conversation that advanced together (one REST read, or one ack flush)."""

    type: Literal["conv.receipts"]
    conversation: int
    receipts: list[ReceiptMarks]
    own_only: bool  # above PARLEY_RECEIPT_BROADCAST_MAX_MEMBERS: only the user's own devices


class RemovedEvent(TypedDict):
    type: Literal["conv.removed"]
    conversation: int
    id: int
    seq: int


class TypingEvent(TypedDict):
    type: Literal["conv.typing"]
    conversation: int
    user: int


class PresenceEvent(TypedDict):
    type: Literal["conv.presence"]
    user: int
    online: bool


class TailEvent(TypedDict):
    """A synthetic doorbell from a gateway's tail check: the store holds up to ``seq``
    messages and ``change`` changes."""

    type: Literal["conv.tail"]
    conversation: int
    seq: int
    change: int


class MembershipEvent(TypedDict):
    type: Literal["user.joined", "user.left", "user.updated"]
    conversation: ConversationPayload


class CloseEvent(TypedDict):
    type: Literal["socket.close"]
    code: int


def message_event(message: MessagePayload) -> MessageEvent:
    return {"type": "conv.message", "conversation": message["conversation"], "seq": message["seq"],
            "message": message}


def batch_event(conversation_id: int, messages: list[MessagePayload]) -> BatchEvent:
    return {"type": "conv.messages", "conversation": conversation_id, "first_seq": messages[0]["seq"],
            "last_seq": messages[-1]["seq"], "messages": messages}


def change_event(record: ChangePayload) -> ChangeEvent:
    return {"type": "conv.change", "conversation": record["conversation"], "change": record["change"],
            "record": record}


def receipts_event(conversation_id: int, receipts: list[ReceiptMarks], *, own_only: bool) -> ReceiptsEvent:
    return {"type": "conv.receipts", "conversation": conversation_id, "receipts": receipts, "own_only": own_only}


def removed_event(conversation_id: int, message_id: int, seq: int) -> RemovedEvent:
    return {"type": "conv.removed", "conversation": conversation_id, "id": message_id, "seq": seq}


def typing_event(conversation_id: int, user_id: int) -> TypingEvent:
    return {"type": "conv.typing", "conversation": conversation_id, "user": user_id}


def presence_event(user_id: int, online: bool) -> PresenceEvent:
    return {"type": "conv.presence", "user": user_id, "online": online}


def tail_event(conversation_id: int, seq: int, change: int) -> TailEvent:
    return {"type": "conv.tail", "conversation": conversation_id, "seq": seq, "change": change}


def membership_event(change: MembershipChange, conversation: ConversationPayload) -> MembershipEvent:
    kind: Literal["user.joined", "user.left", "user.updated"] = f"user.{change}"  # type: ignore[assignment]
    return {"type": kind, "conversation": conversation}


def close_event(code: int) -> CloseEvent:
    return {"type": "socket.close", "code": code}


# --- Frames: what a client receives ---------------------------------------------------------

class MessageFrame(TypedDict):
    type: Literal["message"]
    message: MessagePayload


class MessagesFrame(TypedDict):
    """A replay page, a gap fill too long for live frames, or a live batch (``has_more`` false)."""

    type: Literal["messages"]
    conversation: int
    messages: list[MessagePayload]
    has_more: bool


class ChangeFrame(ChangePayload):
    type: Literal["change"]


class ChangesFrame(TypedDict):
    """A page of the change stream: hello's first, a ``replay_changes`` answer, or a gap fill."""

    type: Literal["changes"]
    conversation: int
    changes: list[ChangePayload]
    has_more: bool


class ReceiptFrame(TypedDict):
    type: Literal["receipt"]
    conversation: int
    user: int
    delivered_seq: int
    read_seq: int


class RemovedFrame(TypedDict):
    type: Literal["message.removed"]
    conversation: int
    id: int
    seq: int


class ConversationFrame(TypedDict):
    type: Literal["conversation.joined", "conversation.left", "conversation.updated"]
    conversation: ConversationPayload


class ReadyFrame(TypedDict):
    type: Literal["ready"]
    conversations: dict[str, int]  # conversation id (a JSON object key) -> last_seq
    changes: dict[str, int]  # conversation id -> last_change


class SendOkFrame(TypedDict):
    type: Literal["send.ok"]
    client_msg_id: str
    message: MessagePayload
    duplicate: bool


class ErrorFrame(TypedDict):
    """``error``, or ``send.error`` for a send the server can attribute (its client_msg_id)."""

    type: Literal["error", "send.error"]
    code: str
    detail: str
    client_msg_id: NotRequired[str]
    retry_after_ms: NotRequired[int]


def message_frame(message: MessagePayload) -> MessageFrame:
    return {"type": "message", "message": message}


def messages_frame(conversation_id: int, messages: list[MessagePayload], *, has_more: bool) -> MessagesFrame:
    return {"type": "messages", "conversation": conversation_id, "messages": messages, "has_more": has_more}


def change_frame(record: ChangePayload) -> ChangeFrame:
    return {"type": "change", **record}


def changes_frame(conversation_id: int, changes: list[ChangePayload], *, has_more: bool) -> ChangesFrame:
    return {"type": "changes", "conversation": conversation_id, "changes": changes, "has_more": has_more}


def receipt_frame(conversation_id: int, user_id: int, *, delivered_seq: int, read_seq: int) -> ReceiptFrame:
    return {"type": "receipt", "conversation": conversation_id, "user": user_id,
            "delivered_seq": delivered_seq, "read_seq": read_seq}


def receipts_frame(conversation_id: int, receipts: list[ReceiptFrame]) -> dict[str, Any]:
    """The marks of several ``receipt`` frames of one conversation as one frame, for a socket
    that asked for batched receipts (an extension: docs/api.md, "Batched receipts")."""
    return {"type": "receipts", "conversation": conversation_id,
            "receipts": [{"user": r["user"], "delivered_seq": r["delivered_seq"], "read_seq": r["read_seq"]}
                         for r in receipts]}


def removed_frame(conversation_id: int, message_id: int, seq: int) -> RemovedFrame:
    return {"type": "message.removed", "conversation": conversation_id, "id": message_id, "seq": seq}


def typing_frame(event: TypingEvent) -> dict[str, Any]:
    return {"type": "typing", "conversation": event["conversation"], "user": event["user"]}


def presence_frame(event: PresenceEvent) -> dict[str, Any]:
    return {"type": "presence", "user": event["user"], "online": event["online"]}


def conversation_frame(change: MembershipChange, conversation: ConversationPayload) -> ConversationFrame:
    kind: Literal["conversation.joined", "conversation.left", "conversation.updated"] = (
        f"conversation.{change}")  # type: ignore[assignment]
    return {"type": kind, "conversation": conversation}


def ready_frame(last_seqs: dict[int, int], last_changes: dict[int, int]) -> ReadyFrame:
    return {"type": "ready", "conversations": {str(cid): seq for cid, seq in last_seqs.items()},
            "changes": {str(cid): change for cid, change in last_changes.items()}}


def send_ok_frame(client_msg_id: str, message: MessagePayload, *, duplicate: bool) -> SendOkFrame:
    return {"type": "send.ok", "client_msg_id": client_msg_id, "message": message, "duplicate": duplicate}


def error_frame(code: str, detail: str, *, client_msg_id: str | None = None,
                retry_after_ms: int | None = None) -> ErrorFrame:
    """``send.error`` when ``client_msg_id`` is given (a send's answer), else ``error``."""
    frame: ErrorFrame = {"type": "error" if client_msg_id is None else "send.error", "code": code, "detail": detail}
    if client_msg_id is not None:
        frame["client_msg_id"] = client_msg_id
    if retry_after_ms is not None:
        frame["retry_after_ms"] = retry_after_ms
    return frame


def degraded_frame(shed: list[str]) -> dict[str, Any]:
    return {"type": "degraded", "shed": shed}


def reconnect_frame(after_ms: int) -> dict[str, Any]:
    """A restarting gateway's hint: come back after this long (then it closes with 1012)."""
    return {"type": "reconnect", "after_ms": after_ms}


PONG: dict[str, Any] = {"type": "pong"}
