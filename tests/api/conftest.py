from __future__ import annotations

import asyncio
import itertools

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache


@pytest.fixture(autouse=True)
def fresh_cache():
    """Throttle counters and tickets live in the cache; every test starts without any."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def send(db):
    """Store a message through the one write path; returns its payload."""
    from messaging.send import do_send_message

    counter = itertools.count(1)

    def send_(sender, conversation, body="hello"):
        return do_send_message(sender=sender, conversation_id=conversation.pk,
                               client_msg_id=f"k{next(counter)}", body=body).payload

    return send_


@pytest.fixture
def listen():
    """``listen(group)`` subscribes a fresh channel-layer channel; ``.next()`` returns its next event."""
    layer = get_channel_layer()

    class Listener:
        def __init__(self, group: str) -> None:
            self.channel = async_to_sync(layer.new_channel)()
            async_to_sync(layer.group_add)(group, self.channel)

        def next(self, timeout: float = 2.0) -> dict:
            async def receive():
                return await asyncio.wait_for(layer.receive(self.channel), timeout)

            return async_to_sync(receive)()

    return Listener


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """The production hasher spends ~0.5 s per password on purpose; these tests log in often."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
