"""What the writers of a socket share: the socket under them, the frame codec, and frames
serialized once per process.

One message reaches every socket of a gateway that follows its conversation, so its frame is
encoded once per process and every socket is handed the same text (:func:`frame_text`). A
socket that has several messages of a conversation queued gets them as one ``messages``
frame, built by joining each message's JSON, itself encoded once per process
(:func:`run_text`; CONTRACT "messages": a live batch is a contiguous run with ``has_more``
false). The codec is orjson (issue 15: the standard library's encoder was a visible share of
a delivery); frames from clients that orjson refuses (a lone surrogate escape, nesting
deeper than it allows) are decoded by the standard library as before, so what a client
sends is judged exactly as it was.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Protocol, Sequence

import orjson


class Transport(Protocol):
    """The socket under a connection (the consumer)."""

    async def send_text(self, text: str) -> None: ...

    async def close_socket(self, code: int) -> None: ...


def encode(frame: Mapping[str, Any] | Sequence[Any]) -> str:
    """A frame as JSON text (ids as object keys become strings, as the contract says)."""
    return orjson.dumps(frame, option=orjson.OPT_NON_STR_KEYS).decode()


def decode(text: str) -> Any:
    """A client's frame as Python values; ValueError or RecursionError when it is not JSON."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)  # what orjson refuses, judged as before (its own errors)


def frame_text(event: Mapping[str, Any], frame: Mapping[str, Any]) -> str:
    """The frame for a layer event, serialized once per process: every socket shares the event."""
    text = event.get("_frame")
    if text is None:
        text = event["_frame"] = encode(frame)  # type: ignore[index]  # the hub's own dict
    return text


def message_json(event: Mapping[str, Any]) -> str:
    """The JSON of a ``conv.message`` event's message, once per process."""
    text = event.get("_message")
    if text is None:
        text = event["_message"] = encode(event["message"])  # type: ignore[index]  # the hub's own dict
    return text


def run_text(conversation_id: int, messages: Sequence[str]) -> str:
    """A live ``messages`` frame (``has_more`` false) from messages already encoded: the same
    object :func:`messaging.events.messages_frame` builds, without encoding them again."""
    return (f'{{"type":"messages","conversation":{int(conversation_id)},"messages":[{",".join(messages)}],'
            f'"has_more":false}}')

