from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.cache import cache
from django.urls import URLPattern, URLResolver, get_resolver

from messaging.attachments import do_upload
from messaging.conversations import do_remove_member
from messaging.models import Conversation, Device, Flag, Message, User
from messaging.moderation import do_flag_message
from messaging.send import do_send_message
from tests import files

P256DH = base64.urlsafe_b64encode(b"\x04" + bytes(range(64))).decode().rstrip("=")
PUSH_AUTH = base64.urlsafe_b64encode(bytes(range(16))).decode().rstrip("=")


@dataclass(frozen=True)
class Route:
    """A named /api/v1/ route and the HTTP methods its view answers."""

    name: str
    pattern: str
    view: type
    methods: tuple[str, ...]


def _walk(patterns: list, prefix: str = ""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


def api_patterns() -> list[tuple[str, URLPattern]]:
    return [(path, entry) for path, entry in _walk(get_resolver().url_patterns) if path.startswith("api/")]


def api_routes() -> list[Route]:
    """Every named /api/v1/ route (each also has an unnamed trailing-slash twin)."""
    routes = []
    for path, entry in api_patterns():
        view = getattr(entry.callback, "view_class", None)
        if entry.name is None or view is None:
            continue
        methods = tuple(m for m in view.http_method_names if m not in ("head", "options") and hasattr(view, m))
        routes.append(Route(entry.name, path, view, methods))
    return routes


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()  # throttle counters
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class World:
    """A private group with a message and a flag, and everyone who stands around it."""

    owner: User
    member: User
    removed: User  # was a member, and was removed
    outsider: User
    moderator: User
    group: Conversation
    message: Message
    flag: Flag
    owner_device: Device
    outsider_device: Device
    attachment_id: int  # an image the message carries

    def kwargs(self) -> dict[str, Any]:
        """Path arguments: each names something of the group's (or the owner's)."""
        return {"conversation_id": self.group.pk, "user_id": self.member.pk, "message_id": self.message.pk,
                "flag_id": self.flag.pk, "device_id": str(self.owner_device.pk), "emoji": "👍",
                "attachment_id": self.attachment_id}


@pytest.fixture
def world(make_user, make_moderator, make_group, make_device) -> World:
    owner, member, removed, outsider = make_user(), make_user(), make_user(), make_user()
    group = make_group(owner, [member, removed], title="private")
    photo = do_upload(uploader=owner, file=files.upload(files.png(), "photo.png"), conversation_id=group.pk)
    message = do_send_message(sender=owner, conversation_id=group.pk, client_msg_id="w1", body="hi",
                              attachments=[photo.pk]).message
    flag = do_flag_message(reporter=member, message_id=message.pk, reason="spam")
    do_remove_member(actor=owner, conversation_id=group.pk, user_id=removed.pk)
    return World(owner=owner, member=member, removed=removed, outsider=outsider, moderator=make_moderator(),
                 group=group, message=message, flag=flag, owner_device=make_device(owner),
                 outsider_device=make_device(outsider), attachment_id=photo.pk)
