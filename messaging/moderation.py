"""Moderation use cases: members flag messages; moderators (``messaging.moderate_message``) review them.

Same prefixes as messaging.actions: ``check_*`` validates untrusted input, ``do_*`` changes state.
"""
from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from .actions import access_message
from .errors import Conflict, Invalid
from .models import Flag, User

_NOTE_MAX_LENGTH = Flag._meta.get_field("note").max_length


def check_flag_reason(reason: Any) -> str:
    if not isinstance(reason, str) or reason not in Flag.Reason.values:
        choices = ", ".join(Flag.Reason.values)
        raise Invalid("reason is not one of the choices", fields={"reason": [f"One of: {choices}."]})
    return reason


def check_flag_note(note: Any) -> str:
    if note is None:
        return ""
    if not isinstance(note, str):
        raise Invalid("note must be a string", fields={"note": ["Must be a string."]})
    if len(note) > _NOTE_MAX_LENGTH:
        raise Invalid("note is too long", fields={"note": [f"At most {_NOTE_MAX_LENGTH} characters."]})
    return note.strip()


def do_flag_message(*, reporter: User, message_id: Any, reason: Any, note: Any = None) -> Flag:
    """Flag a message of a conversation the reporter belongs to (else NotFound).

    One open flag per reporter and message: the partial unique constraint decides, so two
    concurrent flags cannot both get in; the loser gets :class:`Conflict`.
    """
    reason = check_flag_reason(reason)
    note = check_flag_note(note)
    message, _membership = access_message(reporter, message_id)
    try:
        with transaction.atomic():
            return Flag.objects.create(message=message, reporter=reporter, reason=reason, note=note)
    except IntegrityError:
        raise Conflict("you already have an open flag on this message") from None
