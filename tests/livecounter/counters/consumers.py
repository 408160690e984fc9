import os

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from notifier import BackplaneConsumerMixin

from .models import Counter


def read_value(name):
    return Counter.objects.filter(name=name).values_list("value", flat=True).first() or 0


class CounterConsumer(BackplaneConsumerMixin, AsyncJsonWebsocketConsumer):
    """Sends ``{"name", "value", "pid"}`` now and after every change of the counter."""

    async def connect(self):
        self.name = self.scope["url_route"]["kwargs"]["name"]
        self.sent = -1
        # Subscribe BEFORE reading: a change committed after the read is announced.
        await self.subscribe("counter", self.name)
        await self.accept()
        await self.send_value()

    async def topic_changed(self, namespace, key, version):
        # version is None after a resync: re-read in any case.
        if version is None or version > self.sent:
            await self.send_value()

    async def send_value(self):
        value = await database_sync_to_async(read_value)(self.name)
        if value > self.sent:
            self.sent = value
            # pid: which server process holds this socket (the tests spread sockets by it).
            await self.send_json({"name": self.name, "value": value, "pid": os.getpid()})
