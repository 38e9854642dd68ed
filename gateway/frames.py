"""What the writers of a socket share: the socket under them, and frames serialized once per process."""
from __future__ import annotations

import json
from typing import Any, Mapping, Protocol


class Transport(Protocol):
    """The socket under a connection (the consumer)."""

    async def send_text(self, text: str) -> None: ...

    async def close_socket(self, code: int) -> None: ...


def frame_text(event: Mapping[str, Any], frame: Mapping[str, Any]) -> str:
    """The frame for a layer event, serialized once per process: every socket shares the event."""
    text = event.get("_frame")
    if text is None:
        text = event["_frame"] = json.dumps(frame)  # type: ignore[index]  # the hub's own dict
    return text
