"""What a request body may be (issue 16, item 3): JSON of bounded depth and size, anything else a
400 or 413 in the API's error shape, never a 500 or Django's HTML page."""
from __future__ import annotations

import json

import pytest

NESTED = "[" * 15_000 + "]" * 15_000  # 30 KB, within the size limit; Python's decoder hits RecursionError


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/auth/signup", "/api/v1/auth/token"])
def test_deeply_nested_json_is_a_400_without_credentials(api, path):
    response = api.post(path, NESTED, content_type="application/json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "invalid"


def test_deeply_nested_json_is_a_400_for_a_signed_in_user_too(api, make_user):
    response = api.as_user(make_user()).post("/api/v1/devices", NESTED, content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (400, "invalid")


def test_json_nested_past_the_depth_limit_is_refused_before_any_serializer_sees_it(api, make_user, settings):
    settings.PARLEY_JSON_MAX_DEPTH = 5
    user = make_user()
    deep = {"name": "phone", "extra": [[[[[["too deep"]]]]]]}
    response = api.as_user(user).post("/api/v1/devices", json.dumps(deep), content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (400, "invalid")
    assert "deep" in response.json()["detail"]
    shallow = {"name": "phone", "extra": [["fine"]]}
    assert api.as_user(user).post("/api/v1/devices", json.dumps(shallow),
                                  content_type="application/json").status_code == 201


def test_a_body_over_the_size_limit_is_a_413_in_the_apis_shape(api, make_user, settings):
    settings.PARLEY_MAX_REQUEST_BYTES = 1024
    body = json.dumps({"username": "x" * 2000, "password": "y"})
    response = api.post("/api/v1/auth/login", body, content_type="application/json")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "too_large"
    small = api.post("/api/v1/auth/login", json.dumps({"username": "x", "password": "y"}),
                     content_type="application/json")
    assert small.status_code == 401


def test_an_api_request_django_itself_refuses_gets_the_apis_shape(client, settings):
    """Django refuses a form body over DATA_UPLOAD_MAX_MEMORY_SIZE before any view runs."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = client.post("/api/v1/auth/login", {"username": "x" * 500, "password": "y"})
    assert response.status_code in (413, 415)
    assert response["Content-Type"] == "application/json"
