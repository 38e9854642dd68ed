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

    me, other = make_moderator(), make_user()
    group = make_group(me, [other])
    message = send(other, group)
    flag = do_flag_message(reporter=me, message_id=message["id"], reason="spam")
    return me, {"conversation_id": group.pk, "message_id": message["id"], "user_id": other.pk,
                "flag_id": flag.pk, "device_id": str(make_device(me).pk)}


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
