"""The durable write path: messaging.send.do_send_message and allocate_seq.

What is proven here (issue 2, "Done when"): seqs are gap-free under racing writers and
retries, a failed transaction burns no seq, each numbered idempotency case of the
do_send_message docstring holds, nothing reaches the channel layer before commit, and the
query count of a send is pinned whatever the member count.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import defaultdict

import pytest
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import IntegrityError, OperationalError, connection, connections, transaction

from messaging import layer, send
from messaging.conversations import do_add_members, do_create_group, do_remove_member
from messaging.errors import Conflict, NotFound
from messaging.models import Conversation, Device, Membership, Mention, Message, User
from messaging.send import do_send_message

pytestmark = pytest.mark.django_db


def _users(count: int, prefix: str) -> list[User]:
    # No password: hashing hundreds of them would dominate the test's runtime.
    return User.objects.bulk_create([User(username=f"{prefix}{i}") for i in range(count)])


def _group(owner: User, members: list[User]) -> Conversation:
    return do_create_group(creator=owner, title="team", member_ids=[m.pk for m in members]).conversation


def _last_seq(conversation: Conversation) -> int:
    return Conversation.objects.values_list("last_seq", flat=True).get(pk=conversation.pk)


def _seqs(conversation: Conversation) -> list[int]:
    return list(Message.objects.filter(conversation=conversation).order_by("seq").values_list("seq", flat=True))


# --- Racing writers and retries -------------------------------------------------------------

SENDERS, SENDS_EACH, ATTEMPTS = 8, 200, 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_racing_retries_store_every_send_once_with_seqs_exactly_one_to_n():
    """8 senders x 200 sends into one conversation; each send is made by three threads at
    once (the send and two retries of its client_msg_id), released together by a barrier."""
    senders = _users(SENDERS, "racer")
    conversation = _group(senders[0], senders[1:])
    outcomes: dict[tuple[int, int], list[tuple[int, int, bool]]] = defaultdict(list)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def attempt_every_send(sender: User, start_together: threading.Barrier) -> None:
        try:
            for n in range(SENDS_EACH):
                start_together.wait(timeout=30)
                result = do_send_message(sender=sender, conversation_id=conversation.pk,
                                         client_msg_id=f"key-{n}", body=f"{sender.username} says {n}")
                with lock:
                    outcomes[(sender.pk, n)].append((result.message.pk, result.message.seq, result.duplicate))
                # Back to the pool after each send, as a request gives it back: 24 threads
                # holding one each for the whole run would wait on a pool of 20.
                connection.close()
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
            start_together.abort()
        finally:
            connections.close_all()

    threads = []
    for sender in senders:
        barrier = threading.Barrier(ATTEMPTS)
        threads += [threading.Thread(target=attempt_every_send, args=(sender, barrier)) for _ in range(ATTEMPTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors, errors[0]
    total = SENDERS * SENDS_EACH
    assert Message.objects.filter(conversation=conversation).count() == total
    assert _seqs(conversation) == list(range(1, total + 1))
    assert _last_seq(conversation) == total
    stored = {(m.sender_id, int(m.client_msg_id.removeprefix("key-"))): (m.pk, m.seq)
              for m in Message.objects.filter(conversation=conversation)}
    assert len(outcomes) == total
    for key, attempts in outcomes.items():
        assert len(attempts) == ATTEMPTS
        assert {(pk, seq) for pk, seq, _ in attempts} == {stored[key]}, key
        assert sorted(duplicate for _, _, duplicate in attempts) == [False, True, True], key


# --- A failed transaction burns no seq ------------------------------------------------------

def test_a_send_failing_after_taking_a_seq_leaves_no_gap(monkeypatch):
    alice, bob = _users(2, "member")
    conversation = _group(alice, [bob])
    do_send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="k1", body="one")
    taken = []

    def payload_fails(message, sender):  # the message is stored by now, inside the transaction
        taken.append((message.seq, _last_seq(conversation)))
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(send, "message_payload", payload_fails)
    with pytest.raises(OperationalError):
        do_send_message(sender=bob, conversation_id=conversation.pk, client_msg_id="k2", body="two")
    monkeypatch.undo()

    assert taken == [(2, 2)]  # seq 2 was taken...
    assert _last_seq(conversation) == 1  # ...and rolled back with the transaction
    after = do_send_message(sender=bob, conversation_id=conversation.pk, client_msg_id="k3", body="three")
    assert after.message.seq == 2
    assert _seqs(conversation) == [1, 2]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_send_whose_commit_fails_in_the_database_leaves_no_gap():
    alice, bob = _users(2, "commit")
    conversation = _group(alice, [bob])
    do_send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="k1", body="one")
    # Foreign keys are checked at COMMIT (DEFERRABLE INITIALLY DEFERRED): this send takes seq 2,
    # inserts its row, and only then does PostgreSQL refuse the whole transaction.
    never_saved = Device(user=bob)
    with pytest.raises(IntegrityError):
        do_send_message(sender=bob, conversation_id=conversation.pk, client_msg_id="k2", body="two",
                        device=never_saved)

    assert _last_seq(conversation) == 1
    after = do_send_message(sender=bob, conversation_id=conversation.pk, client_msg_id="k2", body="two")
    assert (after.message.seq, after.duplicate) == (2, False)
    assert _seqs(conversation) == [1, 2]


# --- Idempotency, case by case (numbered as in do_send_message's docstring) -----------------

def test_case_1_a_first_send_takes_the_next_seq_and_is_not_a_duplicate():
    alice, bob = _users(2, "member")
    conversation = _group(alice, [bob])
    do_send_message(sender=bob, conversation_id=conversation.pk, client_msg_id="b1", body="before")

    result = do_send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="a1", body="hi")

    assert (result.message.seq, result.duplicate) == (2, False)
    assert result.payload["seq"] == 2 and result.payload["client_msg_id"] == "a1"
    assert _last_seq(conversation) == 2


def test_case_2_a_retry_returns_the_stored_message_and_burns_no_seq():
    alice, bob = _users(2, "member")
    conversation = _group(alice, [bob])
    first = do_send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="a1", body="hi")
    do_send_message(sender=bob, conversation_id=conversation.pk, client_msg_id="b1", body="later")

    retry = do_send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="a1", body="hi")

    assert retry.duplicate is True
    assert (retry.message.pk, retry.message.seq) == (first.message.pk, 1)
    assert retry.payload == first.payload
    assert _last_seq(conversation) == 2
    assert Message.objects.filter(sender=alice).count() == 1


def test_case_3_the_same_key_with_another_body_is_a_conflict():
    alice, bob = _users(2, "member")
    conversation = _group(alice, [bob])
    do_send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="a1", body="hi")

    with pytest.raises(Conflict):
        do_send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="a1", body="hello")

    assert _last_seq(conversation) == 1


def test_case_3_the_same_key_in_another_conversation_is_a_conflict():
    alice, bob = _users(2, "member")
    first, second = _group(alice, [bob]), _group(alice, [bob])
    do_send_message(sender=alice, conversation_id=first.pk, client_msg_id="a1", body="hi")

    with pytest.raises(Conflict):
        do_send_message(sender=alice, conversation_id=second.pk, client_msg_id="a1", body="hi")

    assert (_last_seq(first), _last_seq(second)) == (1, 0)


def test_a_client_msg_id_belongs_to_its_sender():
    alice, bob = _users(2, "member")
    conversation = _group(alice, [bob])
    mine = do_send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="same", body="hi")
    theirs = do_send_message(sender=bob, conversation_id=conversation.pk, client_msg_id="same", body="hi")
    assert (mine.message.seq, theirs.message.seq, theirs.duplicate) == (1, 2, False)


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _wait_until_blocked(pids: list[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM unnest(%s::int[]) AS pid "
                           "WHERE cardinality(pg_blocking_pids(pid)) > 0", [pids])
            if cursor.fetchone()[0] == len(pids):
                return
            time.sleep(0.01)
    raise AssertionError(f"backends {pids} never blocked on the conversation row")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_case_4_two_concurrent_first_sends_of_one_key_store_one_message():
    """Both sends pass the idempotency lookup before either inserts: the test holds the
    conversation row lock until both wait for it inside allocate_seq."""
    alice, bob = _users(2, "twin")
    conversation = _group(alice, [bob])
    pids: list[int] = []
    results, errors = [], []
    pid_known = threading.Semaphore(0)

    def send() -> None:
        try:
            pids.append(_backend_pid())
            pid_known.release()
            results.append(do_send_message(sender=alice, conversation_id=conversation.pk,
                                           client_msg_id="twin", body="only once"))
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send) for _ in range(2)]
    with transaction.atomic():
        Conversation.objects.select_for_update().get(pk=conversation.pk)
        for thread in threads:
            thread.start()
        for _ in threads:
            assert pid_known.acquire(timeout=10)
        _wait_until_blocked(pids)
    for thread in threads:
        thread.join()

    assert not errors, errors[0]
    assert sorted(r.duplicate for r in results) == [False, True]
    assert {(r.message.pk, r.message.seq) for r in results} == {(results[0].message.pk, 1)}
    assert _last_seq(conversation) == 1  # the loser's increment rolled back
    assert _seqs(conversation) == [1]


def _in_thread(action, pids: list[int], outcomes: list) -> threading.Thread:
    def run() -> None:
        try:
            pids.append(_backend_pid())
            outcomes.append(action())
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            outcomes.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait_for_pid(pids: list[int], count: int) -> None:
    deadline = time.monotonic() + 10
    while len(pids) < count:
        assert time.monotonic() < deadline, "a thread never connected"
        time.sleep(0.01)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_removing_a_member_while_their_send_is_in_flight_does_not_deadlock():
    """The send locks the conversation row, then the sender's membership row; a removal must
    take them in the same order. The test parks the send right after allocate_seq (its insert
    waits on an uncommitted row with the same seq) while the removal runs."""
    owner, member = _users(2, "leaver")
    conversation = _group(owner, [member])
    send_pids, remove_pids, send_outcome, remove_outcome = [], [], [], []

    with transaction.atomic():
        Message.objects.create(conversation=conversation, seq=1, sender=owner, client_msg_id="blocker", body="x")
        send = _in_thread(lambda: do_send_message(sender=member, conversation_id=conversation.pk,
                                                  client_msg_id="last words", body="bye"), send_pids, send_outcome)
        _wait_for_pid(send_pids, 1)
        _wait_until_blocked(send_pids)  # holding the conversation row, inserting seq 1
        remove = _in_thread(lambda: do_remove_member(actor=owner, conversation_id=conversation.pk,
                                                     user_id=member.pk), remove_pids, remove_outcome)
        _wait_for_pid(remove_pids, 1)
        _wait_until_blocked(remove_pids)
        transaction.set_rollback(True)  # the blocking row goes away; the send continues
    send.join()
    remove.join()

    assert not isinstance(send_outcome[0], BaseException), send_outcome[0]
    assert not isinstance(remove_outcome[0], BaseException), remove_outcome[0]
    assert _seqs(conversation) == [1]
    assert not Membership.objects.filter(conversation=conversation, user=member).exists()
    assert Conversation.objects.get(pk=conversation.pk).member_count == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_send_that_waited_behind_the_senders_removal_is_refused_and_burns_no_seq():
    """Authorized before the removal committed, stored after it: the send must not land.
    The test holds the conversation row so that the removal, then the send, queue for it."""
    owner, member = _users(2, "kicked")
    conversation = _group(owner, [member])
    remove_pids, send_pids, remove_outcome, send_outcome = [], [], [], []

    with transaction.atomic():
        Conversation.objects.select_for_update().get(pk=conversation.pk)
        remove = _in_thread(lambda: do_remove_member(actor=owner, conversation_id=conversation.pk,
                                                     user_id=member.pk), remove_pids, remove_outcome)
        _wait_for_pid(remove_pids, 1)
        _wait_until_blocked(remove_pids)
        send = _in_thread(lambda: do_send_message(sender=member, conversation_id=conversation.pk,
                                                  client_msg_id="too late", body="hi"), send_pids, send_outcome)
        _wait_for_pid(send_pids, 1)
        _wait_until_blocked(send_pids)  # past access_membership, waiting in allocate_seq
    remove.join()
    send.join()

    assert remove_outcome == [None]
    assert isinstance(send_outcome[0], NotFound), send_outcome[0]
    assert _seqs(conversation) == []
    assert _last_seq(conversation) == 0


# --- Nothing leaves before commit -----------------------------------------------------------

class GroupListener:
    """A channel on a layer group, received from one private event loop.

    One loop for every receive: the in-memory layer's queues and the Redis layer's receive
    lock bind to the loop that first waits on them.
    """

    def __init__(self, group: str) -> None:
        self.layer = get_channel_layer()
        self.loop = asyncio.new_event_loop()
        self.channel = self.loop.run_until_complete(self.layer.new_channel())
        self.loop.run_until_complete(self.layer.group_add(group, self.channel))

    def receive(self, timeout: float) -> dict | None:
        try:
            return self.loop.run_until_complete(asyncio.wait_for(self.layer.receive(self.channel), timeout))
        except asyncio.TimeoutError:
            return None

    def close(self) -> None:
        self.loop.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def layer_kind(request, settings) -> str:
    if request.param == "memory":
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    else:
        settings.CHANNEL_LAYERS = {"default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": url, "socket_timeout": None} for url in settings.CHANNEL_REDIS_URLS],
                       "prefix": "parley-test-write-path"},
        }}
    return request.param


@pytest.fixture
def conversation_listener(layer_kind):
    listeners = []

    def listen(conversation: Conversation) -> GroupListener:
        listeners.append(GroupListener(layer.conversation_group(conversation.pk)))
        return listeners[-1]

    yield listen
    for listener in listeners:
        listener.close()


@pytest.mark.django_db(transaction=True)
def test_a_send_publishes_nothing_before_commit_and_one_event_after(conversation_listener):
    alice, bob = _users(2, "commit")
    conversation = _group(alice, [bob])
    listener = conversation_listener(conversation)

    with transaction.atomic():
        result = do_send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="a1", body="hi")
        assert listener.receive(timeout=0.3) is None

    event = listener.receive(timeout=5)
    assert (event["type"], event["conversation"], event["seq"]) == ("conv.message", conversation.pk, 1)
    assert event["message"] == result.payload
    assert listener.receive(timeout=0.3) is None


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_send_publishes_nothing(conversation_listener):
    alice, bob = _users(2, "rollback")
    conversation = _group(alice, [bob])
    listener = conversation_listener(conversation)

    with pytest.raises(RuntimeError), transaction.atomic():
        do_send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="a1", body="hi")
        raise RuntimeError("the caller's transaction fails after the send")

    assert listener.receive(timeout=0.5) is None
    assert _last_seq(conversation) == 0


@pytest.mark.django_db(transaction=True)
def test_a_retry_publishes_nothing(conversation_listener):
    alice, bob = _users(2, "retry")
    conversation = _group(alice, [bob])
    listener = conversation_listener(conversation)
    do_send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="a1", body="hi")
    assert listener.receive(timeout=5)["seq"] == 1

    do_send_message(sender=alice, conversation_id=conversation.pk, client_msg_id="a1", body="hi")

    assert listener.receive(timeout=0.3) is None


# --- Query count ----------------------------------------------------------------------------

# The membership with the idempotency lookup (one SELECT), then the transaction: SAVEPOINT, the
# store, RELEASE SAVEPOINT (the test runs inside a transaction; in production a plain send on
# PostgreSQL has no block: its store is its own transaction). The store is one statement on PostgreSQL (UPDATE conversation (seq), INSERT
# message and UPDATE sender's watermarks as CTEs: messaging.send._store) and those three
# elsewhere. Fan-out reads nothing: member_count comes with the membership's row. A retry loads
# the stored message after the lookup and stops.
QUERIES_PER_SEND = 4 if connection.vendor == "postgresql" else 6
QUERIES_PER_RETRY = 2


@pytest.mark.parametrize("member_count", [2, 300])
def test_a_send_costs_a_fixed_number_of_queries_whatever_the_member_count(
        member_count, django_assert_num_queries):
    owner, *others = _users(member_count, f"m{member_count}-")
    conversation = _group(owner, others[:settings.PARLEY_MAX_MEMBERS_PER_REQUEST - 1])
    rest = others[settings.PARLEY_MAX_MEMBERS_PER_REQUEST - 1:]
    for start in range(0, len(rest), settings.PARLEY_MAX_MEMBERS_PER_REQUEST):
        chunk = rest[start:start + settings.PARLEY_MAX_MEMBERS_PER_REQUEST]
        do_add_members(actor=owner, conversation_id=conversation.pk, user_ids=[u.pk for u in chunk])
    assert Conversation.objects.get(pk=conversation.pk).member_count == member_count
    sender = User.objects.get(pk=others[-1].pk)  # a plain member, loaded afresh

    with django_assert_num_queries(QUERIES_PER_SEND):
        do_send_message(sender=sender, conversation_id=conversation.pk, client_msg_id="q1", body="hi")
    with django_assert_num_queries(QUERIES_PER_RETRY):
        do_send_message(sender=sender, conversation_id=conversation.pk, client_msg_id="q1", body="hi")


@pytest.mark.postgres
def test_a_connection_plans_the_sends_two_statements_once_and_nothing_else(make_user, make_group):
    """PARLEY_DB_PREPARED_STATEMENTS: the authorize read and the store are prepared on their
    connection, with the values bound apart; Django's own queries never are (a generic plan is
    vetted per statement, messaging.rows.prepared_cursor)."""
    assert settings.PARLEY_DB_PREPARED_STATEMENTS
    alice, bob = make_user(), make_user()
    group = make_group(alice, [bob])
    for i in range(6):
        do_send_message(sender=alice, conversation_id=group.pk, client_msg_id=f"p{i}", body=f"hi {i}")
        assert list(Message.objects.filter(conversation=group, seq=i + 1).values_list("body", flat=True)) == [f"hi {i}"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE NOT from_sql")
        prepared = sorted(row[0] for row in cursor.fetchall())
    assert len(prepared) == 2, prepared
    assert prepared[0].startswith("SELECT m.id") and "client_msg_id = $2" in prepared[0]
    assert prepared[1].startswith("WITH taken AS (UPDATE") and "WHERE id = $2" in prepared[1]
    assert _seqs(group) == [1, 2, 3, 4, 5, 6]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_plain_send_stores_by_its_one_statement_alone_and_a_send_with_more_in_a_block(make_user, make_group):
    """A plain send's store statement is its own transaction (no BEGIN, no COMMIT round trip,
    the conversation's lock released by the server: messaging.send._send_transaction); a send
    that also stores mentions shares one block with them."""
    alice, bob = make_user(username="alice"), make_user(username="bob")
    group = make_group(alice, [bob])
    stores = []

    def observe(execute, sql, params, many, context):
        if sql.startswith("WITH taken AS"):
            stores.append(connection.in_atomic_block)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(observe):
        plain = do_send_message(sender=alice, conversation_id=group.pk, client_msg_id="plain", body="hi")
        mentioning = do_send_message(sender=alice, conversation_id=group.pk, client_msg_id="at", body="hi @bob")
    assert stores == [False, True]
    assert (plain.message.seq, mentioning.message.seq) == (1, 2)
    assert list(Mention.objects.filter(message=mentioning.message).values_list("user_id", flat=True)) == [bob.pk]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("in_callers_transaction", [False, True])
def test_a_store_for_a_sender_no_longer_a_member_takes_back_its_seq_and_row(in_callers_transaction):
    """The store statement that finds the sender's membership gone fails itself (parley_require):
    in autocommit nothing it did stays; inside a caller's transaction that transaction goes on."""
    owner, member = _users(2, f"gone{int(in_callers_transaction)}-")
    conversation = _group(owner, [member])
    membership_id = Membership.objects.get(conversation=conversation, user=member).pk
    Membership.objects.filter(pk=membership_id).delete()  # as a removal committed meanwhile
    message = Message(conversation_id=conversation.pk, sender=member, client_msg_id="late", body="hi", html="hi")

    with transaction.atomic() if in_callers_transaction else contextlib.nullcontext():
        with pytest.raises(NotFound):
            with transaction.atomic() if in_callers_transaction else contextlib.nullcontext():
                send._store(message, membership_id=membership_id)
        assert Conversation.objects.filter(pk=conversation.pk).count() == 1  # the connection works on
    assert _last_seq(conversation) == 0
    assert _seqs(conversation) == []
    do_send_message(sender=owner, conversation_id=conversation.pk, client_msg_id="next", body="still here")
    assert _seqs(conversation) == [1]


def test_first_send_gets_seq_one_and_a_retry_returns_it(make_user, make_group):
    alice, bob = make_user(), make_user()
    group = make_group(alice, [bob])
    first = do_send_message(sender=alice, conversation_id=group.pk, client_msg_id="k1", body="hi")
    again = do_send_message(sender=alice, conversation_id=group.pk, client_msg_id="k1", body="hi")
    assert (first.message.seq, first.duplicate) == (1, False)
    assert (again.message.pk, again.duplicate) == (first.message.pk, True)
