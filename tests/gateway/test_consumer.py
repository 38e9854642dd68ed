"""The WebSocket protocol through the real ASGI app (in-process, WebsocketCommunicator)."""
from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from messaging.conversations import do_add_members, do_remove_member
from messaging.send import do_send_message

pytestmark = pytest.mark.django_db(transaction=True)

send = database_sync_to_async(do_send_message)


async def send_n(user, conversation, n, prefix="m"):
    results = []
    for i in range(n):
        results.append(await send(sender=user, conversation_id=conversation.pk, client_msg_id=f"{prefix}{i}", body=f"{prefix} {i}"))
    return results


@pytest.fixture
def pair(make_user, make_device, make_group):
    alice, bob = make_user("alice"), make_user("bob")
    group = make_group(alice, [bob])
    return alice, bob, group, make_device(alice), make_device(bob)


async def test_a_message_sent_over_the_socket_reaches_the_other_member_in_order(pair, open_socket):
    alice, bob, group, alice_phone, bob_phone = pair
    a = await open_socket(alice, alice_phone)
    b = await open_socket(bob, bob_phone)
    for i in range(5):
        await a.send({"type": "send", "conversation": group.pk, "client_msg_id": f"k{i}", "body": f"hi {i}"})
        ok = await a.recv_type("send.ok")
        assert ok["client_msg_id"] == f"k{i}" and ok["duplicate"] is False
    seqs = [m["seq"] for m in await b.recv_messages(5)]
    assert seqs == [1, 2, 3, 4, 5]
    await a.close()
    await b.close()


async def test_a_retried_send_frame_returns_the_stored_message_as_duplicate(pair, open_socket):
    alice, bob, group, alice_phone, _ = pair
    a = await open_socket(alice, alice_phone)
    frame = {"type": "send", "conversation": group.pk, "client_msg_id": "same", "body": "once"}
    await a.send(frame)
    first = await a.recv_type("send.ok")
    await a.send(frame)
    second = await a.recv_type("send.ok")
    assert second["duplicate"] is True and second["message"]["id"] == first["message"]["id"]
    await a.send({**frame, "body": "changed"})
    error = await a.recv_type("send.error")
    assert error["code"] == "conflict" and error["client_msg_id"] == "same"
    await a.close()


async def test_hello_replays_what_was_missed_in_pages_then_ready(pair, open_socket):
    alice, bob, group, _, bob_phone = pair
    await send_n(alice, group, 250)
    b = await open_socket(bob, bob_phone, hello=False)
    pages, ready = await b.hello()
    assert ready["conversations"] == {str(group.pk): 250}
    assert [m["seq"] for m in pages[0]["messages"]] == list(range(1, 201)) and pages[0]["has_more"] is True
    await b.send({"type": "replay", "conversation": group.pk, "after_seq": 200, "limit": 200})
    page = await b.recv_type("messages")
    assert [m["seq"] for m in page["messages"]] == list(range(201, 251)) and page["has_more"] is False
    await b.close()


async def test_hello_with_explicit_cursors_resumes_after_them(pair, open_socket):
    alice, bob, group, _, bob_phone = pair
    await send_n(alice, group, 30)
    b = await open_socket(bob, bob_phone, hello=False)
    pages, _ = await b.hello({group.pk: 25})
    assert [m["seq"] for m in pages[0]["messages"]] == [26, 27, 28, 29, 30]
    await b.close()


async def test_stored_ack_cursors_are_the_resume_point_on_the_next_connection(pair, open_socket, settings):
    settings.PARLEY_ACK_FLUSH_MS = 10
    alice, bob, group, _, bob_phone = pair
    await send_n(alice, group, 10)
    b = await open_socket(bob, bob_phone, hello=False)
    pages, _ = await b.hello()
    assert len(pages[0]["messages"]) == 10
    await b.send({"type": "ack", "conversation": group.pk, "seq": 7})
    await b.close()  # flushes acks on disconnect
    await send_n(alice, group, 2, prefix="late")
    b2 = await open_socket(bob, bob_phone, hello=False)
    pages, _ = await b2.hello()
    assert [m["seq"] for m in pages[0]["messages"]] == [8, 9, 10, 11, 12]
    await b2.close()


async def test_live_messages_wait_until_a_replaying_client_has_caught_up(pair, open_socket):
    alice, bob, group, _, bob_phone = pair
    await send_n(alice, group, 205)
    b = await open_socket(bob, bob_phone, hello=False)
    pages, _ = await b.hello()
    assert pages[0]["has_more"] is True
    await send_n(alice, group, 3, prefix="live")  # 206..208 while bob is behind
    assert await b.nothing(0.5)
    await b.send({"type": "replay", "conversation": group.pk, "after_seq": 200})
    page = await b.recv_type("messages")
    received = [m["seq"] for m in page["messages"]]
    while max(received) < 208:
        received += [m["seq"] for m in await b.recv_messages(1)]
    assert received == list(range(201, 209))
    await b.close()


async def test_an_added_member_hears_of_the_conversation_and_gets_its_messages_without_reconnecting(
    pair, open_socket, make_user, make_device
):
    alice, bob, group, alice_phone, _ = pair
    carol = await database_sync_to_async(make_user)("carol")
    carol_phone = await database_sync_to_async(make_device)(carol)
    c = await open_socket(carol, carol_phone)
    await database_sync_to_async(do_add_members)(actor=alice, conversation_id=group.pk, user_ids=[carol.pk])
    joined = await c.recv_type("conversation.joined")
    assert joined["conversation"]["id"] == group.pk
    await send_n(alice, group, 2)
    assert [m["seq"] for m in await c.recv_messages(2)] == [1, 2]
    await c.close()


async def test_a_removed_member_stops_receiving_at_once(pair, open_socket):
    alice, bob, group, _, bob_phone = pair
    b = await open_socket(bob, bob_phone)
    await database_sync_to_async(do_remove_member)(actor=alice, conversation_id=group.pk, user_id=bob.pk)
    left = await b.recv_type("conversation.left")
    assert left["conversation"]["id"] == group.pk
    await send_n(alice, group, 2)
    assert await b.nothing(0.5)
    await b.send({"type": "replay", "conversation": group.pk, "after_seq": 0})
    assert (await b.recv_type("error"))["code"] == "not_found"
    await b.close()


async def test_reads_reach_the_senders_devices_and_the_readers_other_devices(pair, open_socket, make_device):
    alice, bob, group, alice_phone, bob_phone = pair
    bob_laptop = await database_sync_to_async(make_device)(bob, "laptop")
    a = await open_socket(alice, alice_phone)
    b1 = await open_socket(bob, bob_phone)
    b2 = await open_socket(bob, bob_laptop)
    await send_n(alice, group, 3)
    for socket in (b1, b2):
        await socket.recv_messages(3)
    await b1.send({"type": "read", "conversation": group.pk, "seq": 3})
    for socket in (a, b2):
        receipt = await socket.recv_type("receipt", timeout=3)
        while receipt["user"] != bob.pk:
            receipt = await socket.recv_type("receipt", timeout=3)
        assert (receipt["delivered_seq"], receipt["read_seq"]) == (3, 3)
    for s in (a, b1, b2):
        await s.close()


async def test_a_socket_that_asks_for_batches_gets_members_marks_in_receipts_frames_and_no_receipt(
        pair, open_socket, make_user, settings):
    """The hello's ``batch_receipts`` (docs/api.md): a frame per conversation per window (the
    unit tests count them), the same marks a plain socket gets as a ``receipt`` per user."""
    from messaging.models import Device

    settings.PARLEY_RECEIPT_COALESCE_MS = 300
    alice, bob, group, alice_phone, bob_phone = pair
    carol = await database_sync_to_async(make_user)("carol")
    await database_sync_to_async(do_add_members)(actor=alice, conversation_id=group.pk, user_ids=[carol.pk])
    carol_phone = await database_sync_to_async(Device.objects.create)(user=carol, name="phone")
    batching = await open_socket(alice, alice_phone, hello=False)
    await batching.hello(batch_receipts=True)
    plain = await open_socket(alice, await database_sync_to_async(Device.objects.create)(user=alice, name="laptop"))
    b = await open_socket(bob, bob_phone)
    c = await open_socket(carol, carol_phone)
    await send_n(alice, group, 1)
    await b.recv_messages(1)
    await c.recv_messages(1)
    await batching.nothing(0.4)  # the window after alice's own marks (sending raised them) is over
    await b.send({"type": "read", "conversation": group.pk, "seq": 1})
    await c.send({"type": "read", "conversation": group.pk, "seq": 1})

    async def marks_of(socket, kind):
        got = {}
        while set(got) != {bob.pk, carol.pk}:
            frame = await socket.recv_type(kind, timeout=3)
            for mark in frame["receipts"] if kind == "receipts" else [frame]:
                if mark["user"] != alice.pk:
                    got[mark["user"]] = (mark["delivered_seq"], mark["read_seq"])
        return got

    assert await marks_of(batching, "receipts") == {bob.pk: (1, 1), carol.pk: (1, 1)}
    assert await marks_of(plain, "receipt") == {bob.pk: (1, 1), carol.pk: (1, 1)}
    assert not [f for f in await drain(batching) if f["type"] == "receipt"]


async def test_batch_receipts_must_be_a_boolean(pair, open_socket):
    alice, _, _, alice_phone, _ = pair
    socket = await open_socket(alice, alice_phone, hello=False)
    await socket.send({"type": "hello", "cursors": {}, "batch_receipts": "yes"})
    assert (await socket.recv_type("error"))["code"] == "invalid"
    await socket.hello(batch_receipts=True)  # the connection stays open; a good hello works


async def test_acks_out_of_order_never_lower_the_watermark(pair, open_socket, settings):
    from messaging.models import Membership
    from receipts.models import DeviceCursor

    settings.PARLEY_ACK_FLUSH_MS = 10
    alice, bob, group, _, bob_phone = pair
    await send_n(alice, group, 9)
    b = await open_socket(bob, bob_phone)
    for seq in (9, 3, 5):
        await b.send({"type": "ack", "conversation": group.pk, "seq": seq})
    await b.close()
    cursor = await database_sync_to_async(DeviceCursor.objects.get)(device=bob_phone, conversation=group)
    membership = await database_sync_to_async(Membership.objects.get)(user=bob, conversation=group)
    assert cursor.ack_seq == 9 and membership.delivered_seq == 9


async def test_malformed_unknown_and_oversized_frames_get_error_frames_and_the_socket_stays_usable(
    pair, open_socket, settings
):
    alice, _, group, alice_phone, _ = pair
    a = await open_socket(alice, alice_phone)
    await a.send_raw("{not json")
    assert (await a.recv_type("error"))["code"] == "invalid"
    await a.send({"type": "teleport"})
    assert (await a.recv_type("error"))["code"] == "unknown_type"
    await a.send({"type": "send", "conversation": group.pk, "client_msg_id": "big", "body": "x" * 5000})
    error = await a.recv_type("send.error")
    assert (error["code"], error["client_msg_id"]) == ("invalid", "big")
    await a.send({"type": "send", "conversation": "one", "client_msg_id": "typed", "body": "x"})
    assert (await a.recv_type("send.error"))["code"] == "invalid"
    await a.send({"type": "ack", "conversation": group.pk, "seq": -1})
    assert (await a.recv_type("error"))["code"] == "invalid"
    settings.PARLEY_WS_MAX_FRAME_BYTES = 1024
    await a.send_raw('{"type": "ping", "pad": "' + "x" * 2000 + '"}')
    assert (await a.recv_type("error"))["code"] == "too_large"
    await a.send({"type": "ping"})
    assert (await a.recv_type("pong"))["type"] == "pong"
    await a.close()


async def test_a_client_that_keeps_sending_garbage_is_closed_with_4400(pair, open_socket, settings):
    settings.PARLEY_WS_MAX_BAD_FRAMES = 3
    alice, _, _, alice_phone, _ = pair
    a = await open_socket(alice, alice_phone)
    for _ in range(4):
        await a.send_raw("garbage")
    while True:
        output = await a.communicator.receive_output(timeout=3)
        if output["type"] == "websocket.close":
            assert output["code"] == 4400
            break


async def test_handshakes_without_credentials_with_a_foreign_origin_or_anothers_device_are_refused(
    pair, open_socket
):
    alice, bob, _, alice_phone, bob_phone = pair
    for kwargs, code in (
        ({"ticket": None}, 4401),
        ({"origin": "https://evil.example"}, 4403),
    ):
        socket = await open_socket(alice, alice_phone, hello=False, **kwargs)
        assert (await socket.communicator.receive_output(timeout=3))["code"] == code
    socket = await open_socket(alice, bob_phone, hello=False)
    assert (await socket.communicator.receive_output(timeout=3))["code"] == 4403


def session_cookie(user, key: str | None = None) -> str:
    """The cookie header of a browser logged in as ``user`` (or naming the session ``key``)."""
    from django.conf import settings
    from django.test import Client

    if key is None:
        client = Client()
        client.force_login(user)
        key = client.cookies[settings.SESSION_COOKIE_NAME].value
    return f"{settings.SESSION_COOKIE_NAME}={key}"


async def test_a_browser_s_session_cookie_opens_its_socket_without_a_ticket(pair, open_socket):
    alice, _, _, alice_phone, _ = pair
    cookie = await database_sync_to_async(session_cookie)(alice)
    socket = await open_socket(alice, alice_phone, ticket=None, origin="http://localhost:8000", cookie=cookie)
    await socket.send({"type": "ping"})
    assert (await socket.recv_type("pong"))["type"] == "pong"
    await socket.close()
    forged = await open_socket(alice, alice_phone, ticket=None, hello=False, cookie=session_cookie(alice, "x" * 32))
    assert (await forged.communicator.receive_output(timeout=3))["code"] == 4401


async def test_a_ticket_works_once(pair, open_socket):
    from messaging.tickets import issue_ticket

    alice, _, _, alice_phone, _ = pair
    ticket, _ = await database_sync_to_async(issue_ticket)(user_id=alice.pk)
    first = await open_socket(alice, alice_phone, ticket=ticket)
    second = await open_socket(alice, alice_phone, ticket=ticket, hello=False)
    assert (await second.communicator.receive_output(timeout=3))["code"] == 4401
    await first.close()


async def test_a_same_origin_browser_handshake_is_accepted(pair, open_socket):
    alice, _, _, alice_phone, _ = pair
    socket = await open_socket(alice, alice_phone, origin="http://localhost:8000")
    await socket.send({"type": "ping"})
    assert (await socket.recv_type("pong"))["type"] == "pong"
    await socket.close()




async def test_logging_out_closes_every_socket_of_the_user(pair, open_socket, make_device):
    from messaging.accounts import do_logout_everywhere

    alice, bob, _, alice_phone, bob_phone = pair
    alice_laptop = await database_sync_to_async(make_device)(alice, "laptop")
    sockets = [await open_socket(alice, alice_phone), await open_socket(alice, alice_laptop)]
    bystander = await open_socket(bob, bob_phone)
    await database_sync_to_async(do_logout_everywhere)(user=alice)
    assert [await s.closed_with() for s in sockets] == [4401, 4401]
    await bystander.send({"type": "ping"})
    assert (await bystander.recv_type("pong"))["type"] == "pong"
    await bystander.close()


async def test_deleting_a_device_closes_only_that_devices_sockets(pair, open_socket, make_device):
    from messaging.devices import do_remove_device

    alice, _, _, alice_phone, _ = pair
    alice_laptop = await database_sync_to_async(make_device)(alice, "laptop")
    phone = await open_socket(alice, alice_phone)
    laptop = await open_socket(alice, alice_laptop)
    await database_sync_to_async(do_remove_device)(user=alice, device_id=alice_phone.pk)
    assert await phone.closed_with() == 4403
    await laptop.send({"type": "ping"})
    assert (await laptop.recv_type("pong"))["type"] == "pong"
    await laptop.close()


async def test_in_a_large_conversation_an_ack_reaches_only_the_ackers_other_devices(
    pair, open_socket, make_device, settings
):
    """Above the broadcast size, receipts are not broadcast, but a user's other devices still
    hear them; the device whose ack moved the mark is not told what it just said."""
    settings.PARLEY_RECEIPT_BROADCAST_MAX_MEMBERS = 1
    settings.PARLEY_ACK_FLUSH_MS = 10
    alice, bob, group, alice_phone, bob_phone = pair
    bob_laptop = await database_sync_to_async(make_device)(bob, "laptop")
    a = await open_socket(alice, alice_phone)
    b1 = await open_socket(bob, bob_phone)
    b2 = await open_socket(bob, bob_laptop)
    await send_n(alice, group, 2)
    for socket in (b1, b2):
        await socket.recv_messages(2)
    await a.recv_messages(2)
    await b1.send({"type": "ack", "conversation": group.pk, "seq": 2})

    receipt = await b2.recv_type("receipt", timeout=3)
    assert (receipt["user"], receipt["delivered_seq"]) == (bob.pk, 2)
    assert not [f for f in await drain(b1) if f["type"] == "receipt" and f["user"] == bob.pk]
    assert not [f for f in await drain(a) if f["type"] == "receipt" and f["user"] == bob.pk]

    await b1.send({"type": "read", "conversation": group.pk, "seq": 2})  # reads reach every own device
    for socket in (b1, b2):
        receipt = await socket.recv_type("receipt", timeout=3)
        assert (receipt["user"], receipt["read_seq"]) == (bob.pk, 2)
    assert not [f for f in await drain(a) if f["type"] == "receipt" and f["user"] == bob.pk]
    for s in (a, b1, b2):
        await s.close()


async def drain(socket, timeout: float = 0.8) -> list[dict]:
    """Every frame that arrives until none has for ``timeout``."""
    frames = []
    while not await socket.nothing(timeout=timeout):
        frames.append(await socket.recv())
    return frames


async def test_a_gap_seen_by_every_socket_of_a_process_is_read_from_the_store_once(
    make_user, make_device, make_group, open_socket, monkeypatch
):
    """A lost doorbell: five sockets find the same gap at once; one read fills all of them."""
    from gateway import runtime
    from messaging import fanout

    alice = await database_sync_to_async(make_user)("alice")
    others = [await database_sync_to_async(make_user)(f"u{i}") for i in range(5)]
    group = await database_sync_to_async(make_group)(alice, others)
    sockets = [await open_socket(u, await database_sync_to_async(make_device)(u)) for u in others]

    publish = fanout.message_stored
    monkeypatch.setattr(fanout, "message_stored", lambda **kwargs: None)  # seq 1's doorbell is lost
    await send(sender=alice, conversation_id=group.pk, client_msg_id="lost", body="one")
    monkeypatch.setattr(fanout, "message_stored", publish)
    fills = (await runtime.current()).fills
    reads_before = fills.reads
    await send(sender=alice, conversation_id=group.pk, client_msg_id="rings", body="two")

    for socket in sockets:
        seqs = [m["seq"] for m in await socket.recv_messages(2)]
        assert seqs == [1, 2]
    assert fills.reads - reads_before == 1
    for socket in sockets:
        await socket.close()
