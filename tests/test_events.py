import re

from django.test import SimpleTestCase

from notifier.events import NotifyEvent, group_name, watermark_message


class GroupNameTests(SimpleTestCase):
    def test_valid_channels_group_name(self):
        name = group_name("tenant a|b", "会话|1" * 300)
        self.assertRegex(name, re.compile(r"^[a-zA-Z0-9_.-]{1,99}$"))

    def test_length_prefix_separates_ids(self):
        self.assertNotEqual(group_name("a|", "b"), group_name("a", "|b"))

    def test_message_shape(self):
        message = watermark_message(NotifyEvent("t", "c", 3))
        self.assertEqual(
            message,
            {"type": "webchat.watermark", "tenant_id": "t", "conversation_id": "c", "watermark": 3},
        )
