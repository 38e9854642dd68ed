"""Ack cursors are written in one fixed order (receipts.models.DeviceCursorManager.raise_cursors),
so two batches touching the same rows lock them in the same order and cannot deadlock."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from receipts.models import _key_order

devices = st.uuids() | st.uuids().map(str)  # sockets hand over UUIDs; other callers may pass text


@given(st.lists(st.tuples(st.integers(1, 5), devices), max_size=60))
def test_cursors_are_ordered_by_conversation_then_device_uuid_text_whatever_its_type(keys):
    items = [((conversation, device), seq) for seq, (conversation, device) in enumerate(keys)]
    by_text = sorted(items, key=lambda item: (item[0][0], str(item[0][1])))
    assert [key for key, _ in sorted(items, key=_key_order)] == [key for key, _ in by_text]
