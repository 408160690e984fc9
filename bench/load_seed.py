"""Seed the load harness's shared database: tenants, secrets, conversations and user tokens.

Run by ``bench/load.py`` as a subprocess with the replicas' environment (``DATABASE_URL``,
signing key), so the tokens it mints verify on the replicas::

    python bench/load_seed.py --tenants 4 --conversations 2000 --out seed.json

Conversations are spread evenly over the tenants, in blocks: conversation ``i`` belongs to
tenant ``i * tenants // conversations``. The output is ``{"secrets": [...], "conversations":
[[id, tenant index, token], ...]}``.
"""

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchat.settings")

import django  # noqa: E402

django.setup()

from django.db import transaction  # noqa: E402

from webchat.models import Conversation, Tenant  # noqa: E402
from webchat.tokens import issue_token  # noqa: E402


def seed(tenants: int, conversations: int, prefix: str) -> dict:
    with transaction.atomic():
        owners = [Tenant.objects.create(name=f"{prefix}-{i}") for i in range(tenants)]
        secrets = [tenant.add_secret() for tenant in owners]
        rows = [
            Conversation(tenant=owners[i * tenants // conversations]) for i in range(conversations)
        ]
        Conversation.objects.bulk_create(rows, batch_size=500)
    listed = []
    for i, row in enumerate(rows):
        index = i * tenants // conversations
        listed.append([row.id, index, issue_token(owners[index].pk, row.id, f"user-{i}")])
    return {"secrets": secrets, "conversations": listed}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenants", type=int, required=True, help="tenants to create")
    parser.add_argument("--conversations", type=int, required=True, help="conversations")
    parser.add_argument("--prefix", default="load", help="tenant name prefix (unique per run)")
    parser.add_argument("--out", required=True, help="write the JSON here")
    args = parser.parse_args()
    Path(args.out).write_text(json.dumps(seed(args.tenants, args.conversations, args.prefix)))


if __name__ == "__main__":
    main()
