"""Sessions and secrets: a login starts a new session, and no credential reaches a log line."""
from __future__ import annotations

import logging

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from rest_framework.test import APIClient

from .conftest import P256DH, PUSH_AUTH

PASSWORD = "correct-Horse-battery-9"


def test_logging_in_replaces_a_planted_session_and_destroys_it(make_user):
    make_user("kim", password=PASSWORD)
    planted = SessionStore()
    planted["planted-by"] = "attacker"
    planted.create()
    client = APIClient()
    client.cookies[settings.SESSION_COOKIE_NAME] = planted.session_key
    assert client.post("/api/v1/auth/login", {"username": "kim", "password": PASSWORD},
                       format="json").status_code == 200
    assert client.cookies[settings.SESSION_COOKIE_NAME].value != planted.session_key
    assert not SessionStore().exists(planted.session_key)  # the attacker's key logs no one in
    attacker = APIClient()
    attacker.cookies[settings.SESSION_COOKIE_NAME] = planted.session_key
    assert attacker.get("/api/v1/me").status_code == 401


def test_logging_out_destroys_the_session(make_user):
    make_user("lee", password=PASSWORD)
    client = APIClient()
    client.post("/api/v1/auth/login", {"username": "lee", "password": PASSWORD}, format="json")
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert client.post("/api/v1/auth/logout").status_code == 204
    assert not SessionStore().exists(key)


@pytest.mark.django_db(transaction=True)
async def test_passwords_tokens_tickets_and_push_keys_never_reach_the_logs(caplog, open_socket, settings):
    from channels.db import database_sync_to_async

    from messaging.models import Device

    caplog.set_level(logging.DEBUG)
    settings.PARLEY_PUSH_INSECURE_TEST_ORIGINS = ["http://127.0.0.1:8999"]  # a stored subscription, logged or not
    client = APIClient()

    def use_every_credential() -> tuple[dict[str, str], Device]:
        secrets = {"password": PASSWORD}
        signup = client.post("/api/v1/auth/signup", {"username": "sam", "password": PASSWORD}, format="json")
        secrets["signup token"] = signup.json()["token"]
        client.post("/api/v1/auth/login", {"username": "sam", "password": "wrong-" + PASSWORD}, format="json")
        login = client.post("/api/v1/auth/login", {"username": "sam", "password": PASSWORD}, format="json")
        secrets["session"] = login.cookies[settings.SESSION_COOKIE_NAME].value
        secrets["csrf"] = login.cookies[settings.CSRF_COOKIE_NAME].value
        client.credentials(HTTP_AUTHORIZATION=f"Token {login.json()['token']}")
        client.post("/api/v1/auth/token", {"username": "sam", "password": PASSWORD}, format="json")
        device = client.post("/api/v1/devices", {"name": "phone"}, format="json").json()["id"]
        secrets["ticket"] = client.post("/api/v1/ws-ticket", {"device": device}, format="json").json()["ticket"]
        subscribed = client.post(f"/api/v1/devices/{device}/push-subscription",
                                 {"endpoint": "http://127.0.0.1:8999/secret-endpoint",
                                  "keys": {"p256dh": P256DH, "auth": PUSH_AUTH}}, format="json")
        assert subscribed.status_code == 201
        secrets["push auth"] = PUSH_AUTH
        return secrets, Device.objects.select_related("user").get(pk=device)

    secrets, device = await database_sync_to_async(use_every_credential)()
    socket = await open_socket(device.user, device, ticket=secrets["ticket"])
    await socket.send({"type": "ping"})
    await socket.recv_type("pong")
    await socket.close()
    replayed = await open_socket(device.user, device, ticket=secrets["ticket"], hello=False)
    assert (await replayed.communicator.receive_output(timeout=3))["code"] == 4401

    logged = caplog.text + "".join(repr(record.args) for record in caplog.records)
    assert caplog.records, "the requests above log something (else this test proves nothing)"
    assert not [name for name, secret in secrets.items() if secret in logged]
