"""watermark_bumped -> publish after the transaction commits (on_commit, robust)."""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction
from django.test import TestCase

from notifier.events import NotifyEvent, group_name, watermark_message
from notifier.receivers import publish_after_commit
from notifier.signals import watermark_bumped


class WatermarkSignalTests(TestCase):
    def setUp(self):
        self.layer = get_channel_layer()
        self.channel = async_to_sync(self.layer.new_channel)()
        async_to_sync(self.layer.group_add)(group_name("tenant-a", "conv-1"), self.channel)
        self.addCleanup(async_to_sync(self.layer.group_discard),
                        group_name("tenant-a", "conv-1"), self.channel)

    def bump(self, watermark, **kwargs):
        watermark_bumped.send(sender=None, tenant_id="tenant-a", conversation_id="conv-1",
                              new_watermark=watermark, **kwargs)

    def receive(self):
        return async_to_sync(self.layer.receive)(self.channel)

    def test_receiver_is_connected_once(self):
        receivers = [r for r in watermark_bumped._live_receivers(None)[0]
                     if r is publish_after_commit]
        self.assertEqual(len(receivers), 1)

    def test_publishes_after_the_transaction_commits(self):
        with self.captureOnCommitCallbacks(execute=False) as callbacks, transaction.atomic():
            self.bump(5)
            # Registered robustly, on the default database, but not run yet.
            self.assertTrue(connection.run_on_commit[-1][2])
        self.assertEqual(len(callbacks), 1)
        callbacks[0]()
        self.assertEqual(self.receive(), watermark_message(NotifyEvent("tenant-a", "conv-1", 5)))

    def test_execute_on_commit_delivers_to_the_group(self):
        with self.captureOnCommitCallbacks(execute=True, using="default") as callbacks:
            self.bump(6, using="default")
        self.assertEqual(len(callbacks), 1)
        self.assertEqual(self.receive()["watermark"], 6)

    def test_a_rolled_back_transaction_publishes_nothing(self):
        with self.captureOnCommitCallbacks(execute=True) as callbacks:
            try:
                with transaction.atomic():
                    self.bump(7)
                    raise RuntimeError("rollback")
            except RuntimeError:
                pass
        self.assertEqual(callbacks, [])
