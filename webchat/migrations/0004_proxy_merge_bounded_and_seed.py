# A merge of two leaves that met in h-proxy's branch (main's 0003 and h-bounded's 0002):
# no operations. Drop it when the migrations are re-chained.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("webchat", "0002_bounded_activity_size"),
        ("webchat", "0003_seed_tenant_slug_and_dedup"),
    ]

    operations = []
