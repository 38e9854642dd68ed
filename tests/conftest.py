"""Shared fixtures.

Tests that need PostgreSQL or Redis are marked ``postgres`` / ``redis``. Off CI they skip
when the service is not configured (DATABASE_URL / REDIS_URL); with ``CI=true`` they fail
instead, so a CI run can never pass by skipping its real-service tests.
"""
from __future__ import annotations

import itertools
import os

import pytest
from channels.layers import channel_layers
from django.conf import settings
from django.db import connection

from tests.sockets import open_socket  # noqa: E402,F401 - shared fixture

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

_usernames = itertools.count(1)


def _require(condition: bool, what: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not configured", pytrace=False)
    pytest.skip(f"{what} not configured")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgres"):
        _require(settings.DATABASES["default"]["ENGINE"].endswith("postgresql"), "PostgreSQL (DATABASE_URL)")
    if item.get_closest_marker("redis"):
        _require(bool(settings.CHANNEL_REDIS_URLS), "Redis (REDIS_URL)")


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """A channel layer per test. channels-redis keeps a per-channel asyncio lock that a
    message-cleaning task releases when it finishes; a test's event loop can close first,
    leaving the lock held and bound to a dead loop, and every later test's hub then fails to
    receive (it falls back to resyncing from the store, which hides the live path)."""
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def gateway_tick_driven_by_tests(settings):
    """The gateway's once-a-second tick evaluates degraded mode from shared signals, which are
    noise here (test sockets never ack, no worker drains the broker): a test that needs a
    tick runs ``gateway.process.gateway.tick()`` itself."""
    settings.PARLEY_GATEWAY_TICK_SECONDS = 3600


# Rate limits would only measure how fast a test sends. The limits' own tests (tests/security,
# tests/messaging/test_ratelimit.py) set the rates they exercise.
LIFTED_RATE_LIMITS = {
    "PARLEY_RATE_SEND": "1000000/s",
    "PARLEY_RATE_TYPING": "1000000/s",
    "PARLEY_RATE_CHANGE": "1000000/s",
    "PARLEY_RATE_UPLOAD": "1000000/s",
    "PARLEY_RATE_SEARCH": "1000000/s",
    "PARLEY_RATE_WS_FRAMES": "1000000/s",
    "PARLEY_RATE_WS_HARD_CAP": "1000000/s",
    "PARLEY_RATE_WS_ABUSE": "1000000/s",
}


@pytest.fixture(autouse=True)
def no_generated_vapid_keys(settings):
    """Web Push stays off unless a test configures keys (tests/notifications) or asks for a
    generated pair (PARLEY_VAPID_AUTOGENERATE, on in production): otherwise every stored
    message would enqueue push work on the test broker that no worker ever takes."""
    settings.PARLEY_VAPID_AUTOGENERATE = False


@pytest.fixture(autouse=True)
def lifted_rate_limits(settings):
    for name, rate in LIFTED_RATE_LIMITS.items():
        setattr(settings, name, rate)


@pytest.fixture
def make_user(db):
    from messaging.models import User

    def make(username: str | None = None, password: str = "pw-Parley-123", **extra):
        username = username or f"user{next(_usernames)}"
        return User.objects.create_user(username=username, password=password, **extra)

    return make


@pytest.fixture
def make_moderator(make_user):
    """A member of the "Moderators" group. The group comes from a data migration, which a
    transactional test's flush wipes, so it is made again here if need be."""
    from django.contrib.auth.models import Group, Permission

    def make(username: str | None = None, **extra):
        user = make_user(username, **extra)
        group, created = Group.objects.get_or_create(name="Moderators")
        if created:
            group.permissions.add(Permission.objects.get(codename="moderate_message"))
        user.groups.add(group)
        return user

    return make


@pytest.fixture
def make_device(db):
    from messaging.models import Device

    def make(user, name: str = "laptop"):
        return Device.objects.create(user=user, name=name)

    return make


@pytest.fixture
def make_group(db):
    from messaging.conversations import do_create_group

    def make(owner, members=(), title="team", **kw):
        return do_create_group(creator=owner, title=title, member_ids=[m.pk for m in members], **kw).conversation

    return make


@pytest.fixture
def api(db):
    """A DRF client; ``api.as_user(u)`` authenticates with the user's token."""
    from rest_framework.test import APIClient

    class Client(APIClient):
        def as_user(self, user):
            from rest_framework.authtoken.models import Token

            token, _ = Token.objects.get_or_create(user=user)
            self.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
            return self

    return Client()


@pytest.fixture
def is_postgres() -> bool:
    return connection.vendor == "postgresql"


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path_factory):
    """Uploaded files go to a directory of the test's own (messaging.attachments): no test
    writes into the project, and each starts with an empty storage."""
    root = tmp_path_factory.mktemp("media")
    settings.MEDIA_ROOT = root
    settings.STORAGES = {**settings.STORAGES, "attachments": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": root}}}
    return root
