import re

from channels.layers import InMemoryChannelLayer
from django.test import SimpleTestCase
from hypothesis import assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

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


# Any text (unicode, "|", spaces), plus lone surrogates, which st.text() leaves out by default.
any_id = st.text(max_size=40) | st.text(
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF) | st.sampled_from("|: .-_"),
    max_size=8,
)
long_id = st.text(min_size=1000, max_size=1100)
ids = any_id | long_id
GROUP_RE = re.compile(r"^[a-zA-Z0-9_.-]{1,99}$")


class GroupNamePropertyTests(SimpleTestCase):
    @hypothesis_settings(max_examples=300, deadline=None)
    @given(tenant=ids, conversation=ids)
    def test_always_a_valid_channels_group_name(self, tenant, conversation):
        name = group_name(tenant, conversation)
        self.assertRegex(name, GROUP_RE)
        self.assertLess(len(name), 100)
        # Channels' own validator is the final judge.
        self.assertTrue(InMemoryChannelLayer().require_valid_group_name(name))

    @hypothesis_settings(max_examples=300, deadline=None)
    @given(first=st.tuples(ids, ids), second=st.tuples(ids, ids))
    def test_distinct_pairs_get_distinct_groups(self, first, second):
        assume(first != second)
        self.assertNotEqual(group_name(*first), group_name(*second))

    @hypothesis_settings(max_examples=300, deadline=None)
    @given(tenant=any_id, conversation=any_id, cut=st.integers(min_value=0, max_value=80))
    def test_moving_text_across_the_boundary_changes_the_group(self, tenant, conversation, cut):
        # The adversarial case for a concatenation: the same characters, split elsewhere.
        joined = tenant + conversation
        cut = min(cut, len(joined))
        other = (joined[:cut], joined[cut:])
        assume(other != (tenant, conversation))
        self.assertNotEqual(group_name(tenant, conversation), group_name(*other))

    @hypothesis_settings(max_examples=100, deadline=None)
    @given(pairs=st.sets(st.tuples(any_id, any_id), min_size=2, max_size=50))
    def test_no_collisions_within_a_batch(self, pairs):
        self.assertEqual(len({group_name(*pair) for pair in pairs}), len(pairs))

    def test_surrogates_and_their_pair_differ(self):
        # A lone-surrogate pair in a str is not the astral character it would encode in UTF-16.
        self.assertNotEqual(group_name("\ud83d\ude00", "c"), group_name("\U0001f600", "c"))
