"""What a socket of this process may be handed besides layer events (messaging.events):
notices from the process itself, never on the wire between servers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol


@dataclass(frozen=True)
class ReceiptText:
    """A coalesced ``receipt`` frame, serialized once for every socket it is for (gateway.receipts).

    ``own_user`` set: only that user's sockets take it, except ``except_devices`` (whose acks
    moved the mark: they know what they acked).
    """

    conversation_id: int
    text: str
    own_user: int | None = None
    except_devices: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class ReceiptBatch:
    """A conversation's coalesced marks for every socket following it (gateway.receipts): a
    socket that asked for batches in its hello writes ``batch_text`` (one ``receipts`` frame),
    any other writes ``texts`` (a ``receipt`` frame per user), each serialized once."""

    conversation_id: int
    texts: tuple[str, ...]
    batch_text: str

    def frames(self, *, batched: bool) -> tuple[str, ...]:
        return (self.batch_text,) if batched else self.texts


@dataclass(frozen=True)
class Resync:
    """The layer lost events (a Redis restart): compare with the store and fill what is missing."""


@dataclass(frozen=True)
class Degraded:
    """Degraded mode changed: tell the client what is shed now."""

    shed: tuple[str, ...]


Notice = ReceiptText | ReceiptBatch | Resync | Degraded


class Subscriber(Protocol):
    """A socket, as the hub and the runtime see it."""

    def deliver(self, event: Mapping[str, Any] | Notice) -> None: ...
