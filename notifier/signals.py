from django.dispatch import Signal

#: Sent by whoever commits a new watermark for a conversation, inside the transaction that
#: writes it, with ``tenant_id``, ``conversation_id``, ``new_watermark`` (and optionally
#: ``using``, the database alias). The notifier's receiver publishes after that transaction
#: commits, so no replica re-reads before the row is visible.
watermark_bumped = Signal()
