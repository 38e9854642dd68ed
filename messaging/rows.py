"""Prebuilt SQL for the hot paths: statements built once per model and database, and rows
turned into model instances without the ORM's query compiler.

On a send, a handshake or a hello the ORM spent more CPU compiling its SQL than PostgreSQL
spent running it (issue 15's profiles: a reconnect storm's handshakes were half compiler).
These helpers keep the model as the one description of a table (its fields, columns and
conversions) and skip only the compiling.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence, TypeVar

from django.conf import settings
from django.db import connection, models
from django.db.backends.utils import CursorWrapper

M = TypeVar("M", bound=models.Model)

_INSERT_SQL: dict[tuple[type[models.Model], str], tuple[str, list[models.Field]]] = {}


def insert_row(instance: models.Model) -> None:
    """Store a new ``instance`` with one prebuilt INSERT and set its pk, as ``save()`` would.

    The hot path's insert (a send stores a message on every call): ``objects.create`` compiles
    its SQL anew each time, which cost more CPU than everything else in a send's transaction.
    Values are prepared exactly as ``save()`` prepares them (each field's ``pre_save``, so
    ``auto_now_add`` stamps the time, then ``get_db_prep_save``); no signals are sent (Parley
    connects none to these models)."""
    model = type(instance)
    key = (model, connection.vendor)
    built = _INSERT_SQL.get(key)
    if built is None:
        opts = model._meta
        fields = [f for f in opts.local_concrete_fields if f is not opts.auto_field]
        quote = connection.ops.quote_name
        sql = (f"INSERT INTO {quote(opts.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
               f"VALUES ({', '.join(['%s'] * len(fields))}) RETURNING {quote(opts.pk.column)}")
        built = _INSERT_SQL[key] = (sql, fields)
    sql, fields = built
    values = [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    assert row is not None
    instance.pk = row[0]
    instance._state.adding = False
    instance._state.db = connection.alias


def prepared_cursor() -> CursorWrapper:
    """A cursor whose statements PostgreSQL prepares on their connection: parsed and planned
    once per connection, then run with the values bound apart (PARLEY_DB_PREPARED_STATEMENTS).

    Only for a hot path's fixed statements that look rows up by a unique key (a send's two):
    from a statement's sixth run PostgreSQL may reuse one generic plan whatever the values,
    which is only safe where every value gets the same plan. Django's own queries keep their
    client-side binding and are never prepared (psycopg prepares only what asks: settings).
    Elsewhere (SQLite, or the setting off) a plain cursor. Either way Django's wrapper, which
    converts errors and counts queries in tests.

    The steps are connection.cursor()'s (a failed health check reconnects, as for any first
    query of a request) but for the cursor's class. Django's per-cursor timezone loader is
    left out: these statements return no timestamps."""
    if not settings.PARLEY_DB_PREPARED_STATEMENTS:
        return connection.cursor()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        # The private hook is the one connection.cursor() goes through (thread check, the
        # tests' query log).
        return connection._prepare_cursor(_preparing_cursor_class()(connection.connection))  # type: ignore[attr-defined]


@functools.cache
def _preparing_cursor_class() -> type:
    # Imported here: the module imports psycopg, which only PostgreSQL needs.
    from django.db.backends.postgresql.base import ServerBindingCursor  # type: ignore[attr-defined]

    class PreparingCursor(ServerBindingCursor):
        def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: bool | None = None) -> Any:
            return super().execute(query, params, prepare=True, binary=binary)

    return PreparingCursor


def select_list(model: type[models.Model], alias: str) -> str:
    """The columns of ``model``'s concrete fields, in field order, as ``alias.column, ...``:
    the select list :func:`from_row` reads back."""
    quote = connection.ops.quote_name
    return ", ".join(f"{alias}.{quote(field.column)}" for field in model._meta.concrete_fields)


def field_count(model: type[models.Model]) -> int:
    return len(model._meta.concrete_fields)


def from_row(model: type[M], values: Sequence[Any]) -> M:
    """An instance of ``model`` from the values of :func:`select_list`, as a queryset builds
    it (``Model.from_db``: loaded, not adding). PostgreSQL's driver returns most columns as
    their field's Python value (UUID, aware datetime) already; the fields with a converter of
    their own (JSON, which Django has the driver hand over as text) get it, as the ORM would
    apply it. Callers use this on PostgreSQL and the ORM elsewhere."""
    names, converted = _loading(model)
    values = list(values)
    for index, field in converted:
        values[index] = field.from_db_value(values[index], field.cached_col, connection)
    return model.from_db(connection.alias, names, values)


@functools.cache
def _loading(model: type[models.Model]) -> tuple[list[str], list[tuple[int, Any]]]:
    """The attribute names :func:`from_row` loads, and the fields whose values it converts."""
    fields = model._meta.concrete_fields
    return ([field.attname for field in fields],
            [(index, field) for index, field in enumerate(fields) if hasattr(field, "from_db_value")])
