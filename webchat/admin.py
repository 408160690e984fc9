"""Tenants, their secrets, conversations and activities in the Django admin.

Secrets are stored hashed, so the admin never shows one except once, right after the
"Create a new secret" action made it. Transcripts are append-only: conversations and
activities are read-only here (the transcript writer is the only thing that numbers them).
"""

from django.contrib import admin, messages

from .models import Activity, Conversation, Tenant, TenantSecret


class TenantSecretInline(admin.TabularInline):
    model = TenantSecret
    fields = ("fingerprint", "created", "revoked")
    readonly_fields = ("fingerprint", "created")
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="secret hash (prefix)")
    def fingerprint(self, obj):
        return obj.secret_hash[:12] + "…"


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("name", "created", "secret_count", "conversation_count")
    search_fields = ("name",)
    inlines = [TenantSecretInline]
    actions = ["create_secret"]

    @admin.display(description="active secrets")
    def secret_count(self, obj):
        return obj.secrets.filter(revoked=False).count()

    @admin.display(description="conversations")
    def conversation_count(self, obj):
        return obj.conversations.count()

    @admin.action(description="Create a new secret (shown once)")
    def create_secret(self, request, queryset):
        for tenant in queryset:
            secret = tenant.add_secret()
            self.message_user(
                request,
                f"New secret for {tenant.name} (copy it now, it is not shown again): {secret}",
                messages.WARNING,
            )


@admin.register(TenantSecret)
class TenantSecretAdmin(admin.ModelAdmin):
    list_display = ("tenant", "fingerprint", "created", "revoked")
    list_filter = ("revoked", "tenant")
    list_editable = ("revoked",)
    fields = ("tenant", "fingerprint", "created", "revoked")
    readonly_fields = ("tenant", "fingerprint", "created")

    def has_add_permission(self, request):
        # A secret is only worth anything when its plain text is shown once: use the
        # tenant's "Create a new secret" action or `manage.py create_tenant`.
        return False

    @admin.display(description="secret hash (prefix)")
    def fingerprint(self, obj):
        return obj.secret_hash[:12] + "…"


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    list_display = ("id", "tenant", "watermark", "created")
    list_filter = ("tenant",)
    search_fields = ("id",)
    list_select_related = ("tenant",)


@admin.register(Activity)
class ActivityAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "conversation", "sequence", "kind", "sender_role", "created")
    search_fields = ("conversation__id",)
    list_select_related = ("conversation",)

    @admin.display(description="type")
    def kind(self, obj):
        return obj.data.get("type")

    @admin.display(description="from.role")
    def sender_role(self, obj):
        sender = obj.data.get("from")
        return sender.get("role") if isinstance(sender, dict) else None
