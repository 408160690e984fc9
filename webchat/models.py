"""Tenants, their Direct Line secrets, conversations and the activities in them.

A conversation's ``watermark`` is the sequence number of its newest activity; activities are
numbered 1, 2, 3... without gaps. The database is the truth: notifications only say "re-read".
"""

import hashlib
import secrets

from django.db import models, transaction
from django.db.models import F
from django.utils.text import slugify


def hash_secret(secret: str) -> str:
    """Secrets are 256-bit random tokens, so a plain SHA-256 is enough to store them."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_conversation_id() -> str:
    """An unguessable, URL-safe id (no ``|``: activity ids are ``<conversationId>|0000001``)."""
    return secrets.token_urlsafe(18)


class Tenant(models.Model):
    name = models.CharField(max_length=200, unique=True)
    #: ``slugify(name)``, kept by ``save()``: the seed's URL layout (``webchat.tenant_paths``)
    #: takes it in place of the name. Not unique: two names may share one.
    slug = models.SlugField(max_length=200, default="", editable=False)
    created = models.DateTimeField(auto_now_add=True)
    #: Bytes of uploaded files stored for the tenant (``webchat.quota``).
    upload_bytes = models.BigIntegerField(default=0)
    #: Every token carries the epoch of its session's start; bumping it revokes them all
    #: (webchat/tokens.py). Bumped when a secret is revoked.
    token_epoch = models.PositiveIntegerField(default=0)

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        self.slug = slugify(self.name)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "name" in update_fields:
            kwargs["update_fields"] = {*update_fields, "slug"}
        super().save(*args, **kwargs)

    def revoke_tokens(self) -> None:
        """End every session of this tenant: its tokens are refused from now on."""
        Tenant.objects.filter(pk=self.pk).update(token_epoch=F("token_epoch") + 1)
        self.refresh_from_db(fields=["token_epoch"])

    def add_secret(self) -> str:
        """Create a new Direct Line secret for this tenant; return it (it is stored hashed)."""
        secret = secrets.token_urlsafe(32)
        self.secrets.create(secret_hash=hash_secret(secret))
        return secret


class TenantSecret(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="secrets")
    secret_hash = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(auto_now_add=True)
    revoked = models.BooleanField(default=False)

    def __str__(self):
        return f"{self.tenant} secret {self.secret_hash[:8]}…"

    def save(self, *args, **kwargs):
        """Revoking a secret (here, in the admin, or with ``create_tenant --revoke-old``)
        also revokes its tenant's tokens: tokens do not record which secret minted them."""
        with transaction.atomic():
            newly_revoked = (
                self.revoked
                and self.pk is not None
                and TenantSecret.objects.filter(pk=self.pk, revoked=False).exists()
            )
            super().save(*args, **kwargs)
            if newly_revoked:
                self.tenant.revoke_tokens()

    @classmethod
    def tenant_for(cls, secret: str):
        """Return the tenant that owns ``secret`` (not revoked), or None."""
        row = (
            cls.objects.select_related("tenant")
            .filter(secret_hash=hash_secret(secret), revoked=False)
            .first()
        )
        return row.tenant if row else None


class Conversation(models.Model):
    id = models.CharField(primary_key=True, max_length=64, default=new_conversation_id)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="conversations")
    watermark = models.BigIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    #: Unix time a client last used the conversation (written at most every tenth of the
    #: token TTL): while it is under a TTL old, an expired token of it is still accepted.
    last_seen = models.BigIntegerField(default=0)

    def __str__(self):
        return self.id


class Activity(models.Model):
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="activities"
    )
    sequence = models.BigIntegerField()
    data = models.JSONField()
    # Bytes of ``data`` as sent (``webchat.pages.encode``), so a page is cut by bytes without
    # reading the rows it leaves out. None for rows written before the column: measured then.
    size = models.BigIntegerField(null=True, blank=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["conversation", "sequence"]
        verbose_name_plural = "activities"
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "sequence"], name="unique_activity_sequence"
            )
        ]
        # Covers the size scan of a page (webchat.queries.ACTIVITIES_PAGE): the rows a page
        # leaves out are never read, and their data (before size in the row) never walked.
        indexes = [
            models.Index(fields=["conversation", "sequence", "size"], name="activity_page_sizes")
        ]

    def __str__(self):
        return self.data.get("id", f"{self.conversation_id}|{self.sequence:07d}")


class ConversationStart(models.Model):
    """Who started which conversation, for the dedup window (``webchat.conversation_dedup``).

    ``POST /conversations`` with the tenant secret and the same ``user.id`` within the window
    gets the same conversation, on every replica: the row is the shared claim. ``user_key``
    is a hash of the user id, so any id the API accepts fits the column.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    user_key = models.CharField(max_length=64)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    created = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user_key"], name="unique_conversation_start")
        ]

    def __str__(self):
        return f"{self.tenant_id}/{self.user_key[:8]}… -> {self.conversation_id}"
