from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("webchat", "0001_initial"),
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
