"""notifier.tasks.cancel_and_wait: the owner-side stop of every background task."""

import asyncio
import contextlib
import time
import uuid

from django.test import SimpleTestCase

from notifier.probe import Probe
from notifier.tasks import cancel_and_wait, raise_if_cancelled
from notifier.transport import RedisTransport
from tests.support.redis_server import SHARED_URL, requires_shared_redis


async def swallows_first_cancellation(log):
    # What asyncio.wait_for does on Python 3.11 when the cancellation meets completion
    # (redis-py's send with a socket timeout): the CancelledError never reaches the caller.
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        log.append("swallowed")
    log.append("sleeping again")
    await asyncio.sleep(10)


class CancelAndWaitTests(SimpleTestCase):
    async def test_cancels_and_waits(self):
        task = asyncio.create_task(asyncio.sleep(10))
        await asyncio.sleep(0)
        await cancel_and_wait(task)
        self.assertTrue(task.cancelled())

    async def test_a_task_that_swallowed_its_cancellation_is_cancelled_again(self):
        log = []
        task = asyncio.create_task(swallows_first_cancellation(log))
        await asyncio.sleep(0)
        await asyncio.wait_for(cancel_and_wait(task, recancel_after=0.01), 2)
        self.assertTrue(task.cancelled())
        self.assertEqual(log, ["swallowed", "sleeping again"])

    async def test_the_task_s_own_error_is_raised(self):
        async def fails_on_cancel():
            try:
                await asyncio.sleep(10)
            finally:
                raise ValueError("cleanup failed")

        task = asyncio.create_task(fails_on_cancel())
        await asyncio.sleep(0)
        with self.assertRaisesMessage(ValueError, "cleanup failed"):
            await cancel_and_wait(task)

    async def test_the_caller_s_cancellation_propagates(self):
        async def slow_to_stop():
            try:
                await asyncio.sleep(10)
            finally:
                await asyncio.shield(asyncio.sleep(0.2))

        task = asyncio.create_task(slow_to_stop())
        await asyncio.sleep(0)
        owner = asyncio.create_task(cancel_and_wait(task))
        await asyncio.sleep(0.05)
        owner.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await owner
        await asyncio.wait({task}, timeout=2)
        self.assertTrue(task.cancelled())

    async def test_none_and_finished_tasks(self):
        await cancel_and_wait(None)
        task = asyncio.create_task(asyncio.sleep(0))
        await task
        await cancel_and_wait(task)


class RaiseIfCancelledTests(SimpleTestCase):
    async def test_raises_a_cancellation_that_was_swallowed(self):
        reached = []

        async def swallows_then_checks():
            with contextlib.suppress(asyncio.CancelledError):  # as wait_for does on 3.11
                await asyncio.sleep(10)
            raise_if_cancelled()
            reached.append("after the check")

        task = asyncio.create_task(swallows_then_checks())
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.wait({task}, timeout=2)
        self.assertTrue(task.cancelled())
        self.assertEqual(reached, [])

    async def test_a_timeout_s_own_cancellation_stays_a_timeout(self):
        async def times_out():
            async with asyncio.timeout(0.01):
                with contextlib.suppress(asyncio.CancelledError):  # swallowed, as above
                    await asyncio.sleep(10)
                raise_if_cancelled()

        with self.assertRaises(TimeoutError):
            await times_out()
        raise_if_cancelled()  # nothing left counted against this task

    async def test_nothing_happens_without_a_cancellation(self):
        raise_if_cancelled()


@requires_shared_redis
class StoppingTasksThatTalkToRedisTests(SimpleTestCase):
    """The probe cancelled at every step of its connect and PUBLISH (real Redis): each stop
    ends at once, without needing the second cancellation."""

    async def test_a_probe_stopped_at_any_point_of_its_publish_stops_at_once(self):
        slowest = 0.0
        for steps in range(60):
            probe = Probe(RedisTransport(SHARED_URL), f"test:tasks:{uuid.uuid4()}")
            task = probe.start()
            for _ in range(steps):  # let it run that many loop iterations first
                await asyncio.sleep(0)
            started = time.monotonic()
            await cancel_and_wait(task, recancel_after=10)
            slowest = max(slowest, time.monotonic() - started)
            self.assertTrue(task.done())
        self.assertLess(slowest, 5.0)  # recancel_after=10: a lost cancellation would hang
