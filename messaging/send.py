"""The write path: the one way a message is stored (docs/architecture.md, "Write path").

REST, the WebSocket ``send`` frame, the demo data and the benchmarks all call
:func:`do_send_message`. Prefixes are promises, as everywhere in the core: ``check_*``
(messaging.checks) validates untrusted input, ``access_*`` (messaging.access) authorizes,
``do_*`` changes state in one short transaction and schedules its events after commit.
"""
from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from . import attachments as files
from . import fanout, ratelimit
from .access import as_id, require_not_suspended
from .checks import MAX_SEQ, check_body, check_client_msg_id
from .errors import Conflict, Invalid, NotFound
from .mentions import render_body, store_mentions
from .models import Conversation, Device, Membership, Message, User
from .payloads import MessagePayload, message_payload
from .rows import insert_row, prepared_cursor
from .selectors import MESSAGE_JOINS


@dataclass(frozen=True)
class SendResult:
    message: Message
    payload: MessagePayload
    duplicate: bool


def allocate_seq(conversation_id: int) -> int:
    """Take the next seq of a conversation. Call only inside the transaction that stores it.

    Invariant: seqs of a conversation are 1, 2, 3 ... with no gap and no repeat.
    - One statement increments ``last_seq`` and returns the new value. Its row lock on the
      conversation orders the writers of that conversation (and nothing else) until commit.
    - A rolled-back transaction rolls the increment back with it, so a failed send burns no seq.
    - The unique constraint (conversation, seq) is the backstop should anyone bypass this.
    Lock order: the conversation row first, then membership rows (the sender's watermarks);
    membership changes take them in the same order, so the two cannot deadlock.
    """
    table = Conversation._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET last_seq = last_seq + 1, last_activity_at = %s WHERE id = %s RETURNING last_seq",
            [timezone.now(), conversation_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise NotFound("conversation not found")
    return row[0]


@dataclass(frozen=True)
class _SendTarget:
    membership_id: int
    conversation: Conversation  # id, kind, member_count and slow_mode_seconds loaded; the rest deferred
    prior_send_id: int | None   # the sender's message already stored under this client_msg_id


_CONVERSATION_COLUMNS = ("id", "kind", "member_count", "slow_mode_seconds")


@functools.cache
def _send_target_sql() -> str:
    quote = connection.ops.quote_name
    membership, conversation = Membership._meta.db_table, Conversation._meta.db_table
    columns = ", ".join(f"c.{quote(name)}" for name in _CONVERSATION_COLUMNS)  # plain fields: column = name
    return (
        f"SELECT m.id, {columns}, "
        f"(SELECT p.id FROM {quote(Message._meta.db_table)} p WHERE p.sender_id = %s AND p.client_msg_id = %s "
        f"LIMIT 1) "
        f"FROM {quote(membership)} m JOIN {quote(conversation)} c ON c.id = m.conversation_id "
        f"WHERE m.conversation_id = %s AND m.user_id = %s")


# The SQLSTATE of parley_require() (migration messaging 0009), which aborts _store's statement.
SENDER_GONE = "PA001"


def _store(message: Message, *, membership_id: int) -> None:
    """Take the message's seq, insert it and move the sender's own watermarks to it (you have
    seen what you answer: the receipt merge, which always advances since the seq is past every
    mark). :class:`NotFound`, with nothing stored and no seq taken, when the sender's
    membership or the conversation is gone.

    On PostgreSQL the three are **one statement**: allocate_seq's ``UPDATE … RETURNING`` (same
    invariant, same row lock), the ``INSERT`` fed by it, and raise_marks' ``GREATEST`` merge of
    the sender's row, as data-modifying CTEs. One round trip instead of three while a hot
    conversation's row lock is held, and a third of the statements' client CPU (issue 15).
    The lock order is unchanged (the conversation row, then the membership row), and so is
    the removal race: a membership deleted while this statement waited for the conversation
    lock is skipped by its UPDATE (READ COMMITTED re-checks a row changed under it). Then
    ``parley_require`` fails the statement, which undoes its own seq and insert: so the
    statement is safe to run alone in autocommit (:func:`_send_transaction`). Elsewhere
    (SQLite) the three calls, in that order, in the caller's transaction, which rolls back.
    """
    if connection.vendor != "postgresql":
        message.seq = allocate_seq(message.conversation_id)
        insert_row(message)
        if not Membership.objects.raise_marks({membership_id: (message.seq, message.seq)}):
            raise NotFound("conversation not found")
        return
    sql, fields = _store_sql()
    values = [field.get_db_prep_save(field.pre_save(message, True), connection) for field in fields]
    try:
        with prepared_cursor() as cursor:
            cursor.execute(sql, [timezone.now(), message.conversation_id, *values, membership_id])
            row = cursor.fetchone()
    except DatabaseError as error:
        if getattr(error.__cause__, "sqlstate", None) == SENDER_GONE:
            raise NotFound("conversation not found") from None
        raise
    if row is None:
        raise NotFound("conversation not found")  # no such conversation row: nothing was stored
    message.pk, message.seq, _ = row
    message._state.adding = False
    message._state.db = connection.alias


@functools.cache
def _store_sql() -> tuple[str, list[Any]]:
    """The statement of :func:`_store` on PostgreSQL, built once; and the message fields whose
    values it takes, in order (the seq comes from the UPDATE)."""
    quote = connection.ops.quote_name
    opts = Message._meta
    conversations, messages, memberships = (quote(Conversation._meta.db_table), quote(opts.db_table),
                                            quote(Membership._meta.db_table))
    columns = [f for f in opts.local_concrete_fields if f is not opts.auto_field]
    fields = [f for f in columns if f.name != "seq"]
    values = ", ".join("taken.last_seq" if f.name == "seq" else "%s" for f in columns)
    return (
        f"WITH taken AS (UPDATE {conversations} SET last_seq = last_seq + 1, last_activity_at = %s "
        f"WHERE id = %s RETURNING last_seq), "
        f"stored AS (INSERT INTO {messages} ({', '.join(quote(f.column) for f in columns)}) "
        f"SELECT {values} FROM taken RETURNING id, seq), "
        f"marks AS (UPDATE {memberships} SET delivered_seq = GREATEST({memberships}.delivered_seq, stored.seq), "
        f"read_seq = GREATEST({memberships}.read_seq, stored.seq) FROM stored WHERE {memberships}.id = %s "
        f"RETURNING {memberships}.id) "
        f"SELECT stored.id, stored.seq, parley_require((SELECT count(*) FROM marks) = 1, "
        f"'the sender is no longer a member of the conversation') FROM stored",
        fields,
    )


def _send_transaction(*, single_statement: bool) -> contextlib.AbstractContextManager[Any]:
    """The transaction a send's writes share.

    A plain send writes with :func:`_store`'s one statement alone, and on PostgreSQL that
    statement is all-or-nothing by itself: in autocommit it is its own transaction, with no
    BEGIN and COMMIT round trips, and the conversation's row lock (which orders the senders of
    a hot conversation) is released by the server at the statement's end instead of a round
    trip later. A send with more to write (uploads to take, mentions to store), one inside a
    caller's transaction, and every send on SQLite take a block (a savepoint in a caller's).
    On-commit callbacks (the fan-out) run as soon as they are scheduled without a block: the
    statement has committed by then.
    """
    if single_statement and connection.vendor == "postgresql" and not connection.in_atomic_block \
            and connection.get_autocommit():
        return contextlib.nullcontext()
    return transaction.atomic()


def _access_send_target(sender: User, conversation_id: Any, client_msg_id: str) -> _SendTarget:
    """access_membership and the idempotency lookup in one hand-written query (every send pays
    it; the ORM's select_related, annotate and subquery cost a send more CPU to compile than
    PostgreSQL takes to run them). NotFound for a non-member, as access_membership."""
    conversation_id = as_id(conversation_id)
    if conversation_id is None or not 0 < conversation_id <= MAX_SEQ:
        raise NotFound("conversation not found")
    with prepared_cursor() as cursor:
        cursor.execute(_send_target_sql(), [sender.pk, client_msg_id, conversation_id, sender.pk])
        row = cursor.fetchone()
    if row is None:
        raise NotFound("conversation not found")
    conversation = Conversation.from_db(connection.alias, _CONVERSATION_COLUMNS, row[1:5])
    return _SendTarget(membership_id=row[0], conversation=conversation, prior_send_id=row[5])


def _as_retry(prior: Message, *, sender: User, conversation_id: int, body: str, reply_to: int | None,
              attachment_ids: list[int]) -> SendResult:
    """Idempotency case 2/3: the same key again is the stored message; a changed send is a 409.

    The body compared is the one first sent: an edit since then does not turn the retry of
    the original send into a conflict (its edit history holds the first body). So are the
    attachments: the retry names the uploads the stored message holds, which it does not
    attach a second time. A deleted or removed message has neither left to compare."""
    first_body = prior.edits.values_list("body", flat=True).first() if prior.edited_at else prior.body
    if (prior.conversation_id != conversation_id or prior.reply_to_id != reply_to
            or (not prior.is_removed and (first_body != body or files.attached_ids(prior) != attachment_ids))):
        raise Conflict("client_msg_id was already used for a different message")
    return SendResult(message=prior, payload=message_payload(prior, sender), duplicate=True)


def check_reply_to(reply_to: Any, conversation_id: int) -> Message | None:
    """The message a send answers: one of the same conversation that still has its text."""
    if reply_to is None:
        return None
    invalid = Invalid("reply_to is not a message of this conversation",
                      fields={"reply_to": ["The id of a message of this conversation."]})
    if not isinstance(reply_to, int) or isinstance(reply_to, bool):
        raise invalid
    original = (Message.objects.select_related("sender").filter(pk=reply_to, conversation_id=conversation_id)
                .first())
    if original is None:
        raise invalid
    if original.is_removed:
        raise Invalid("reply_to was deleted", fields={"reply_to": [f"That message was {original.state}."]})
    return original


def _enforce_send_limits(sender: User, conversation: Conversation) -> None:
    """Suspension and rate limits of a new send (a retry of a stored one passes free).

    Costs no query: the suspension is on the sender's row, slow mode on the conversation's
    (loaded with the membership), and the counters are in the cache.
    """
    require_not_suspended(sender)
    ratelimit.enforce(ratelimit.SEND, sender.pk, user=sender)
    if conversation.slow_mode_seconds:
        ratelimit.enforce(ratelimit.SLOW_MODE, f"{conversation.pk}:{sender.pk}", user=sender,
                          rate=ratelimit.Rate(1, conversation.slow_mode_seconds))


def do_send_message(*, sender: User, conversation_id: Any, client_msg_id: Any, body: Any,
                    device: Device | None = None, reply_to: Any = None, attachments: Any = None) -> SendResult:
    """Store a message and schedule its fan-out.

    Idempotency, as numbered cases (each has a test):
    1. first send: a new seq, ``duplicate=False``;
    2. a retry (same sender and client_msg_id, same conversation and body), whether the
       first attempt's answer was lost or it is still in flight: the stored message,
       ``duplicate=True``, no seq burnt;
    3. the same key with another body, conversation, ``reply_to`` or ``attachments``:
       :class:`Conflict`;
    4. two concurrent first sends of one key: the loser's insert hits the unique constraint,
       its transaction (and seq increment) rolls back, and it returns the winner's row.

    A new send (not a retry) must pass :func:`_enforce_send_limits`: a suspended sender is
    :class:`Forbidden`, one over a rate limit :class:`RateLimited`.

    ``attachments`` lists upload ids (messaging.attachments): the sender's own, not sent yet;
    a message that carries any may have an empty body.
    """
    attachment_ids = files.check_attachment_ids(attachments)
    body = check_body(body, allow_empty=bool(attachment_ids))
    client_msg_id = check_client_msg_id(client_msg_id)
    target = _access_send_target(sender, conversation_id, client_msg_id)
    conversation = target.conversation

    if reply_to is not None and (not isinstance(reply_to, int) or isinstance(reply_to, bool)):
        raise Invalid("reply_to must be a message id", fields={"reply_to": ["A message id (an integer)."]})
    if target.prior_send_id is not None:
        prior = Message.objects.select_related(*MESSAGE_JOINS).get(pk=target.prior_send_id)
        return _as_retry(prior, sender=sender, conversation_id=conversation.pk, body=body, reply_to=reply_to,
                         attachment_ids=attachment_ids)
    _enforce_send_limits(sender, conversation)
    original = check_reply_to(reply_to, conversation.pk)
    rendered = render_body(conversation, body)

    write_started = time.perf_counter()
    try:
        with _send_transaction(single_statement=not attachment_ids and not rendered.mention_ids):
            # The uploads are locked before the conversation row _store takes: a send's uploads
            # are unattached, which no deletion or removal ever marks, so no lock cycle forms;
            # two sends of one upload queue on its row and the second rolls back (no seq taken).
            taken = (files.take_for_send(sender=sender, conversation_id=conversation.pk, ids=attachment_ids)
                     if attachment_ids else [])
            message = Message(
                conversation_id=conversation.pk, sender=sender, sender_device=device,
                client_msg_id=client_msg_id, body=body, html=rendered.html, mention_ids=rendered.mention_ids,
                reply_to=original, attachments=taken,
            )
            # NotFound when a removal committed while this send waited for the conversation
            # lock (removals take it too): the sender may no longer post, and no seq is taken.
            _store(message, membership_id=target.membership_id)
            files.attach(message, attachment_ids)
            if rendered.mention_ids:
                store_mentions(message, new=True)
            payload = message_payload(message, sender)
            fanout.message_stored(message=payload, member_count=conversation.member_count,
                                  write_started=write_started)
    except IntegrityError:
        winner = (Message.objects.select_related(*MESSAGE_JOINS)
                  .filter(sender=sender, client_msg_id=client_msg_id).first())
        if winner is None:
            raise
        return _as_retry(winner, sender=sender, conversation_id=conversation.pk, body=body, reply_to=reply_to,
                         attachment_ids=attachment_ids)
    return SendResult(message=message, payload=payload, duplicate=False)
