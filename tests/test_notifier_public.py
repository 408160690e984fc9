"""The public contract of the notifier package: names, the consumer mixin, publishing, the
BACKPLANE setting and its first name, the bridge's checks, the testing helpers."""

import uuid

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.test import SimpleTestCase, TestCase, override_settings
from django.urls import path

import notifier
from notifier import BackplaneConsumerMixin, Change, apublish, group_name
from notifier.checks import bridge_process, check_settings
from notifier.conf import get_settings
from notifier.testing import capture_changes, memory_backplane

LOCAL = {"default": {"BACKEND": "notifier.layers.LocalChannelLayer"}}
REDIS_LAYER = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                           "CONFIG": {"hosts": ["redis://127.0.0.1:6379/0"]}}}
REDIS = {"BACKEND": "redis", "URL": "redis://127.0.0.1:6379/0"}


class RecordingConsumer(BackplaneConsumerMixin, AsyncJsonWebsocketConsumer):
    """Subscribes to the topics in the path (``a,b``) and sends back each hook call."""

    async def connect(self):
        for key in self.scope["url_route"]["kwargs"]["keys"].split(","):
            await self.subscribe("ns", key)
        await self.accept()

    async def topic_changed(self, namespace, key, version):
        await self.send_json([namespace, key, version])


application = URLRouter([path("t/<str:keys>", RecordingConsumer.as_asgi())])


class PublicNamesTests(SimpleTestCase):
    def test_every_public_name_resolves(self):
        for name in notifier.__all__:
            with self.subTest(name=name):
                self.assertIsNotNone(getattr(notifier, name))

    def test_webchat_names_are_the_same_objects(self):
        self.assertIs(notifier.NotifyEvent, notifier.Change)
        event = Change("t", "c", 3)
        self.assertEqual((event.namespace, event.key, event.version), ("t", "c", 3))
        self.assertEqual((event.tenant_id, event.conversation_id, event.new_watermark),
                         ("t", "c", 3))

    def test_unknown_name_is_an_attribute_error(self):
        with self.assertRaises(AttributeError):
            notifier.no_such_name  # noqa: B018

    def test_publish_refuses_what_the_wire_cannot_carry(self):
        for args, error in [((1, "k", 1), TypeError), (("n", None, 1), TypeError),
                            (("n", "k", "1"), TypeError), (("n", "k", True), TypeError),
                            (("n", "k", -1), ValueError), (("n", "k", 2**64), ValueError)]:
            with self.subTest(args=args), self.assertRaises(error):
                notifier.publish(*args)


@memory_backplane()
class ConsumerMixinTests(SimpleTestCase):
    async def connect(self, keys):
        socket = WebsocketCommunicator(application, f"/t/{keys}")
        connected, _ = await socket.connect()
        self.assertTrue(connected)
        return socket

    async def test_a_change_reaches_the_hook_of_its_topic_only(self):
        a, b = await self.connect("a"), await self.connect("b")
        await apublish("ns", "a", 4)
        self.assertEqual(await a.receive_json_from(), ["ns", "a", 4])
        self.assertTrue(await b.receive_nothing())
        await a.disconnect()
        await b.disconnect()

    async def test_a_resync_calls_the_hook_with_none_and_the_socket_lives(self):
        socket = await self.connect("a")
        layer = get_channel_layer()
        await layer.group_send(group_name("ns", "a"), {"type": "webchat.resync",
                                                       "reason": "reconnect"})
        self.assertEqual(await socket.receive_json_from(), ["ns", "a", None])
        await apublish("ns", "a", 1)  # still subscribed, still open
        self.assertEqual(await socket.receive_json_from(), ["ns", "a", 1])
        await socket.disconnect()

    async def test_the_groups_are_left_on_disconnect(self):
        socket = await self.connect("a,b")
        layer = get_channel_layer()
        self.assertEqual(len(layer.groups), 2)
        await socket.disconnect()
        self.assertEqual(layer.groups, {})

    async def test_a_consumer_without_the_hook_says_so(self):
        class Bare(BackplaneConsumerMixin, AsyncJsonWebsocketConsumer):
            pass

        with self.assertRaisesRegex(NotImplementedError, "Bare must define topic_changed"):
            await Bare().topic_changed("ns", "a", 1)


@memory_backplane()
class CaptureTests(TestCase):
    def test_the_signal_publishes_on_commit(self):
        with capture_changes() as changes, self.captureOnCommitCallbacks(execute=True):
            notifier.changed.send(sender=None, namespace="ns", key="k", version=2)
            self.assertEqual(changes, [])
        self.assertEqual(changes, [Change("ns", "k", 2)])

    def test_webchat_signal_and_direct_publish_are_captured_too(self):
        with capture_changes() as changes, self.captureOnCommitCallbacks(execute=True):
            notifier.watermark_bumped.send(sender=None, tenant_id="t", conversation_id="c",
                                           new_watermark=1)
            notifier.publish_on_commit("ns", "k", 5)
        notifier.publish("ns", "k", 6)  # outside the block: not captured
        self.assertEqual(changes.wait(2), [Change("t", "c", 1), Change("ns", "k", 5)])


class SettingNameTests(SimpleTestCase):
    def test_backplane_is_read(self):
        with override_settings(BACKPLANE={"CHANNEL": "mine"}, WEBCHAT_NOTIFIER=None):
            self.assertEqual(get_settings().channel, "mine")
            self.assertEqual(get_settings().name, "BACKPLANE")

    def test_webchat_notifier_is_read_without_backplane(self):
        with override_settings(BACKPLANE=None, WEBCHAT_NOTIFIER={"CHANNEL": "old"}):
            self.assertEqual(get_settings().channel, "old")
            self.assertEqual(get_settings().name, "WEBCHAT_NOTIFIER")

    def test_both_set_warns_and_errors_name_the_one_in_use(self):
        with override_settings(BACKPLANE={"CAPACITY": 0}, WEBCHAT_NOTIFIER={"CAPACITY": 5},
                               CHANNEL_LAYERS=LOCAL):
            messages = check_settings()
        self.assertEqual([m.id for m in messages], ["notifier.E005", "notifier.W003"])
        self.assertIn("BACKPLANE['CAPACITY']", messages[0].msg)


class BridgeChecksTests(SimpleTestCase):
    def ids(self, layers, *, bridge):
        with override_settings(BACKPLANE=REDIS, WEBCHAT_NOTIFIER=None, CHANNEL_LAYERS=layers):
            if bridge:
                with bridge_process():
                    return [m.id for m in check_settings()]
            return [m.id for m in check_settings()]

    def test_w001_only_where_double_delivery_happens(self):
        self.assertEqual(self.ids(REDIS_LAYER, bridge=False), ["notifier.W001"])
        self.assertEqual(self.ids(REDIS_LAYER, bridge=True), [])

    def test_w004_for_a_bridge_into_a_process_local_layer(self):
        self.assertEqual(self.ids(LOCAL, bridge=True), ["notifier.W004"])
        self.assertEqual(self.ids(LOCAL, bridge=False), [])

    def test_the_bridge_command_runs_its_checks_as_the_bridge(self):
        channel = f"test:{uuid.uuid4()}"
        with override_settings(BACKPLANE={**REDIS, "CHANNEL": channel},
                               CHANNEL_LAYERS=REDIS_LAYER):
            from io import StringIO

            out, err = StringIO(), StringIO()
            call_command("run_backplane_listener", "--check", stdout=out, stderr=err)
        self.assertIn("ok: subscribed", out.getvalue())
        self.assertNotIn("W001", err.getvalue())
