"""Per-conversation versions (PROTOCOL §2.1, ADR 0045): conversations.last_version, messages.version,
and a partial index over changed messages. Existing messages take their seq as version."""

from django.db import migrations, models


def backfill(apps, schema_editor) -> None:
    schema_editor.execute("UPDATE messages SET version = seq")
    schema_editor.execute("UPDATE conversations SET last_version = last_seq")


class Migration(migrations.Migration):
    dependencies = [
        ("hub", "0003_send_path_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="conversation",
            name="last_version",
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="message",
            name="version",
            field=models.PositiveBigIntegerField(default=0),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(
                condition=models.Q(("edited_at__isnull", False), ("deleted_at__isnull", False), _connector="OR"),
                fields=["conversation", "version"],
                name="messages_changed_idx",
            ),
        ),
    ]
