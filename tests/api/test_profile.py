"""The signed-in user's own account (issue 14, item 5): display name, password, ending this session."""
from __future__ import annotations

from django.test import Client
from rest_framework.authtoken.models import Token

from messaging.models import User

PASSWORD = "pw-Parley-123"


def test_a_user_changes_the_name_others_see_and_a_blank_one_shows_the_username(api, make_user):
    user = make_user("erin", display_name="Erin")
    client = api.as_user(user)
    response = client.patch("/api/v1/me", {"display_name": "  Erin Evans "}, format="json")
    assert response.status_code == 200
    assert response.json() == {"id": user.pk, "username": "erin", "display_name": "Erin Evans"}
    assert client.patch("/api/v1/me", {"display_name": ""}, format="json").json()["display_name"] == "erin"


def test_a_display_name_that_is_not_text_or_too_long_is_refused_with_field_errors(api, make_user):
    client = api.as_user(make_user())
    for bad in (123, None, "x" * 101, "nul\u0000"):
        response = client.patch("/api/v1/me", {"display_name": bad}, format="json")
        assert response.status_code == 400, bad
        assert "display_name" in response.json()["fields"]


def test_changing_the_password_needs_the_current_one_and_a_strong_new_one(api, make_user):
    user = make_user("erin", password=PASSWORD)
    client = api.as_user(user)
    wrong = client.post("/api/v1/me/password", {"current_password": "nope", "new_password": "a-Fine-pass-42"},
                        format="json")
    assert wrong.status_code == 400 and "current_password" in wrong.json()["fields"]
    weak = client.post("/api/v1/me/password", {"current_password": PASSWORD, "new_password": "123"}, format="json")
    assert weak.status_code == 400 and "new_password" in weak.json()["fields"]
    assert User.objects.get(pk=user.pk).check_password(PASSWORD)


def test_a_password_change_keeps_this_session_and_ends_the_others_and_the_token(make_user):
    make_user("erin", password=PASSWORD)
    here, elsewhere = Client(), Client()
    for client in (here, elsewhere):
        assert client.post("/api/v1/auth/login", {"username": "erin", "password": PASSWORD},
                           content_type="application/json").status_code == 200
    assert Token.objects.filter(user__username="erin").exists()
    response = here.post("/api/v1/me/password", {"current_password": PASSWORD, "new_password": "a-Fine-pass-42"},
                         content_type="application/json")
    assert response.status_code == 204
    assert here.get("/api/v1/me").status_code == 200
    assert elsewhere.get("/api/v1/me").status_code in (401, 403)
    assert not Token.objects.filter(user__username="erin").exists()


def test_ending_this_session_leaves_the_token_and_other_sessions_alone(make_user):
    make_user("erin", password=PASSWORD)
    here, elsewhere = Client(), Client()
    for client in (here, elsewhere):
        client.post("/api/v1/auth/login", {"username": "erin", "password": PASSWORD}, content_type="application/json")
    assert here.post("/api/v1/auth/end-session").status_code == 204
    assert here.get("/api/v1/me").status_code in (401, 403)
    assert elsewhere.get("/api/v1/me").status_code == 200
    assert Token.objects.filter(user__username="erin").exists()
