"""However a socket ends, the same cleanup runs: presence, the open-connections gauge and the hub's
registrations all forget it (issue 16, items 5 and 6); and no single frame ends a socket the
server did not mean to close (item 4)."""
from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache

from gateway import runtime
from gateway.consumer import GatewayConsumer
from messaging import presence
from ops import metrics

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_presence_left_over():
    """Presence counts live in the shared cache for minutes: start each test without any."""
    cache.clear()


@pytest.fixture
def member(make_user, make_device, make_group):
    alice, bob = make_user("alice"), make_user("bob")
    group = make_group(alice, [bob])
    return alice, make_device(alice), group


def open_gauge() -> float:
    return metrics.OPEN_CONNECTIONS._value.get()


async def forgotten(user) -> None:
    """Nothing of the user's socket is left in this process or in the shared presence counts."""
    gateway = await runtime.current()

    async def online() -> set[int]:
        return await database_sync_to_async(presence.online_user_ids)([user.pk])

    for _ in range(100):  # the cleanup awaits the hub, the ack flush and the cache: give it its turns
        if not gateway.sockets and not gateway.hub.routes and not await online():
            break
        await asyncio.sleep(0.02)
    assert gateway.sockets == set()
    assert gateway.hub.routes == {}
    assert await online() == set()


async def test_a_clean_close_forgets_the_socket(member, open_socket):
    alice, phone, _ = member
    before = open_gauge()
    socket = await open_socket(alice, phone)
    assert open_gauge() == before + 1
    await socket.close()
    await forgotten(alice)
    assert open_gauge() == before


async def test_a_crashed_consumer_is_cleaned_up_like_any_other(member, open_socket, monkeypatch):
    alice, phone, _ = member
    before = open_gauge()
    socket = await open_socket(alice, phone)

    async def crash(self, text_data=None, bytes_data=None):
        raise RuntimeError("a bug in the consumer")

    monkeypatch.setattr(GatewayConsumer, "receive", crash)
    await socket.send({"type": "ping"})
    with pytest.raises(RuntimeError):  # the application instance dies (daphne closes with 1011)
        await socket.communicator.receive_output(timeout=3)
    await forgotten(alice)
    assert open_gauge() == before


async def test_a_handler_that_fails_answers_an_error_frame_and_the_socket_stays(member, open_socket, monkeypatch,
                                                                                 caplog):
    alice, phone, group = member
    socket = await open_socket(alice, phone)

    def broken(**kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr("gateway.consumer.do_mark_read", broken)
    await socket.send({"type": "read", "conversation": group.pk, "seq": 0})
    assert (await socket.recv_type("error"))["code"] == "unavailable"
    monkeypatch.setattr("gateway.consumer.do_send_message", broken)
    await socket.send({"type": "send", "conversation": group.pk, "client_msg_id": "k1", "body": "hi"})
    failed = await socket.recv_type("send.error")
    assert (failed["code"], failed["client_msg_id"]) == ("unavailable", "k1")
    await socket.send({"type": "ping"})
    assert (await socket.recv_type("pong"))["type"] == "pong"
    assert "the database went away" in caplog.text  # logged, with its traceback, for the operator
    await socket.close()
    await forgotten(alice)


async def test_garbage_closes_with_4400_and_cleans_up_even_as_more_garbage_arrives(member, open_socket, settings):
    alice, phone, _ = member
    settings.PARLEY_WS_MAX_BAD_FRAMES = 2
    before = open_gauge()
    socket = await open_socket(alice, phone)
    for _ in range(6):  # the client goes on sending after the server decided to close
        await socket.send_raw("not json")
    assert await socket.closed_with() == 4400
    await socket.close()
    await forgotten(alice)
    assert open_gauge() == before


async def test_abuse_closes_with_4429_and_cleans_up(member, open_socket, settings):
    alice, phone, group = member
    settings.PARLEY_RATE_WS_FRAMES = "1/m"
    settings.PARLEY_RATE_WS_ABUSE = "2/m"
    socket = await open_socket(alice, phone)
    for _ in range(6):
        await socket.send({"type": "typing", "conversation": group.pk})
    assert await socket.closed_with() == 4429
    await socket.close()
    await forgotten(alice)


async def test_a_gateway_shutting_down_cleans_up_every_socket(member, open_socket):
    alice, phone, _ = member
    before = open_gauge()
    socket = await open_socket(alice, phone)
    await (await runtime.current()).drain()
    assert (await socket.recv_type("reconnect"))["after_ms"] >= 0
    assert await socket.closed_with() == 1012
    await forgotten(alice)
    assert open_gauge() == before


@pytest.mark.parametrize("frame, answer", [
    ({"type": "send", "client_msg_id": "nul", "body": "a\u0000b"}, "send.error"),
    ({"type": "send", "client_msg_id": "surrogate", "body": "a\ud800b"}, "send.error"),
    ({"type": "send", "client_msg_id": "k\u0000", "body": "fine"}, "send.error"),
    ({"type": "hello", "cursors": {"\u00b2": 1}}, "error"),  # "²": isdigit() says yes, int() says no
    ({"type": "hello", "cursors": {"\u0661": 1}}, "error"),  # an Arabic-Indic one
])
async def test_one_hostile_frame_gets_an_error_answer_and_the_socket_stays_open(member, open_socket, frame, answer):
    alice, phone, group = member
    hello = frame["type"] != "hello"
    socket = await open_socket(alice, phone, hello=hello)
    if frame["type"] == "send":
        frame = {**frame, "conversation": group.pk}
    # json.dumps writes lone surrogates as \ud800 escapes, as a hostile client would.
    await socket.send(frame)
    reply = await socket.recv_type(answer)
    assert reply["code"] == "invalid"
    await socket.send({"type": "ping"})
    assert (await socket.recv_type("pong"))["type"] == "pong"
    await socket.close()
