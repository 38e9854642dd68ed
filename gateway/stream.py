"""What one connection has sent of each conversation: the in-order, gap-free promise.

CONTRACT "Semantics" 3: on one connection the message frames of a conversation arrive in
strictly increasing seq with no gap after the resume point. The live path is a doorbell and
may skip (a lost layer event) or reorder (concurrent senders commit in one order and their
after-commit events can arrive in another). :class:`ConnectionStreams` is the pure state
machine that decides, for every live event, whether to send it, drop it as already sent,
or first fill the gap from PostgreSQL. It holds no I/O, so it is tested exhaustively.

Per conversation it tracks:

* ``held``: the highest seq the client holds with everything before it (the resume point,
  then every seq sent). Only ever increases; nothing at or below it is sent again.
* ``behind``: the client is paging through replay; no live frames are sent past what it
  holds until a page comes back with ``has_more: false`` (CONTRACT, hello).
* ``seen``: the highest seq a live event announced. When a connection catches up, or an
  event is dropped while behind, ``seen > held`` means a fill is owed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Action(Enum):
    SEND = "send"          # the event is exactly the next seq: send it as is
    DROP = "drop"          # already held, or not followed (not a member here)
    FILL = "fill"          # read (held, upto] from the store and send it in order
    DEFER = "defer"        # client is behind and paging: remember, send nothing


@dataclass(frozen=True)
class Decision:
    action: Action
    after_seq: int = 0
    upto_seq: int = 0


@dataclass
class _Conversation:
    held: int
    behind: bool = False
    seen: int = 0


@dataclass
class ConnectionStreams:
    conversations: dict[int, _Conversation] = field(default_factory=dict)

    # --- membership of the stream --------------------------------------------------------
    def follow(self, conversation_id: int, *, held: int, behind: bool = False) -> None:
        self.conversations[conversation_id] = _Conversation(held=held, behind=behind, seen=held)

    def unfollow(self, conversation_id: int) -> None:
        self.conversations.pop(conversation_id, None)

    def follows(self, conversation_id: int) -> bool:
        return conversation_id in self.conversations

    def held(self, conversation_id: int) -> int:
        return self.conversations[conversation_id].held

    def is_behind(self, conversation_id: int) -> bool:
        return self.conversations[conversation_id].behind

    def client_holds(self, conversation_id: int, seq: int) -> None:
        """The client says it holds everything up to ``seq`` (a replay request's after_seq)."""
        state = self.conversations.get(conversation_id)
        if state is not None and seq > state.held:
            state.held = seq
            state.seen = max(state.seen, seq)

    def cursors(self) -> dict[int, int]:
        return {cid: c.held for cid, c in self.conversations.items()}

    # --- the live path ---------------------------------------------------------------------
    def on_live(self, conversation_id: int, seq: int) -> Decision:
        """A live event announced ``seq``. What must be sent so the stream stays gap-free?"""
        state = self.conversations.get(conversation_id)
        if state is None:
            return Decision(Action.DROP)
        state.seen = max(state.seen, seq)
        if state.behind:
            return Decision(Action.DEFER)
        if seq <= state.held:
            return Decision(Action.DROP)
        if seq == state.held + 1:
            return Decision(Action.SEND)
        return Decision(Action.FILL, after_seq=state.held, upto_seq=seq)

    def owed(self, conversation_id: int) -> Decision:
        """After catching up: a fill for whatever live events announced meanwhile."""
        state = self.conversations.get(conversation_id)
        if state is None or state.behind or state.seen <= state.held:
            return Decision(Action.DROP)
        return Decision(Action.FILL, after_seq=state.held, upto_seq=state.seen)

    # --- what was actually sent --------------------------------------------------------------
    def sent_run(self, conversation_id: int, seqs: list[int]) -> list[int]:
        """Record a run about to be sent; returns the seqs that extend ``held`` contiguously.

        Anything at or below ``held`` is cut (never sent twice). A run that does not start
        right after ``held`` is cut entirely: sending it would open a gap.
        """
        state = self.conversations.get(conversation_id)
        if state is None:
            return []
        fresh: list[int] = []
        expected = state.held + 1
        for seq in seqs:
            if seq < expected:
                continue
            if seq != expected:
                break
            fresh.append(seq)
            expected += 1
        if fresh:
            state.held = fresh[-1]
            state.seen = max(state.seen, state.held)
        return fresh

    def page_done(self, conversation_id: int, *, has_more: bool) -> None:
        state = self.conversations.get(conversation_id)
        if state is not None:
            state.behind = has_more
