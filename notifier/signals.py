"""The backplane's signals: send one inside the transaction that makes a change."""

from django.dispatch import Signal

#: Sent by whoever commits a change of a topic, inside the transaction that writes it, with
#: ``namespace``, ``key``, ``version`` (and optionally ``using``, the database alias). The
#: backplane publishes after that transaction commits, so no server process re-reads before
#: the row is visible.
changed = Signal()

#: :data:`changed` under webchat's words: ``tenant_id``, ``conversation_id``,
#: ``new_watermark`` (and optionally ``using``). Same behaviour.
watermark_bumped = Signal()
