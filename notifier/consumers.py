"""The consumer side: subscribe a consumer to topics and get one hook for every change.

::

    class CounterConsumer(BackplaneConsumerMixin, AsyncJsonWebsocketConsumer):
        async def connect(self):
            await self.subscribe("counter", self.scope["url_route"]["kwargs"]["name"])
            await self.accept()

        async def topic_changed(self, namespace, key, version):
            ...  # re-read and send; version is None after a resync

The backplane sends two channel-layer messages to a topic's group, under webchat's names:
``webchat.watermark`` (a change, with its version) and ``webchat.resync`` (changes may have
been missed while Redis was away). The mixin handles both and calls :meth:`topic_changed`.
"""

from .events import group_name


class BackplaneConsumerMixin:
    """Mix into an async Channels consumer (``AsyncWebsocketConsumer``,
    ``AsyncJsonWebsocketConsumer``) before the consumer class.

    Topics joined with :meth:`subscribe` are left when the socket disconnects or the consumer
    ends, however it ends.
    """

    async def __call__(self, scope, receive, send):
        self._backplane_topics = {}
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.unsubscribe_all()

    async def subscribe(self, namespace, key):
        """Join the topic's group: from now on its changes reach :meth:`topic_changed`.

        Subscribe BEFORE reading the state you send first: a change committed after the read
        is then announced, and one committed before it is in the read.
        """
        group = group_name(namespace, key)
        await self.channel_layer.group_add(group, self.channel_name)
        self._backplane_topics[group] = (namespace, key)

    async def unsubscribe(self, namespace, key):
        """Leave the topic's group."""
        group = group_name(namespace, key)
        if self._backplane_topics.pop(group, None) is not None:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def unsubscribe_all(self):
        """Leave every topic (called when the consumer ends)."""
        topics = getattr(self, "_backplane_topics", None) or {}
        while topics:
            group, _ = topics.popitem()
            await self.channel_layer.group_discard(group, self.channel_name)

    @property
    def topics(self):
        """The ``(namespace, key)`` pairs this consumer is subscribed to."""
        return list(getattr(self, "_backplane_topics", {}).values())

    async def topic_changed(self, namespace, key, version):
        """Called once per change of a subscribed topic, in any process, and with ``version``
        None for each subscribed topic after a resync: re-read what you show of it.

        Versions arrive in publish order per publisher; compare with what you last sent if
        you must not go backwards. Override it.
        """
        raise NotImplementedError(f"{type(self).__name__} must define topic_changed()")

    async def webchat_watermark(self, message):
        """The ``webchat.watermark`` message: one change."""
        namespace, key = message.get("tenant_id"), message.get("conversation_id")
        if not (isinstance(namespace, str) and isinstance(key, str)):
            return
        if group_name(namespace, key) in getattr(self, "_backplane_topics", {}):
            await self.topic_changed(namespace, key, message.get("watermark"))

    async def webchat_resync(self, message):
        """The ``webchat.resync`` message: re-read every topic. It names no group, and a pass
        sends it to each group, so a consumer of n topics re-reads each n times per pass:
        cheap for a few topics, a reason to keep a consumer's topics few."""
        for namespace, key in self.topics:
            await self.topic_changed(namespace, key, None)
