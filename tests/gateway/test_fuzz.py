"""Hypothesis-generated frames against the WebSocket consumer: whatever a client sends, the
gateway logs no error, never crashes, and the connection still answers a ping.

Bounded for CI: ``PARLEY_FUZZ_EXAMPLES`` connections of up to 30 frames each.
"""
from __future__ import annotations

import json
import logging
import os

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

pytestmark = pytest.mark.django_db(transaction=True)

FUZZ_EXAMPLES = int(os.environ.get("PARLEY_FUZZ_EXAMPLES", "25"))
TYPES = ["hello", "send", "ack", "read", "replay", "typing", "ping"]

# Any code point, NUL and lone surrogates included (json.dumps writes those as \\ud800 escapes,
# as a hostile client would), and the digits str.isdigit() takes that int() refuses.
hostile_text = st.text(alphabet=st.characters(codec=None, categories=None), max_size=20) | st.sampled_from(
    ["\x00", "a\x00b", "\ud800", "x\udfffy", "\u00b2", "\u0661\u0662", "\u00bd", ""])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20)
    | hostile_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8) | hostile_text, inner, max_size=3),
    max_leaves=8,
)
nested_json = st.integers(1, 30_000).map(lambda depth: "[" * depth + "]" * depth)


def frames(conversation_id: int):
    """Frames close enough to the protocol to reach its handlers, and plain garbage."""
    ids = st.sampled_from([conversation_id, conversation_id + 10**6, 0, -1, 2**62, 2**63]) | json_values
    seqs = st.integers(-5, 2**63) | json_values
    fields = {
        "conversation": ids, "seq": seqs, "after_seq": seqs, "limit": seqs,
        "client_msg_id": st.text(max_size=70) | json_values, "body": st.text(max_size=300) | json_values,
        "cursors": st.dictionaries(st.sampled_from([str(conversation_id), "x", "-1", "99999999999", "\u00b2",
                                                    "\u0661", "0x1", "1e3", ""]) | hostile_text, seqs,
                                   max_size=3) | json_values,
    }
    kinds = st.one_of(st.sampled_from(TYPES), st.sampled_from(TYPES), st.text(max_size=10) | json_values)
    shaped = st.fixed_dictionaries({"type": kinds}, optional=fields).map(json.dumps)
    garbage = st.text(max_size=200) | json_values.map(json.dumps) | st.binary(max_size=50) | nested_json
    return st.lists(st.one_of(shaped, shaped, shaped, garbage), min_size=5, max_size=30)


@pytest.fixture
def member(make_user, make_device, make_group):
    user, other = make_user(), make_user()
    group = make_group(user, [other])
    return user, make_device(user), group


@hypothesis_settings(max_examples=FUZZ_EXAMPLES, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
async def test_no_frame_crashes_the_gateway_or_logs_an_error_and_the_socket_stays_usable(
        data, member, open_socket, caplog, settings):
    settings.PARLEY_WS_MAX_BAD_FRAMES = 10**6  # this client sends little else; it is not to be closed
    user, device, group = member
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        socket = await open_socket(user, device, hello=data.draw(st.booleans()))
        for frame in data.draw(frames(group.pk)):
            # As the ASGI server hands frames over (the test helper refuses empty ones).
            kind = "bytes" if isinstance(frame, bytes) else "text"
            await socket.communicator.send_input({"type": "websocket.receive", kind: frame})
        await socket.send({"type": "ping"})
        assert (await socket.recv_type("pong", timeout=10))["type"] == "pong"
        await socket.close()
    assert not [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
