"""The signals' receivers: publish a change once its transaction commits.

Publishing after the commit means no replica re-reads the conversation before the new rows
are visible to it. Connected in :meth:`notifier.apps.NotifierConfig.ready`.
"""

from django.db import transaction

from .events import NotifyEvent


def publish_after_commit(sender, *, tenant_id, conversation_id, new_watermark, using=None,
                         **kwargs):
    """Receiver of :data:`notifier.signals.watermark_bumped`: schedule the publish for when
    the transaction on ``using`` (the default database if ``None``) commits, or now when no
    transaction is open. A failing publish is logged by Django, never raised (robust)."""
    event = NotifyEvent(tenant_id, conversation_id, new_watermark)

    def publish_watermark():
        # Imported here: the runtime is only built (from settings) when something publishes.
        from .runtime import get_notifier

        get_notifier().publish(event)

    transaction.on_commit(publish_watermark, using=using, robust=True)


def publish_change_after_commit(sender, *, namespace, key, version, using=None, **kwargs):
    """Receiver of :data:`notifier.signals.changed`: as :func:`publish_after_commit`."""
    publish_after_commit(sender, tenant_id=namespace, conversation_id=key,
                         new_watermark=version, using=using)
