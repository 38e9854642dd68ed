"""The client's stream rules (static/parley/socket.js), fed frames directly in the browser:
dedupe by seq, no cursor past a gap, replay pulls, acks (CONTRACT, "WebSocket")."""
from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

FEED = """async (frames) => {
  const { ParleySocket, ACK_EVERY_MS } = await import("/static/parley/socket.js");
  const shown = [];
  const written = [];
  const socket = new ParleySocket({
    url: () => "", onStatus: () => {}, onRefused: async () => true,
    onFrame: (frame) => { if (frame.type === "messages") shown.push(...frame.messages.map((m) => m.seq)); },
  });
  socket.write = (frame) => { written.push(frame); return true; };
  socket.follow(7, 2);
  for (const frame of frames) socket.receive(frame);
  const before = [...written];  // what went out at once, before the ack timer
  await new Promise((resolve) => setTimeout(resolve, 3 * ACK_EVERY_MS));
  return { shown, written, before, cursors: Object.fromEntries(socket.cursors) };
}"""


def message(seq: int, conversation: int = 7) -> dict:
    return {"conversation": conversation, "seq": seq, "id": seq, "body": f"m{seq}", "sender": {"id": 1}}


@pytest.fixture
def feed(new_context, base_url):
    page = new_context().new_page()
    page.goto("/login")
    return lambda *frames: page.evaluate(FEED, list(frames))


def test_messages_at_or_below_the_cursor_are_dropped_and_the_rest_acked_once_on_the_timer(feed):
    """Acks are cumulative: what arrives within ACK_EVERY_MS is answered by one ack, the latest cursor."""
    result = feed({"type": "messages", "conversation": 7, "messages": [message(s) for s in (1, 2, 3, 4)],
                   "has_more": False},
                  {"type": "message", "message": message(4)},
                  {"type": "message", "message": message(5)})
    assert result["shown"] == [3, 4, 5]
    assert result["cursors"] == {"7": 5}
    assert result["before"] == []  # not one ack per frame
    assert result["written"] == [{"type": "ack", "conversation": 7, "seq": 5}]


def test_a_live_batch_is_shown_in_order_and_acked_like_single_frames(feed):
    result = feed({"type": "message", "message": message(3)},
                  {"type": "messages", "conversation": 7, "messages": [message(s) for s in (4, 5, 6)],
                   "has_more": False},
                  {"type": "message", "message": message(7)})
    assert result["shown"] == [3, 4, 5, 6, 7]
    assert result["written"] == [{"type": "ack", "conversation": 7, "seq": 7}]


def test_a_gap_keeps_the_cursor_and_pulls_the_missing_page_once(feed):
    result = feed({"type": "message", "message": message(5)}, {"type": "message", "message": message(6)})
    assert result["shown"] == []
    assert result["cursors"] == {"7": 2}
    assert result["written"] == [{"type": "replay", "conversation": 7, "after_seq": 2}]


def test_a_page_with_more_behind_it_pulls_the_next_one_after_the_new_cursor(feed):
    result = feed({"type": "messages", "conversation": 9, "messages": [message(s, 9) for s in (41, 42)],
                   "has_more": True},
                  {"type": "ready", "conversations": {"7": 2, "9": 50, "11": 8}})
    assert result["shown"] == [41, 42]
    # The pull goes out at once; the ack at `ready` (which acks whatever was not acked yet).
    assert result["written"] == [{"type": "replay", "conversation": 9, "after_seq": 42},
                                 {"type": "ack", "conversation": 9, "seq": 42}]
    # Conversation 9 started where the server resumed it; 11 was not behind, so it is caught up.
    assert result["cursors"] == {"7": 2, "9": 42, "11": 8}
