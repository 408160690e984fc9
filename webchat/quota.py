"""The per-tenant upload storage quota: a byte counter on the tenant, reserved atomically.

An upload reserves its bytes before its files are written, in one conditional UPDATE
(``upload_bytes + size <= quota``): two uploads at once cannot both take the last bytes,
whichever replica serves them. A failed upload gives its bytes back; retention
(``manage.py apply_retention``) gives back the bytes of the files it deletes.
``WEBCHAT_LIMITS["UPLOAD_QUOTA_BYTES"]`` None counts without refusing.
"""

from django.db.models import F, Value
from django.db.models.functions import Greatest

from .conf import settings
from .models import Tenant


def reserve(tenant_id, size: int) -> int | None:
    """Count ``size`` upload bytes for the tenant; return None, or the quota refusing them."""
    quota = settings.upload_quota_bytes
    tenants = Tenant.objects.filter(pk=tenant_id)
    if quota is not None:
        tenants = tenants.filter(upload_bytes__lte=quota - size)
    if tenants.update(upload_bytes=F("upload_bytes") + size):
        return None
    return quota


def release(tenant_id, size: int) -> None:
    """Give back ``size`` bytes (a failed upload, deleted files); never below zero."""
    if size:
        Tenant.objects.filter(pk=tenant_id).update(
            upload_bytes=Greatest(F("upload_bytes") - size, Value(0))
        )


def used(tenant_id) -> int:
    return Tenant.objects.filter(pk=tenant_id).values_list("upload_bytes", flat=True).first() or 0
