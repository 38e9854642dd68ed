"""The change stream: edits, deletes, reactions and removals of stored messages (CONTRACT
v1.1, "The change stream"; docs/architecture.md, "Change stream").

A change never takes a seq: messages stay numbered 1..N. It takes the conversation's next
*change number* instead, by :func:`allocate_change`, in the transaction that applies it, and
leaves one :class:`~messaging.models.MessageChange` row. The gateways announce it live and
fill gaps from those rows exactly as they do for messages, and a device replays what it
missed by cursor (``after``), so every device sees every change once, in order.

Every change follows one shape (:func:`apply_change`): lock the message row, decide from its
state (a change that would change nothing takes no number: a retried edit or reaction is
free), then number the change, write the message and the change row, and publish after
commit. Lock order: the message row (``FOR NO KEY UPDATE``, which a concurrent reply's
foreign-key check does not wait for), then the conversation row (allocate_change). The send
path takes the conversation row and locks no existing message, so the two cannot deadlock.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from . import attachments as files
from . import fanout, ratelimit
from .access import access_message, as_id, require_not_suspended
from .checks import check_body
from .errors import Conflict, Forbidden, NotFound
from .mentions import render_body, store_mentions
from .models import (
    MODERATE_PERMISSION,
    Conversation,
    Mention,
    Message,
    MessageChange,
    MessageEdit,
    ModerationDecision,
    Reaction,
    User,
)
from .payloads import ChangePayload, MessagePayload, change_payload, message_payload
from .selectors import MESSAGE_JOINS

Kind = MessageChange.Kind


def allocate_change(conversation_id: int) -> int:
    """Take the next change number of a conversation. Call only inside the transaction that
    applies the change.

    Invariant: change numbers of a conversation are 1, 2, 3 ... with no gap and no repeat,
    for the reasons seqs are (messaging.send.allocate_seq): one statement increments
    ``last_change`` under the conversation's row lock and returns it, a rollback takes it
    back, and the unique (conversation, change) constraint is the backstop.
    """
    table = Conversation._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET last_change = last_change + 1 WHERE id = %s RETURNING last_change",
                       [conversation_id])
        row = cursor.fetchone()
    if row is None:
        raise NotFound("conversation not found")
    return row[0]


def _lock(message_id: int) -> Message:
    return (Message.objects.select_for_update(no_key=True, of=("self",))
            .select_related("conversation", *MESSAGE_JOINS).get(pk=message_id))


def record_change(message: Message, *, kind: str, actor: User | None,
                  write: Callable[[int], dict[str, Any]]) -> ChangePayload:
    """Number a change of ``message`` (locked by the caller), write it, and publish it after commit.

    ``write(change)`` returns the message fields to store with the new ``version``; they are
    written in one UPDATE and set on ``message``, whose payload the record carries.
    """
    change = allocate_change(message.conversation_id)
    fields = {**write(change), "version": change}
    Message.objects.filter(pk=message.pk).update(**fields)
    for name, value in fields.items():
        setattr(message, name, value)
    row = MessageChange.objects.create(conversation_id=message.conversation_id, change=change, kind=kind,
                                       message=message, actor=actor)
    record = change_payload(row, message)
    fanout.message_changed(record)
    return record


def apply_change(actor: User, message_id: Any, decide: Callable[[Message], Callable[[], ChangePayload] | None],
                 *, moderators_anywhere: bool = False) -> MessagePayload:
    """The one shape of every change: authorize, lock, decide, and apply (or not).

    The actor must be a member of the message's conversation (NotFound otherwise, as for
    anything of a conversation one is not in), or, with ``moderators_anywhere``, a moderator.
    ``decide(message)`` runs on the locked row; it raises to refuse, returns None when the
    change would change nothing (the answer is the message as it is, and no number is
    taken), or returns the function that applies it.
    """
    require_not_suspended(actor)
    try:
        message_pk: int = access_message(actor, message_id)[0].pk
    except NotFound:
        anywhere = as_id(message_id) if moderators_anywhere and actor.has_perm(MODERATE_PERMISSION) else None
        if anywhere is None or not Message.objects.filter(pk=anywhere).exists():
            raise
        message_pk = anywhere
    ratelimit.enforce(ratelimit.CHANGE, actor.pk, user=actor)
    with transaction.atomic():
        locked = _lock(message_pk)
        apply = decide(locked)
        if apply is not None:
            apply()
    return message_payload(locked)


# --- Edit -------------------------------------------------------------------------------------

def _require_editable(editor: User, message: Message) -> None:
    if message.sender_id != editor.pk:
        raise Forbidden("only the sender can edit a message")
    if message.is_removed:
        raise Conflict(f"a {message.state} message can't be edited")
    window = settings.PARLEY_EDIT_WINDOW_SECONDS
    if window and timezone.now() - message.created_at > timedelta(seconds=window):
        raise Forbidden("the time to edit this message has passed")


def do_edit_message(*, editor: User, message_id: Any, body: Any) -> MessagePayload:
    """The sender replaces a message's body within the edit window. The old body joins the
    history moderators see; mentions are those of the new body."""
    body = check_body(body)

    def decide(message: Message) -> Callable[[], ChangePayload] | None:
        _require_editable(editor, message)
        if message.body == body:
            return None  # a retried edit: nothing changes, no number is taken

        def apply() -> ChangePayload:
            rendered = render_body(message.conversation, body)
            MessageEdit.objects.create(message=message, body=message.body)
            record = record_change(message, kind=Kind.EDITED, actor=editor, write=lambda change: {
                "body": body, "html": rendered.html, "mention_ids": rendered.mention_ids,
                "edited_at": timezone.now()})
            store_mentions(message)
            return record
        return apply

    return apply_change(editor, message_id, decide)


# --- Delete -----------------------------------------------------------------------------------

def withdraw_text(message: Message) -> dict[str, Any]:
    """What a deleted or removed message keeps: its place (seq), sender and time; no words,
    reactions, mentions or files (gone from the storage after commit: messaging.attachments).
    The caller records the change with these fields."""
    Reaction.objects.filter(message=message).delete()
    Mention.objects.filter(message=message).delete()
    files.discard_message_files(message)
    return {"body": "", "html": "", "mention_ids": [], "reactions": [], "attachments": []}


def do_delete_message(*, actor: User, message_id: Any) -> MessagePayload:
    """The sender, or a moderator, deletes a message: its text is gone from every read path.

    A sender's delete erases the edit history with the body. A moderator's delete of someone
    else's message is a moderation decision: the audit keeps the text as evidence, as a
    removal does. Deleting what is already gone changes nothing.
    """
    def decide(message: Message) -> Callable[[], ChangePayload] | None:
        own = message.sender_id == actor.pk
        if not own and not actor.has_perm(MODERATE_PERMISSION):
            raise Forbidden("only the sender or a moderator can delete a message")
        if message.is_removed:
            return None

        def apply() -> ChangePayload:
            if own:
                MessageEdit.objects.filter(message=message).delete()
            else:
                ModerationDecision.objects.create(
                    moderator=actor, action=ModerationDecision.Action.DELETE_MESSAGE, message=message,
                    conversation_id=message.conversation_id, user_id=message.sender_id, removed_body=message.body)
            return record_change(message, kind=Kind.DELETED, actor=actor,
                                 write=lambda change: {**withdraw_text(message), "state": Message.State.DELETED})
        return apply

    return apply_change(actor, message_id, decide, moderators_anywhere=True)
