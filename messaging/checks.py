"""``check_*``: untrusted input becomes a value the use cases can trust, or :class:`Invalid`.

Every edge (REST serializers, WebSocket frame parsing) may check shapes first so that it can
report every bad field at once; the use-case functions check again with these, so no edge
can forget. No type coercion (CONTRACT "Validation"): ``123`` is not a body, ``true`` is not
a seq.
"""
from __future__ import annotations

from typing import Any, TypeGuard

from django.conf import settings

from .errors import Invalid
from .models import User

# Seqs, cursors and ids beyond this are not ours; refusing them keeps huge integers away
# from the database (a BIGINT holds 2**63 - 1).
MAX_SEQ = 2**62


def is_json_int(value: Any) -> TypeGuard[int]:
    """A JSON integer, not a float or a boolean (``True`` is an ``int`` in Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_text(value: Any, field: str, *, max_length: int) -> str:
    """A string the database can store and every client can read back, or :class:`Invalid`.

    No NUL (PostgreSQL's text refuses it) and no lone surrogate (not Unicode: it has no UTF-8
    form), whichever edge it came from: JSON allows both (``"\\u0000"``, ``"\\ud800"``).
    """
    if not isinstance(value, str):
        raise Invalid(f"{field} must be a string", fields={field: ["Must be a string."]})
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid(f"{field} is not valid text", fields={field: ["Must be valid Unicode text."]}) from None
    if "\x00" in value:
        raise Invalid(f"{field} is not valid text", fields={field: ["Null characters are not allowed."]})
    if len(value) > max_length:
        raise Invalid(f"{field} is too long", fields={field: [f"At most {max_length} characters."]})
    return value


def check_body(body: Any, *, allow_empty: bool = False) -> str:
    """A message body; empty (or only whitespace) only where ``allow_empty`` (a message that
    carries attachments may have no text)."""
    body = check_text(body, "body", max_length=settings.PARLEY_MAX_BODY_LENGTH)
    if allow_empty and not body.strip():
        return ""
    if not body.strip():
        raise Invalid("body may not be empty", fields={"body": ["May not be empty."]})
    return body


def check_client_msg_id(client_msg_id: Any) -> str:
    if not isinstance(client_msg_id, str) or not client_msg_id:
        raise Invalid("client_msg_id is required", fields={"client_msg_id": ["A 1-64 character string is required."]})
    return check_text(client_msg_id, "client_msg_id", max_length=settings.PARLEY_MAX_CLIENT_MSG_ID_LENGTH)


def check_seq(seq: Any, field: str = "seq") -> int:
    if not is_json_int(seq) or not 0 <= seq <= MAX_SEQ:
        raise Invalid(f"{field} must be a non-negative integer", fields={field: ["A non-negative integer is required."]})
    return seq


def check_title(title: Any, *, required: bool) -> str:
    title = check_text("" if title is None else title, "title", max_length=settings.PARLEY_MAX_TITLE_LENGTH).strip()
    if required and not title:
        raise Invalid("title is required", fields={"title": ["This field is required."]})
    return title


def check_user_ids(user_ids: Any, *, field: str = "members") -> list[int]:
    """Distinct ids of active users, sorted; at most ``PARLEY_MAX_MEMBERS_PER_REQUEST``."""
    if not isinstance(user_ids, list) or not all(is_json_int(u) for u in user_ids):
        raise Invalid(f"{field} must be a list of user ids", fields={field: ["A list of user ids is required."]})
    limit = settings.PARLEY_MAX_MEMBERS_PER_REQUEST
    if len(user_ids) > limit:
        raise Invalid(f"at most {limit} users per request", fields={field: [f"At most {limit} users per request."]})
    unique = sorted(set(user_ids))
    found = set(User.objects.filter(pk__in=unique, is_active=True).values_list("pk", flat=True))
    missing = [u for u in unique if u not in found]
    if missing:
        raise Invalid("unknown users", fields={field: [f"Unknown user ids: {missing}"]})
    return unique
