"""Fuzzing the REST API from its own OpenAPI schema (schemathesis): whatever a client sends,
no request is a server error and every response is what the schema says it can be.

Bounded for CI: ``FUZZ_EXAMPLES`` cases per operation (about a minute for the whole API).
"""
from __future__ import annotations

import itertools
import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from rest_framework.authtoken.models import Token
from schemathesis import checks
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi import checks as openapi_checks

_alternate = itertools.cycle([False, True])
FUZZ_EXAMPLES = int(os.environ.get("PARLEY_FUZZ_EXAMPLES", "25"))
CHECKS = [checks.not_a_server_error, openapi_checks.status_code_conformance,
          openapi_checks.content_type_conformance, openapi_checks.response_schema_conformance]


@pytest.fixture(autouse=True)
def one_transaction(db):
    # Every request of a case runs in the test's transaction: Django must not close the
    # connection between requests (its test client switches this off the same way).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def fuzzer(make_moderator, make_group, make_user, make_device, send):
    """A moderator (so the moderation endpoints run too) in a conversation with a flagged
    message; returns the user and real values for every path parameter."""
    from messaging.moderation import do_flag_message

    from messaging.attachments import do_upload
    from tests import files

    me, other = make_moderator(), make_user()
    group = make_group(me, [other])
    message = send(other, group)
    flag = do_flag_message(reporter=me, message_id=message["id"], reason="spam")
    photo = do_upload(uploader=me, file=files.upload(files.png(), "photo.png"), conversation_id=group.pk)
    return me, {"conversation_id": group.pk, "message_id": message["id"], "user_id": other.pk,
                "flag_id": flag.pk, "device_id": str(make_device(me).pk), "attachment_id": photo.pk}


# The schema as the server publishes it (asking for it needs no database). Random cases only:
# the deterministic "coverage" phase makes hundreds of cases per operation, too many for CI.
schema = schemathesis.openapi.from_wsgi(
    "/api/v1/schema?format=json", get_wsgi_application(),
    config=SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": False}}}),
)


@schema.parametrize()
@hypothesis_settings(max_examples=FUZZ_EXAMPLES, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                            HealthCheck.filter_too_much])
def test_no_input_makes_a_server_error_and_every_response_matches_the_schema(case, fuzzer):
    user, real = fuzzer
    if case.path_parameters and next(_alternate):
        # Every other case names things that exist, so the fuzzing gets past the 404s.
        case.path_parameters = {name: real.get(name, value) for name, value in case.path_parameters.items()}
    # A fresh token each time: a fuzzed logout revokes the last one.
    token, _ = Token.objects.get_or_create(user=user)
    response = case.call(headers={"Authorization": f"Token {token.key}"})
    case.validate_response(response, checks=CHECKS)


# --- Hostile bodies on every operation that takes one ------------------------------------------

def _hostile_bodies(schema_body: dict) -> list[tuple[str, str]]:
    """(name, raw JSON text) the random fuzzing rarely reaches: deep nesting, NUL, lone
    surrogates (as JSON escapes, which is how a client sends them) and Unicode digits, in every
    field the operation names."""
    fields = list(schema_body.get("properties", {})) or ["x"]

    def every_field(value: str) -> str:
        return "{" + ", ".join(f'"{name}": {value}' for name in fields) + "}"

    return [
        ("nested", "[" * 15_000 + "]" * 15_000),
        ("nested-in-a-field", every_field("[" * 5_000 + "]" * 5_000)),
        ("nul", every_field('"a\\u0000b"')),
        ("lone-surrogate", every_field('"a\\ud800b"')),
        ("unicode-digits", every_field('"\\u00b2\\u0661"')),
        ("not-json", "{'single': quotes}"),
        ("nan", every_field("NaN")),
    ]


def _component(spec: dict, ref_or_schema: dict) -> dict:
    ref = ref_or_schema.get("$ref")
    return spec["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else ref_or_schema


def test_hostile_bodies_on_every_operation_are_4xx_in_the_apis_shape(fuzzer, client):
    user, real = fuzzer
    spec = client.get("/api/v1/schema?format=json").json()
    token, _ = Token.objects.get_or_create(user=user)
    tried = 0
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            content = (operation.get("requestBody") or {}).get("content", {}).get("application/json")
            if content is None:
                continue
            url = path
            for name, value in real.items():
                url = url.replace("{" + name + "}", str(value))
            for name, body in _hostile_bodies(_component(spec, content["schema"])):
                response = getattr(client, method)(url, body, content_type="application/json",
                                                   HTTP_AUTHORIZATION=f"Token {token.key}")
                assert response.status_code < 500, (method, path, name, response.content[:300])
                assert response["Content-Type"] == "application/json", (method, path, name)
                if response.status_code >= 400:
                    assert "code" in response.json(), (method, path, name)
                tried += 1
    assert tried > 50
