"""Parsing and validating client frames (CONTRACT, "WebSocket"). No I/O here.

A frame that cannot be understood raises :class:`FrameError`; the consumer answers it with
an ``error`` frame (or ``send.error`` for a send it can attribute) and stays open.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from messaging.checks import MAX_SEQ, is_json_int

from .frames import decode

_CONVERSATION_KEY = re.compile(r"[0-9]{1,18}")


class FrameError(Exception):
    def __init__(self, code: str, detail: str, *, client_msg_id: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.client_msg_id = client_msg_id


def _int(frame: dict[str, Any], name: str, *, minimum: int = 0) -> int:
    value = frame.get(name)
    if not is_json_int(value) or not minimum <= value <= MAX_SEQ:
        raise FrameError("invalid", f"{name} must be an integer >= {minimum}")
    return value


def _conversation(frame: dict[str, Any]) -> int:
    return _int(frame, "conversation", minimum=1)


@dataclass(frozen=True)
class Hello:
    cursors: dict[int, int]
    changes: dict[int, int] | None = None  # None: the client follows no change cursors (no replay)
    batch_receipts: bool = False  # one ``receipts`` frame per conversation per window (docs/api.md)


@dataclass(frozen=True)
class Send:
    conversation: Any
    client_msg_id: Any
    body: Any
    attachments: Any = None  # upload ids; checked by the core (messaging.attachments)
    reply_to: Any = None  # checked by the write path (messaging.send.check_reply_to)


@dataclass(frozen=True)
class Ack:
    conversation: int
    seq: int


@dataclass(frozen=True)
class Read:
    conversation: int
    seq: int


@dataclass(frozen=True)
class Replay:
    conversation: int
    after_seq: int
    limit: int


@dataclass(frozen=True)
class ReplayChanges:
    conversation: int
    after: int
    limit: int


@dataclass(frozen=True)
class Typing:
    conversation: int


@dataclass(frozen=True)
class Ping:
    pass


Frame = Hello | Send | Ack | Read | Replay | ReplayChanges | Typing | Ping


def _cursors(value: Any, name: str = "cursors") -> dict[int, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FrameError("invalid", f"{name} must be an object of conversation id -> cursor")
    cursors: dict[int, int] = {}
    for key, seq in value.items():
        # ASCII digits only: str.isdigit() takes "²" and "١", which int() then refuses.
        if not (isinstance(key, str) and _CONVERSATION_KEY.fullmatch(key)):
            raise FrameError("invalid", f"{name} keys must be conversation ids")
        if not is_json_int(seq) or not 0 <= seq <= MAX_SEQ:
            raise FrameError("invalid", f"{name} values must be non-negative integers")
        cursors[int(key)] = seq
    return cursors


def _limit(frame: dict[str, Any]) -> int:
    limit = frame.get("limit", settings.PARLEY_REPLAY_PAGE_SIZE)
    if not is_json_int(limit) or limit < 1:
        raise FrameError("invalid", "limit must be a positive integer")
    return min(limit, settings.PARLEY_REPLAY_PAGE_SIZE)


def parse_frame(text: str | None) -> Frame:
    if text is None:
        raise FrameError("invalid", "binary frames are not part of the protocol")
    if len(text.encode("utf-8", "surrogatepass")) > settings.PARLEY_WS_MAX_FRAME_BYTES:
        raise FrameError("too_large", f"frames are limited to {settings.PARLEY_WS_MAX_FRAME_BYTES} bytes")
    try:
        frame = decode(text)
    except (ValueError, RecursionError):
        raise FrameError("invalid", "frames must be JSON objects") from None
    if not isinstance(frame, dict):
        raise FrameError("invalid", "frames must be JSON objects")
    kind = frame.get("type")
    if kind == "hello":
        changes, batch_receipts = frame.get("changes"), frame.get("batch_receipts", False)
        if not isinstance(batch_receipts, bool):
            raise FrameError("invalid", "batch_receipts must be true or false")
        return Hello(cursors=_cursors(frame.get("cursors")),
                     changes=None if changes is None else _cursors(changes, "changes"), batch_receipts=batch_receipts)
    if kind == "send":
        client_msg_id = frame.get("client_msg_id")
        echo = client_msg_id if isinstance(client_msg_id, str) else None
        conversation = frame.get("conversation")
        if not is_json_int(conversation):
            raise FrameError("invalid", "conversation must be an integer", client_msg_id=echo)
        return Send(conversation=conversation, client_msg_id=client_msg_id, body=frame.get("body"),
                    attachments=frame.get("attachments"), reply_to=frame.get("reply_to"))
    if kind == "ack":
        return Ack(conversation=_conversation(frame), seq=_int(frame, "seq"))
    if kind == "read":
        return Read(conversation=_conversation(frame), seq=_int(frame, "seq"))
    if kind == "replay":
        return Replay(conversation=_conversation(frame), after_seq=_int(frame, "after_seq"), limit=_limit(frame))
    if kind == "replay_changes":
        return ReplayChanges(conversation=_conversation(frame), after=_int(frame, "after"), limit=_limit(frame))
    if kind == "typing":
        return Typing(conversation=_conversation(frame))
    if kind == "ping":
        return Ping()
    raise FrameError("unknown_type", f"unknown frame type {kind!r}" if isinstance(kind, str) else "frame has no type")
