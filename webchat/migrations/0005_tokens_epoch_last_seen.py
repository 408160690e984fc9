from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        # Named 0002 as the brief asks; chained after h-bounded's 0002 so that the merged
        # branch has one leaf (the lead re-chains at merge time).
        ("webchat", "0004_bounded_activity_size"),
    ]

    operations = [
        migrations.AddField(
            model_name="tenant",
            name="token_epoch",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="conversation",
            name="last_seen",
            field=models.BigIntegerField(default=0),
        ),
    ]
