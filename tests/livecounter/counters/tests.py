from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import TestCase

from notifier import Change, apublish
from notifier.testing import (
    apublish_as_peer,
    capture_changes,
    memory_backplane,
    redis_backplane,
    running_backplane,
)

from .models import Counter


def application():
    from livecounter.asgi import application

    return application


@memory_backplane()
class IncrementTests(TestCase):
    def test_each_increment_publishes_the_new_value_once_committed(self):
        with capture_changes() as changes, self.captureOnCommitCallbacks(execute=True):
            self.client.post("/counters/a/increment")
            self.client.post("/counters/a/increment")
        self.assertEqual(changes, [Change("counter", "a", 1), Change("counter", "a", 2)])

    def test_nothing_is_published_before_the_commit(self):
        with capture_changes() as changes, self.captureOnCommitCallbacks(execute=False):
            self.client.post("/counters/a/increment")
        self.assertEqual(changes, [])


@memory_backplane()
class ConsumerTests(TestCase):
    async def test_socket_gets_the_value_then_each_change(self):
        socket = WebsocketCommunicator(application(), "/ws/counters/b")
        self.assertTrue((await socket.connect())[0])
        self.assertEqual((await socket.receive_json_from())["value"], 0)
        await database_sync_to_async(Counter.objects.create)(name="b", value=5)
        await apublish("counter", "b", 5)
        self.assertEqual((await socket.receive_json_from())["value"], 5)
        await apublish("counter", "b", 5)  # nothing new: nothing sent
        self.assertTrue(await socket.receive_nothing())
        await socket.disconnect()


@redis_backplane()
class ConsumerOnRedisTests(TestCase):
    async def test_socket_gets_a_change_published_by_another_process(self):
        async with running_backplane():
            socket = WebsocketCommunicator(application(), "/ws/counters/c")
            self.assertTrue((await socket.connect())[0])
            self.assertEqual((await socket.receive_json_from())["value"], 0)
            await database_sync_to_async(Counter.objects.create)(name="c", value=3)
            await apublish_as_peer("counter", "c", 3)
            self.assertEqual((await socket.receive_json_from(timeout=5))["value"], 3)
            await socket.disconnect()
