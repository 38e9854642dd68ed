"""Drop the message table's two single-column foreign-key indexes (conversation, sender).

The unique constraints (conversation, seq) and (sender, client_msg_id) lead with the same
columns, so their indexes serve every lookup and cascade by either one. The narrower ones
cost each insert their upkeep, and a plan made on an empty table chose the sender's, scanning
a sender's every message for one client_msg_id (issue 15).

Only the indexes go; Django's own AlterField would also drop and re-add both foreign keys,
which re-checks every stored message under a lock. On PostgreSQL the indexes are dropped
CONCURRENTLY (writes go on meanwhile), so this migration runs outside a transaction.
"""
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

INDEXES = ("messaging_message_conversation_id_3db4d3d1", "messaging_message_sender_id_7a7088e6")


def _concurrently(schema_editor) -> str:
    return " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""


def drop_indexes(apps, schema_editor):
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX{_concurrently(schema_editor)} IF EXISTS {schema_editor.quote_name(name)}")


def restore_indexes(apps, schema_editor):
    for name, column in zip(INDEXES, ("conversation_id", "sender_id")):
        schema_editor.execute(f"CREATE INDEX{_concurrently(schema_editor)} IF NOT EXISTS "
                              f"{schema_editor.quote_name(name)} ON messaging_message ({column})")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('messaging', '0007_attachments_and_search'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='message',
                    name='conversation',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                            related_name='messages', to='messaging.conversation'),
                ),
                migrations.AlterField(
                    model_name='message',
                    name='sender',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                            related_name='messages_sent', to=settings.AUTH_USER_MODEL),
                ),
            ],
            database_operations=[migrations.RunPython(drop_indexes, restore_indexes)],
        ),
    ]
