"""What happened, announced for the apps built on the core (DESIGN.md 11; docs/architecture.md,
"Floors").

The core never imports an app above it. Where receipts, notifications or operations must react
to a write, the writer announces it here and each app connects its receivers in its
``AppConfig.ready()``:

=================== ==================================== ===============================
hook                announced by                         received by
=================== ==================================== ===============================
``message_stored``  the send path (messaging.send)       notifications: start a push burst;
                                                         ops: count it, time the write
``message_removed`` a moderator's removal                notifications: withdraw a push
                    (messaging.moderation)               that shows it
``read_advanced``   the receipt merge (receipts)         notifications: close a push that
                                                         the read made stale
=================== ==================================== ===============================

Invariant: **nothing is announced before commit.** :meth:`Hook.announce` hands every receiver
the event once the current transaction commits (at once outside one): a rolled-back write
announces nothing, and a receiver that fails is logged without stopping the others or
failing the write, which is already stored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

from django.db import transaction

Event = TypeVar("Event")


class Hook(Generic[Event]):
    def __init__(self, name: str) -> None:
        self.name = name
        self.receivers: list[Callable[[Event], None]] = []

    def connect(self, receiver: Callable[[Event], None]) -> None:
        """Add a receiver; connecting the same one again changes nothing."""
        if receiver not in self.receivers:
            self.receivers.append(receiver)

    def announce(self, event: Event) -> None:
        for receiver in self.receivers:
            transaction.on_commit(_call(receiver, event), robust=True)

    def __repr__(self) -> str:
        return f"<Hook {self.name}: {len(self.receivers)} receivers>"


@dataclass(frozen=True)
class MessageStored:
    conversation_id: int
    seq: int
    member_count: int
    # time.perf_counter() when the storing transaction began. Receivers run right after its
    # commit, so "now minus this" is the durable write, commit included.
    write_started: float


@dataclass(frozen=True)
class MessageRemoved:
    conversation_id: int
    message_id: int
    seq: int


@dataclass(frozen=True)
class ReadAdvanced:
    conversation_id: int
    user_id: int
    read_seq: int


def _call(receiver: Callable[[Event], None], event: Event) -> Callable[[], None]:
    # A named function, not a partial: Django's robust on_commit logs a failure by the
    # callback's __qualname__, which a partial lacks (the log call itself would raise).
    def call() -> None:
        receiver(event)

    call.__qualname__ = getattr(receiver, "__qualname__", repr(receiver))
    return call


message_stored: Hook[MessageStored] = Hook("message_stored")
message_removed: Hook[MessageRemoved] = Hook("message_removed")
read_advanced: Hook[ReadAdvanced] = Hook("read_advanced")
