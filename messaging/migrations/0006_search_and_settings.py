from django.db import migrations, models

# Full-text search (messaging.search; docs/architecture.md, "Search"), on PostgreSQL only:
# a tsvector column the database keeps in step with the body (GENERATED ... STORED, so no
# code path can forget it, and a blanked body of a deleted or removed message indexes
# nothing), and a GIN index over it. The searcher's conversations are matched by the
# conversation_id index beside it (the planner ANDs the two bitmaps, or walks a large
# conversation newest first for a common word). The column is not on the model, so no
# ordinary query selects it. The text search configuration is fixed here
# (messaging.search.SEARCH_CONFIG must match it); changing it means a migration that rebuilds
# the column. Other databases search with icontains.
SEARCH_SQL = [
    "ALTER TABLE messaging_message ADD COLUMN search_vector tsvector "
    "GENERATED ALWAYS AS (to_tsvector('english'::regconfig, body)) STORED",
    "CREATE INDEX message_search ON messaging_message USING gin (search_vector)",
]
UNDO_SEARCH_SQL = [
    "DROP INDEX IF EXISTS message_search",
    "ALTER TABLE messaging_message DROP COLUMN IF EXISTS search_vector",
]


def _on_postgresql(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for statement in statements:
                schema_editor.execute(statement)
    return run


class Migration(migrations.Migration):

    dependencies = [
        ('messaging', '0005_change_stream'),
    ]

    operations = [
        migrations.AddField(
            model_name='conversation',
            name='is_default',
            field=models.BooleanField(default=False, help_text='New users join this channel when they sign up.'),
        ),
        migrations.AddField(
            model_name='conversation',
            name='topic',
            field=models.CharField(blank=True, default='', max_length=1000),
        ),
        migrations.AddField(
            model_name='membership',
            name='muted_until',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='membership',
            name='notify',
            field=models.CharField(choices=[('all', 'All messages'), ('mentions', 'Mentions of me'), ('none', 'Nothing')], default='all', max_length=16),
        ),
        migrations.RunPython(_on_postgresql(SEARCH_SQL), _on_postgresql(UNDO_SEARCH_SQL)),
    ]
