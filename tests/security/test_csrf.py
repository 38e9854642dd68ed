"""Cross-site request forgery against the session-authenticated REST API (CONTRACT, Authentication)."""
from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from rest_framework.test import APIClient

from .conftest import api_routes
from .test_authorization import PAYLOADS, PUBLIC, call

UNSAFE = ("post", "put", "patch", "delete")


def browser(user) -> tuple[APIClient, str]:
    """A browser logged in as the user that, like a cross-site page, sends no CSRF token."""
    client = APIClient(enforce_csrf_checks=True)
    login = client.post(reverse("api:auth-login"), {"username": user.username, "password": "pw-Parley-123"},
                        format="json")
    assert login.status_code == 200
    return client, login.cookies[settings.CSRF_COOKIE_NAME].value


def test_every_unsafe_request_on_the_session_needs_the_csrf_token(world):
    """Each is refused before it runs, without the token; the token alone gets the same request past the check."""
    client, token = browser(world.owner)
    refused, let_through = [], []
    for route in api_routes():
        if route.name in PUBLIC:
            continue
        arguments = {k: v for k, v in world.kwargs().items() if f":{k}>" in route.pattern}
        url = reverse(f"api:{route.name}", kwargs=arguments)
        for method in (m for m in route.methods if m in UNSAFE):
            payload = PAYLOADS[(route.name, method)](world) if (route.name, method) in PAYLOADS else None
            forged = call(client, method, url, payload)  # a file goes as multipart
            if forged.status_code != 403 or "CSRF" not in forged.json()["detail"]:
                let_through.append((method, url, forged.status_code))
            refused.append((method, url))
    assert not let_through
    assert len(refused) >= 15
    # The same session with the token passes the check (then succeeds or fails on its merits).
    accepted = client.post(reverse("api:devices"), {"name": "web"}, format="json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 201


def test_the_credential_endpoints_cannot_be_posted_by_a_cross_site_form(make_user):
    """They ask for no CSRF token (there is no session yet to ride on); JSON only keeps forms out."""
    make_user("victim", password="pw-Parley-123")
    client = APIClient(enforce_csrf_checks=True)
    for name in ("auth-login", "auth-token", "auth-signup"):
        form = client.post(reverse(f"api:{name}"), {"username": "victim", "password": "pw-Parley-123"})
        assert form.status_code == 415, name
    assert settings.SESSION_COOKIE_NAME not in client.cookies
