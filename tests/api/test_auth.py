import pytest
from django.conf import settings
from django.contrib.auth.hashers import MD5PasswordHasher
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from messaging import layer

PASSWORD = "pw-Parley-123"


def test_signup_creates_a_user_and_returns_a_working_token(api):
    response = api.post("/api/v1/auth/signup",
                        {"username": "alice", "password": "a-Good-passphrase", "display_name": "Alice"},
                        format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["user"]["username"] == "alice" and body["user"]["display_name"] == "Alice"
    api.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    assert api.get("/api/v1/me").json() == body["user"]


class QueriesSeenByTheHasher(MD5PasswordHasher):
    """Records how many queries the request had run when the password was hashed."""

    algorithm = "md5-recording"
    seen: list[int] = []
    capture: CaptureQueriesContext | None = None

    def encode(self, password: str, salt: str) -> str:
        assert self.capture is not None
        type(self).seen.append(len(self.capture.captured_queries))
        return super().encode(password, salt)


def test_signup_hashes_the_password_before_it_touches_the_database(api, settings):
    """Hashing is the slow part of a signup; a connection taken from the pool is held until the
    request ends, so the hash must not happen while holding one (a burst of signups would
    queue behind each other's hashing for the pool)."""
    settings.PASSWORD_HASHERS = [f"{__name__}.QueriesSeenByTheHasher"]
    QueriesSeenByTheHasher.seen = []
    with CaptureQueriesContext(connection) as capture:
        QueriesSeenByTheHasher.capture = capture
        response = api.post("/api/v1/auth/signup", {"username": "dora", "password": "a-Good-passphrase"},
                            format="json")
    assert response.status_code == 201
    assert QueriesSeenByTheHasher.seen == [0]
    assert api.post("/api/v1/auth/login", {"username": "dora", "password": "a-Good-passphrase"},
                    format="json").status_code == 200


def test_signup_without_display_name_shows_the_username(api):
    response = api.post("/api/v1/auth/signup", {"username": "bob", "password": "a-Good-passphrase"}, format="json")
    assert response.status_code == 201
    assert response.json()["user"]["display_name"] == "bob"


def test_signup_rejects_a_weak_password_with_field_errors(api):
    response = api.post("/api/v1/auth/signup", {"username": "carol", "password": "123"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid" and body["fields"]["password"]


@pytest.mark.parametrize("payload, field", [
    ({"password": "a-Good-passphrase"}, "username"),
    ({"username": "dave"}, "password"),
    ({"username": 123, "password": "a-Good-passphrase"}, "username"),
    ({"username": "has space", "password": "a-Good-passphrase"}, "username"),
    ({"username": "x" * 151, "password": "a-Good-passphrase"}, "username"),
    ({"username": "erin", "password": "a-Good-passphrase", "display_name": ["x"]}, "display_name"),
])
def test_signup_rejects_bad_fields(api, payload, field):
    response = api.post("/api/v1/auth/signup", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_signup_refuses_a_taken_username_whatever_its_case(api, make_user):
    make_user("frank")
    response = api.post("/api/v1/auth/signup", {"username": "Frank", "password": "a-Good-passphrase"}, format="json")
    assert response.status_code == 400
    assert response.json()["fields"]["username"] == ["This username is taken."]


@override_settings(PARLEY_OPEN_SIGNUP=False)
def test_signup_is_forbidden_when_open_signup_is_off(api):
    response = api.post("/api/v1/auth/signup", {"username": "gina", "password": "a-Good-passphrase"}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


def test_login_returns_the_user_a_token_and_a_session(api, make_user):
    user = make_user("hank")
    response = api.post("/api/v1/auth/login", {"username": "hank", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    assert response.json()["user"] == {"id": user.pk, "username": "hank", "display_name": "hank"}
    assert response.json()["token"] == Token.objects.get(user=user).key
    assert api.get("/api/v1/me").json()["id"] == user.pk  # by the session cookie alone


@pytest.mark.parametrize("payload", [
    {"username": "ivy", "password": "wrong"},
    {"username": "nobody", "password": PASSWORD},
])
def test_login_with_bad_credentials_is_a_401(api, make_user, payload):
    make_user("ivy")
    response = api.post("/api/v1/auth/login", payload, format="json")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert "sessionid" not in response.cookies


def test_an_inactive_user_cannot_log_in(api, make_user):
    make_user("jack", is_active=False)
    assert api.post("/api/v1/auth/login", {"username": "jack", "password": PASSWORD}, format="json").status_code == 401


def test_login_rotates_the_session_key(make_user):
    make_user("kate")
    client = APIClient()
    planted = SessionStore()
    planted["planted"] = True
    planted.create()
    client.cookies[settings.SESSION_COOKIE_NAME] = planted.session_key
    response = client.post("/api/v1/auth/login", {"username": "kate", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    new_key = response.cookies[settings.SESSION_COOKIE_NAME].value
    assert new_key and new_key != planted.session_key


@override_settings(PARLEY_RATE_LOGIN="3/m")
def test_login_attempts_from_one_address_are_throttled_with_retry_after(api, make_user):
    make_user("liam")
    for attempt in range(3):
        response = api.post("/api/v1/auth/login", {"username": f"guess{attempt}", "password": "x"}, format="json")
        assert response.status_code == 401
    response = api.post("/api/v1/auth/login", {"username": "liam", "password": PASSWORD}, format="json")
    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited"
    assert 0 < int(response["Retry-After"]) <= 60


@override_settings(PARLEY_RATE_LOGIN="3/m")
def test_login_attempts_against_one_username_are_throttled_across_addresses(api, make_user):
    make_user("mia")
    for attempt in range(3):
        response = api.post("/api/v1/auth/login", {"username": "mia", "password": "x"}, format="json",
                            REMOTE_ADDR=f"10.0.0.{attempt + 1}")
        assert response.status_code == 401
    response = api.post("/api/v1/auth/login", {"username": "MIA", "password": "x"}, format="json",
                        REMOTE_ADDR="10.0.0.99")
    assert response.status_code == 429


@override_settings(PARLEY_RATE_SIGNUP="1/h")
def test_signups_from_one_address_are_throttled(api):
    assert api.post("/api/v1/auth/signup", {"username": "n1", "password": "a-Good-passphrase"},
                    format="json").status_code == 201
    response = api.post("/api/v1/auth/signup", {"username": "n2", "password": "a-Good-passphrase"}, format="json")
    assert response.status_code == 429 and "Retry-After" in response


def test_token_endpoint_returns_the_token_without_a_session(api, make_user):
    user = make_user("noah")
    response = api.post("/api/v1/auth/token", {"username": "noah", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    assert response.json() == {"token": Token.objects.get(user=user).key}
    assert settings.SESSION_COOKIE_NAME not in response.cookies


def test_token_endpoint_refuses_bad_credentials(api, make_user):
    make_user("olga")
    assert api.post("/api/v1/auth/token", {"username": "olga", "password": "no"}, format="json").status_code == 401


def test_me_requires_authentication(api):
    response = api.get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_an_unknown_token_is_a_401(api):
    api.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert api.get("/api/v1/me").status_code == 401


def test_logout_ends_the_session_revokes_the_token_and_closes_the_users_sockets(
        make_user, listen, django_capture_on_commit_callbacks):
    user = make_user("pia")
    client = APIClient()
    token = client.post("/api/v1/auth/login", {"username": "pia", "password": PASSWORD}, format="json").json()["token"]
    sockets = listen(layer.user_group(user.pk))
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post("/api/v1/auth/logout").status_code == 204
    assert sockets.next()["type"] == "socket.close"
    assert client.get("/api/v1/me").status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/me").status_code == 401


def test_session_requests_need_the_csrf_token_for_unsafe_methods(make_user):
    make_user("quinn")
    client = APIClient(enforce_csrf_checks=True)
    login = client.post("/api/v1/auth/login", {"username": "quinn", "password": PASSWORD}, format="json")
    assert login.status_code == 200
    assert client.get("/api/v1/me").status_code == 200  # safe methods need no token
    refused = client.post("/api/v1/devices", {"name": "web"}, format="json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    accepted = client.post("/api/v1/devices", {"name": "web"}, format="json",
                           HTTP_X_CSRFTOKEN=login.cookies[settings.CSRF_COOKIE_NAME].value)
    assert accepted.status_code == 201


def test_token_requests_need_no_csrf_token(make_user):
    user = make_user()
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    assert client.post("/api/v1/devices", {"name": "cli"}, format="json").status_code == 201


# Nothing listens on port 1: a cache (and so a rate limiter) that is down.
DEAD_CACHE = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": "redis://127.0.0.1:1/0"}}


def test_login_is_503_not_unthrottled_when_the_rate_limiter_is_down(api, make_user):
    make_user("rita")
    with override_settings(CACHES=DEAD_CACHE):
        response = api.post("/api/v1/auth/login", {"username": "rita", "password": PASSWORD}, format="json")
    assert (response.status_code, response.json()["code"]) == (503, "unavailable")
    assert response["Retry-After"] == "1"
