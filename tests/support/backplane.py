"""Two Redis notifiers as two replicas, in one test process: does a bump cross Redis?

::

    await assert_crosses(self, receiver_notifier, publisher_notifier)

Both are real :class:`~notifier.backends.redis.RedisNotifier` objects (their own instance ids,
senders and connections); the receiver's listener, with its probe, delivers into a
process-local channel layer.
"""

import asyncio
import uuid

from notifier.events import NotifyEvent, group_name
from notifier.layers import LocalChannelLayer

TIMEOUT = 10.0  # generous: the machine is shared


def notifier_pair(settings):
    """Two notifiers from one :class:`~notifier.conf.NotifierSettings`, each with its own
    instance id and process-local layer."""
    from notifier.backends.redis import RedisNotifier

    return [RedisNotifier.from_settings(settings, instance_id=uuid.uuid4(),
                                        channel_layer=LocalChannelLayer()) for _ in range(2)]


async def assert_crosses(test_case, receiver, publisher, *, watermark=1):
    """Start ``receiver``'s listener; ``publisher.apublish`` one bump; assert it arrives in a
    group of ``receiver``'s layer and that the listener's probe made a round trip."""
    layer = receiver._channel_layer
    await receiver.astart()
    await publisher.astart()
    listener = receiver.listener()
    listener.start()
    try:
        await listener.wait_connected(TIMEOUT)
        member = await layer.new_channel()
        event = NotifyEvent("tenant", f"conversation-{uuid.uuid4()}", watermark)
        await layer.group_add(group_name(event.tenant_id, event.conversation_id), member)
        await publisher.apublish(event)
        message = await asyncio.wait_for(layer.receive(member), TIMEOUT)
        test_case.assertEqual(message["watermark"], watermark)
        async with asyncio.timeout(TIMEOUT):
            while not listener.probe.healthy():
                await asyncio.sleep(0.02)
    finally:
        await listener.aclose()
        await receiver.aclose()
        await publisher.aclose()
