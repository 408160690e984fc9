"""The bot's queue is fair: one tenant flooding it cannot starve another (issue 13)."""

import json
import threading

from django.test import SimpleTestCase, TransactionTestCase, override_settings

from webchat.bot import bot_runner
from webchat.bot_queue import FairQueue, QueueBounds
from webchat.models import Activity, Conversation, Tenant
from webchat.tokens import issue_token

from .directline_support import BASE, bearer

WAIT = 10  # generous: the machine is shared

gate = threading.Event()
started = threading.Event()
answered = []


def gated_bot(activity):
    """Answers once the test opens ``gate``, recording the order of the answers."""
    started.set()
    if not gate.wait(WAIT):
        raise TimeoutError("the test never opened the gate")
    answered.append(activity["id"])
    return {"type": "message", "text": "re " + (activity.get("text") or "")}


def drain(queue):
    order = []
    while (job := queue.take()) is not None:
        order.append(job[2])
        queue.done(job[0], job[1])
    return order


class FairQueueTests(SimpleTestCase):
    bounds = QueueBounds(total=100, per_tenant=50, per_conversation=50)

    def test_tenants_take_turns(self):
        queue = FairQueue()
        for n in range(5):
            queue.push("a", "a1", f"a{n}", self.bounds)
        queue.push("b", "b1", "b0", self.bounds)
        queue.push("b", "b1", "b1", self.bounds)
        self.assertEqual(drain(queue), ["a0", "b0", "a1", "b1", "a2", "a3", "a4"])
        self.assertEqual(queue.pending, 0)

    def test_conversations_of_a_tenant_take_turns_and_keep_their_order(self):
        queue = FairQueue()
        for n in range(3):
            queue.push("a", "x", f"x{n}", self.bounds)
        for n in range(2):
            queue.push("a", "y", f"y{n}", self.bounds)
        self.assertEqual(drain(queue), ["x0", "y0", "x1", "y1", "x2"])

    def test_one_at_a_time_per_conversation(self):
        queue = FairQueue()
        queue.push("a", "x", "x0", self.bounds)
        queue.push("a", "x", "x1", self.bounds)
        first = queue.take()
        self.assertEqual(first, ("a", "x", "x0"))
        self.assertIsNone(queue.take())  # x1 waits for x0
        queue.done("a", "x")
        self.assertEqual(queue.take(), ("a", "x", "x1"))

    def test_bounds_per_conversation_and_per_tenant(self):
        queue, bounds = FairQueue(), QueueBounds(total=100, per_tenant=3, per_conversation=2)
        self.assertIsNone(queue.push("a", "x", 1, bounds).refused)
        self.assertIsNone(queue.push("a", "x", 2, bounds).refused)
        self.assertEqual(queue.push("a", "x", 3, bounds).refused, "per_conversation")
        self.assertIsNone(queue.push("a", "y", 4, bounds).refused)
        self.assertEqual(queue.push("a", "z", 5, bounds).refused, "per_tenant")
        self.assertIsNone(queue.push("b", "w", 6, bounds).refused)

    def test_when_full_a_quieter_tenant_takes_the_place_of_the_busiest_newest(self):
        queue, bounds = FairQueue(), QueueBounds(total=4, per_tenant=10, per_conversation=10)
        for n in range(4):
            queue.push("a", "x", f"a{n}", bounds)
        self.assertEqual(queue.push("a", "x", "a4", bounds).refused, "total")
        pushed = queue.push("b", "y", "b0", bounds)
        self.assertEqual((pushed.refused, pushed.evicted), (None, "a3"))
        self.assertEqual(queue.pending, 4)
        self.assertEqual(drain(queue), ["a0", "b0", "a1", "a2"])

    def test_eviction_stops_at_an_even_share(self):
        queue, bounds = FairQueue(), QueueBounds(total=4, per_tenant=10, per_conversation=10)
        for n in range(2):
            queue.push("a", "x", f"a{n}", bounds)
            queue.push("b", "y", f"b{n}", bounds)
        self.assertEqual(queue.push("b", "y", "b2", bounds).refused, "total")

    def test_evicting_a_conversation_s_last_item_leaves_no_trace(self):
        queue, bounds = FairQueue(), QueueBounds(total=3, per_tenant=10, per_conversation=10)
        queue.push("a", "x", "x0", bounds)
        queue.push("a", "y", "y0", bounds)
        queue.push("a", "z", "z0", bounds)
        self.assertEqual(queue.push("b", "w", "w0", bounds).evicted, "x0")
        self.assertEqual(drain(queue), ["y0", "w0", "z0"])

    def test_drop_waiting_keeps_what_runs(self):
        queue = FairQueue()
        for n in range(3):
            queue.push("a", "x", n, self.bounds)
        queue.push("b", "y", "b", self.bounds)
        queue.take()
        self.assertEqual(queue.drop_waiting(), 3)
        self.assertEqual(queue.pending, 1)
        self.assertIsNone(queue.take())
        queue.done("a", "x")
        self.assertEqual(queue.pending, 0)


@override_settings(
    WEBCHAT_BOT="tests.test_bot_fairness.gated_bot",
    WEBCHAT_BOT_WORKERS=1,
    WEBCHAT_BOT_MAX_PENDING=20,
    WEBCHAT_BOT_MAX_PENDING_PER_CONVERSATION=100,
)
class FloodTests(TransactionTestCase):
    """Real posts and real commits; the bot answers on its own thread."""

    def setUp(self):
        gate.clear()
        started.clear()
        answered.clear()
        self.addCleanup(lambda: bot_runner.wait_idle(WAIT))
        self.addCleanup(gate.set)

    def conversation(self, name):
        tenant = Tenant.objects.create(name=name)
        conversation = Conversation.objects.create(tenant=tenant)
        return conversation, issue_token(tenant.pk, conversation.id, f"user-{name}")

    def post(self, conversation, token, text):
        response = self.client.post(
            f"{BASE}/conversations/{conversation.id}/activities",
            json.dumps({"type": "message", "text": text}),
            content_type="application/json",
            **bearer(token),
        )
        self.assertEqual(response.status_code, 200, response.content)
        return response.json()["id"]

    def test_a_flooding_tenant_does_not_starve_another(self):
        flooder, flood_token = self.conversation("flooder")
        quiet, quiet_token = self.conversation("quiet")
        with self.assertLogs("webchat.bot", "WARNING") as logs:
            flood_ids = [self.post(flooder, flood_token, f"f{n}") for n in range(30)]
            self.assertTrue(started.wait(WAIT))
            quiet_id = self.post(quiet, quiet_token, "hello")
        # The flood filled the whole queue (20): its own excess was dropped...
        self.assertEqual(sum("total bound" in line for line in logs.output), 10)
        # ...and the other tenant's message took the place of the flood's newest.
        self.assertIn(f"not answering {flood_ids[19]}", "\n".join(logs.output))
        gate.set()
        self.assertTrue(bot_runner.wait_idle(WAIT))
        # Answered second: right after the flood's message that was running.
        self.assertEqual(answered[:2], [flood_ids[0], quiet_id])
        self.assertEqual(answered[2:], flood_ids[1:19])
        reply = Activity.objects.get(conversation=quiet, sequence=2).data
        self.assertEqual((reply["text"], reply["replyToId"]), ("re hello", quiet_id))

    @override_settings(WEBCHAT_BOT_MAX_PENDING_PER_TENANT=5)
    def test_a_tenant_s_bound_leaves_the_rest_to_others(self):
        flooder, flood_token = self.conversation("flooder")
        quiet, quiet_token = self.conversation("quiet")
        with self.assertLogs("webchat.bot", "WARNING") as logs:
            flood_ids = [self.post(flooder, flood_token, f"f{n}") for n in range(12)]
            self.assertTrue(started.wait(WAIT))
            quiet_ids = [self.post(quiet, quiet_token, f"q{n}") for n in range(5)]
        self.assertEqual(sum("per_tenant bound" in line for line in logs.output), 7)
        gate.set()
        self.assertTrue(bot_runner.wait_idle(WAIT))
        # Turns alternate between the tenants; the flood's answered messages are its first 5.
        alternating = [i for pair in zip(flood_ids[:5], quiet_ids, strict=True) for i in pair]
        self.assertEqual(answered, alternating)
        self.assertEqual(
            [a["replyToId"] for a in
             Activity.objects.filter(conversation=quiet, data__from__role="bot")
             .order_by("sequence").values_list("data", flat=True)],
            quiet_ids,
        )  # fmt: skip
