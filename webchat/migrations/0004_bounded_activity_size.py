"""Activity.size: the bytes of each activity's JSON as sent, for pages cut by bytes.

Rows written before have None; ``webchat.queries`` measures those in SQL when it reads them.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("webchat", "0003_seed_tenant_slug_and_dedup")]

    operations = [
        migrations.AddField(
            model_name="activity",
            name="size",
            field=models.BigIntegerField(blank=True, editable=False, null=True),
        ),
        migrations.AddIndex(
            model_name="activity",
            index=models.Index(
                fields=["conversation", "sequence", "size"], name="activity_page_sizes"
            ),
        ),
    ]
