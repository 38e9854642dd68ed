"""The browser app's pages (web.views): who sees which page, and what the client is told."""
import json

import pytest
from django.contrib.auth.models import Permission
from django.test import override_settings
from rest_framework.authtoken.models import Token


@pytest.fixture
def visitor(client, make_user):
    """A Django test client logged in as a fresh user."""
    user = make_user(display_name="Alice <b>Archer</b>")
    client.force_login(user)
    client.user = user
    return client


def client_config(response) -> dict:
    html = response.content.decode()
    opening = 'id="parley-config" type="application/json">'
    start = html.index(opening) + len(opening)
    return json.loads(html[start:html.index("</script>", start)])


@pytest.mark.parametrize("path", ["/", "/c/12", "/moderation"])
def test_app_pages_send_visitors_to_the_login_page(client, db, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={path}"


@pytest.mark.parametrize("path", ["/login", "/login/", "/signup", "/signup/"])
def test_login_and_signup_answer_with_and_without_a_trailing_slash(client, db, path):
    response = client.get(path)
    assert response.status_code == 200
    assert b'id="auth-form"' in response.content


def test_a_logged_in_visitor_skips_the_login_page_for_a_safe_next_url(visitor):
    assert visitor.get("/login?next=/c/5")["Location"] == "/c/5"
    assert visitor.get("/login?next=https://evil.example/")["Location"] == "/"


def test_the_app_shell_hands_the_client_its_user_and_the_conversation_to_open(visitor):
    response = visitor.get("/c/42")
    config = client_config(response)
    assert config["me"] == {"id": visitor.user.pk, "username": visitor.user.username,
                            "display_name": "Alice <b>Archer</b>"}
    assert config["conversation"] == 42
    assert config["moderator"] is False
    assert config["limits"]["max_body_length"] > 0
    # The display name reaches the page escaped, never as markup.
    assert b"<b>Archer</b>" not in response.content


@override_settings(PARLEY_OPEN_SIGNUP=False)
def test_the_signup_page_says_so_when_signup_is_closed(client, db):
    response = client.get("/signup")
    assert b'id="auth-form"' not in response.content
    assert b"Sign-up is closed" in response.content


def test_the_moderation_page_is_for_moderators_only(visitor):
    assert visitor.get("/moderation").status_code == 403
    visitor.user.user_permissions.add(Permission.objects.get(codename="moderate_message"))
    response = visitor.get("/moderation/")
    assert response.status_code == 200
    assert client_config(response)["moderator"] is True


def test_logging_out_needs_a_post_and_revokes_the_api_token(visitor):
    Token.objects.create(user=visitor.user)
    assert visitor.get("/logout").status_code == 200  # a confirmation page, nothing ended yet
    assert visitor.get("/").status_code == 200
    response = visitor.post("/logout")
    assert response["Location"] == "/login/"
    assert not Token.objects.filter(user=visitor.user).exists()
    assert visitor.get("/").status_code == 302


def test_logging_out_is_refused_without_the_csrf_token(client, make_user):
    from django.test import Client

    user = make_user()
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post("/logout").status_code == 403
    assert strict.get("/").status_code == 200


@pytest.mark.parametrize("path", ["/", "/login", "/signup"])
def test_pages_allow_only_parleys_own_scripts(visitor, path):
    if path != "/":
        visitor.logout()
    policy = visitor.get(path)["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
