"""Device use cases: a user registers client installations and removes them.

Every WebSocket connection belongs to a device; removing a device closes its sockets (4403).
"""
from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from . import fanout, rows
from .access import access_device
from .checks import check_text
from .errors import Conflict
from .events import CLOSE_FORBIDDEN
from .models import Device, User, char_limit


def _check_label(value: Any, field: str) -> str:
    if value is None:
        return ""
    return check_text(value, field, max_length=char_limit(Device, field)).strip()


def do_register_device(*, user: User, name: Any = None, platform: Any = None) -> Device:
    """A new device of the user, at most ``PARLEY_MAX_DEVICES_PER_USER`` of them (else Conflict)."""
    name, platform = _check_label(name, "name"), _check_label(platform, "platform")
    limit = settings.PARLEY_MAX_DEVICES_PER_USER
    with transaction.atomic():
        # Lock the user's row so that concurrent registrations count one after the other.
        User.objects.select_for_update().filter(pk=user.pk).exists()
        if Device.objects.filter(user=user).count() >= limit:
            raise Conflict(f"at most {limit} devices per user; remove one first")
        return Device.objects.create(user=user, name=name, platform=platform)


def do_remove_device(*, user: User, device_id: Any) -> None:
    """Remove one of the user's devices (another user's is NotFound) and close its open sockets."""
    device = access_device(user, device_id)
    device_pk = device.pk  # delete() clears it
    with transaction.atomic():
        device.delete()
        fanout.close_device_sockets(device_id=device_pk, code=CLOSE_FORBIDDEN)


def device_with_user(device_id: Any, user_id: int) -> Device | None:
    """The device ``device_id`` if it is ``user_id``'s, with its user loaded (one query).

    Every WebSocket handshake asks this, a reconnect storm a thousand times at once: on
    PostgreSQL the query is prebuilt (messaging.rows), the ORM's elsewhere.
    """
    if connection.vendor != "postgresql":
        return Device.objects.select_related("user").filter(pk=device_id, user_id=user_id).first()
    with connection.cursor() as cursor:
        cursor.execute(_device_with_user_sql(), [device_id, user_id])
        row = cursor.fetchone()
    if row is None:
        return None
    split = rows.field_count(Device)
    device = rows.from_row(Device, row[:split])
    Device.user.field.set_cached_value(device, rows.from_row(User, row[split:]))
    return device


@functools.cache
def _device_with_user_sql() -> str:
    quote = connection.ops.quote_name
    return (
        f"SELECT {rows.select_list(Device, 'd')}, {rows.select_list(User, 'u')} "
        f"FROM {quote(Device._meta.db_table)} d JOIN {quote(User._meta.db_table)} u ON u.id = d.user_id "
        f"WHERE d.id = %s AND d.user_id = %s")
