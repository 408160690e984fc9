from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("webchat", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="tenant",
            name="upload_bytes",
            field=models.BigIntegerField(default=0),
        ),
    ]
