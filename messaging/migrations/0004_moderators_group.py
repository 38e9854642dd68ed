"""The "Moderators" group, holding the permission ``messaging.moderate_message`` (CONTRACT, Moderation).

Permissions are normally created after all migrations (post_migrate), so this one is made
here if it does not exist yet, with the name the model's Meta gives it.
"""
from django.db import migrations

GROUP = "Moderators"
CODENAME = "moderate_message"


def create_group(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    content_type, _ = ContentType.objects.get_or_create(app_label="messaging", model="message")
    permission, _ = Permission.objects.get_or_create(
        content_type=content_type, codename=CODENAME,
        defaults={"name": "Can review flags and remove messages"},
    )
    group, _ = Group.objects.get_or_create(name=GROUP)
    group.permissions.add(permission)


def delete_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("messaging", "0003_moderation_suspension_slow_mode_audit"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, delete_group)]
