import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def create_the_row(apps, schema_editor):
    apps.get_model("ops", "DegradedModeOverride").objects.get_or_create(pk=1)


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='DegradedModeOverride',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('mode', models.CharField(choices=[('auto', 'Automatic (follow the measured signals)'), ('normal', 'Force normal: shed nothing'), ('shed_ephemeral', 'Force level 1: shed typing and presence'), ('defer_receipts', 'Force level 2: also defer receipt broadcasts')], default='auto', max_length=20)),
                ('note', models.CharField(blank=True, default='', help_text='Why, for the next person on call.', max_length=200)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('updated_by', models.ForeignKey(blank=True, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'degraded mode',
                'verbose_name_plural': 'degraded mode',
                'constraints': [models.CheckConstraint(condition=models.Q(('pk', 1)), name='degraded_override_singleton')],
            },
        ),
        migrations.RunPython(create_the_row, migrations.RunPython.noop),
    ]
