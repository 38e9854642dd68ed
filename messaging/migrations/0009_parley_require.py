"""A guard a single SQL statement can call to abort itself: ``parley_require(ok, message)``.

A plain send stores its message with one statement in autocommit (messaging.send._store):
the seq, the row and the sender's watermarks. When the sender's membership is gone by the
time the statement holds the conversation's lock, the statement must store nothing, and a
statement can only take back its own effects by failing. This function makes it fail, with
SQLSTATE ``PA001`` (``messaging.send.SENDER_GONE``), which the caller turns into a 404.

PostgreSQL only; elsewhere the send runs its steps in a transaction and rolls back instead.
"""
from django.db import migrations

SQLSTATE = "PA001"  # messaging.send.SENDER_GONE: written here too, as a migration must not change


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        "CREATE OR REPLACE FUNCTION parley_require(ok boolean, message text) RETURNS boolean "
        "LANGUAGE plpgsql VOLATILE AS $$ BEGIN "
        f"IF ok IS NOT TRUE THEN RAISE EXCEPTION USING ERRCODE = '{SQLSTATE}', MESSAGE = message; END IF; "
        "RETURN true; END $$")


def drop_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS parley_require(boolean, text)")


class Migration(migrations.Migration):

    dependencies = [
        ('messaging', '0008_message_indexes_from_constraints'),
    ]

    operations = [
        migrations.RunPython(create_function, drop_function),
    ]
