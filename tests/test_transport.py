"""The transport seam: every connection the Redis notifier makes, for publishing, listening,
probing and the startup check, comes from its transport's ``client()`` (real Redis)."""

import asyncio

from django.test import SimpleTestCase

from notifier.backends.redis import RedisNotifier
from notifier.events import NotifyEvent, group_name
from notifier.layers import LocalChannelLayer
from notifier.transport import RedisTransport
from tests.support.redis_server import SHARED_URL, requires_shared_redis, unique_channel
from tests.test_notifier_redis import TIMEOUT, eventually


class RecordingTransport(RedisTransport):
    """A transport that remembers the name of every client it made."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.names = []

    def client(self, name=None, **options):
        self.names.append(name)
        return super().client(name, **options)


@requires_shared_redis
class TransportSeamTests(SimpleTestCase):
    async def test_every_connection_comes_from_the_transport(self):
        channel = unique_channel()
        transport = RecordingTransport(SHARED_URL)
        layer = LocalChannelLayer()
        notifier = RedisNotifier("redis://ignored:1/0", channel=channel, channel_layer=layer,
                                 transport=transport)
        publisher = RedisNotifier(SHARED_URL, channel=channel, channel_layer=LocalChannelLayer())
        await notifier.astart()
        await publisher.astart()
        listener = notifier.listener()
        listener.start()
        try:
            await listener.wait_connected(TIMEOUT)
            member = await layer.new_channel()
            event = NotifyEvent("t", "c", 1)
            await layer.group_add(group_name(event.tenant_id, event.conversation_id), member)
            await publisher.apublish(event)  # crosses Redis into the listener's subscription
            message = await asyncio.wait_for(layer.receive(member), TIMEOUT)
            self.assertEqual(message["watermark"], 1)
            await notifier.apublish(event)
            await eventually(lambda: notifier.stats()["mirrored"] == 1)
            await eventually(lambda: listener.probe.counters["returned"] > 0)
            await asyncio.to_thread(notifier.verify, TIMEOUT)
        finally:
            await listener.aclose()
            await notifier.aclose()
            await publisher.aclose()
        self.assertEqual(set(transport.names), {"webchat-notifier-listener",
                                                "webchat-notifier-publish",
                                                "webchat-notifier-probe",
                                                "webchat-notifier-startup"})
        self.assertEqual(notifier.url, "redis://ignored:1/0")  # shown, never connected to
