"""Structured logs: every line of a request carries its request id, every line of a socket its connection id."""
from __future__ import annotations

import io
import json
import logging

import pytest
import structlog
from django.http import HttpResponse
from django.test import Client, RequestFactory

from ops.logs import formatter
from ops.middleware import request_id_middleware


@pytest.fixture
def log_lines():
    """JSON lines written through Parley's formatter by the loggers a test names."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(fmt="json"))
    attached = []

    def capture(name: str):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        attached.append(logger)
        return lambda: [json.loads(line) for line in stream.getvalue().splitlines()]

    yield capture
    for logger in attached:
        logger.removeHandler(handler)


def test_every_response_carries_a_request_id_and_keeps_a_well_formed_one_from_the_proxy(db):
    generated = Client().get("/healthz")["X-Request-ID"]
    assert len(generated) == 32
    assert Client().get("/healthz", HTTP_X_REQUEST_ID="lb-1234.a")["X-Request-ID"] == "lb-1234.a"
    assert Client().get("/healthz", HTTP_X_REQUEST_ID="bad id; drop table")["X-Request-ID"] != "bad id; drop table"


def test_a_line_logged_while_serving_a_request_carries_the_request_id(log_lines):
    lines = log_lines("parley.test")

    def view(request):
        logging.getLogger("parley.test").warning("working on %s", request.path)
        return HttpResponse("ok")

    response = request_id_middleware(view)(RequestFactory().get("/x", HTTP_X_REQUEST_ID="req-42"))
    structlog.contextvars.clear_contextvars()  # this thread serves other tests next
    [line] = lines()
    assert line["event"] == "working on /x" and line["request_id"] == "req-42" == response["X-Request-ID"]
    assert line["level"] == "warning" and line["logger"] == "parley.test" and "timestamp" in line


@pytest.mark.django_db(transaction=True)
async def test_lines_logged_for_a_socket_carry_its_connection_user_and_device(trio, open_socket, log_lines):
    lines = log_lines("gateway.runtime")
    group, [(alice, alice_phone), *_] = trio
    socket = await open_socket(alice, alice_phone)
    await socket.close()
    [line] = [line for line in lines() if line["event"].startswith("socket closed")]
    assert line["user_id"] == alice.pk and line["device_id"] == str(alice_phone.pk)
    assert len(line["connection_id"]) == 12
