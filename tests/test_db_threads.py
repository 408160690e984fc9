"""DatabaseThreads: where database work runs, and which connections it keeps.

Two situations, as in production and in tests:

* no sync caller waits (daphne's loop, here a loop of a plain thread): work goes to the
  workers, which keep their connections between calls;
* sync code waits through ``async_to_sync`` (Django's test client, async test methods,
  management commands): work runs on that thread, inside its transaction.
"""

import asyncio
import contextlib
import threading

from asgiref.sync import async_to_sync
from django.db import connection, connections
from django.test import SimpleTestCase, TestCase, override_settings

from notifier.compat import asgiref as asgiref_internals
from notifier.compat import django as django_internals
from tests.support.fast_paths import fast_path
from webchat import db_threads
from webchat.db_threads import DatabaseThreads, sync_caller_waiting
from webchat.models import Tenant


def run_loop_in_thread(coroutine_function, *args):
    """Run ``coroutine_function(*args)`` on a new loop in a new thread (nothing waits for it
    through async_to_sync, as under daphne) and return its result."""
    box = {}

    def main():
        try:
            box["result"] = asyncio.run(coroutine_function(*args))
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=main)
    thread.start()
    thread.join(30)
    if "error" in box:
        raise box["error"]
    return box["result"]


_calls = threading.local()


def where():
    """Called on a worker: its thread, the identity of its open connection, and how many
    calls this thread has run."""
    connection.ensure_connection()
    _calls.count = getattr(_calls, "count", 0) + 1
    return threading.get_ident(), id(connection.connection), _calls.count


@fast_path(asgiref_internals, django_internals)
class WorkerTests(SimpleTestCase):
    databases = {"default"}

    def setUp(self):
        self.threads = DatabaseThreads("test-db", 2)
        self.addCleanup(self.threads.close)

    def test_no_sync_caller_under_a_plain_loop(self):
        async def check():
            return sync_caller_waiting()

        self.assertFalse(run_loop_in_thread(check))

    def test_calls_reuse_a_worker_and_its_connection(self):
        async def calls():
            return [await self.threads.run(where) for _ in range(5)]

        seen = run_loop_in_thread(calls)
        self.assertEqual({s[:2] for s in seen}, {seen[0][:2]})  # one thread, one connection
        self.assertEqual([s[2] for s in seen], [1, 2, 3, 4, 5])
        self.assertNotEqual(seen[0][0], threading.get_ident())

    def test_concurrent_calls_spread_over_the_workers(self):
        barrier = threading.Barrier(2, timeout=10)

        def meet():
            barrier.wait()  # both calls must be running at once to pass
            return threading.get_ident()

        async def calls():
            return await asyncio.gather(self.threads.run(meet), self.threads.run(meet))

        first, second = run_loop_in_thread(calls)
        self.assertNotEqual(first, second)
        self.assertEqual(self.threads.in_flight(), 0)

    def test_exceptions_reach_the_caller(self):
        def fail():
            raise ValueError("no such thing")

        async def call():
            await self.threads.run(fail)

        with self.assertRaisesMessage(ValueError, "no such thing"):
            run_loop_in_thread(call)

    def test_close_closes_the_workers_connections_and_later_calls_start_anew(self):
        async def call():
            return await self.threads.run(where)

        run_loop_in_thread(call)
        self.threads.close()
        self.assertEqual(run_loop_in_thread(call)[2], 1)  # a new worker thread

    def test_a_size_of_zero_is_refused_when_the_workers_start(self):
        threads = DatabaseThreads("empty", lambda: 0)

        async def call():
            await threads.run(where)

        with self.assertRaisesMessage(ValueError, "needs at least one thread, not 0"):
            run_loop_in_thread(call)


@fast_path(asgiref_internals, django_internals)
class BrokenConnectionTests(SimpleTestCase):
    """A worker's connection that failed, or sat idle and no longer answers, is replaced."""

    databases = {"default"}

    def setUp(self):
        self.threads = DatabaseThreads("test-db", 1)
        self.addCleanup(self.threads.close)
        # Failure injection: SQLite connections are always "usable" to Django, and Django
        # never really closes the in-memory test database; record the closes instead.
        wrapper = type(connections["default"])
        self.closed = []
        self.usable = True
        for name, replacement in (
            ("is_usable", lambda wrapper_self: self.usable),
            ("close", lambda wrapper_self: self._record_close(wrapper_self)),
        ):
            self.addCleanup(setattr, wrapper, name, getattr(wrapper, name))
            setattr(wrapper, name, replacement)

    def _record_close(self, wrapper):
        self.closed.append(threading.get_ident())
        wrapper.connection = None  # the next use connects again, as after a real close
        wrapper.errors_occurred = False

    def test_a_failed_unusable_connection_is_closed_after_the_call(self):
        def fail():
            connection.ensure_connection()
            connection.errors_occurred = True
            raise RuntimeError("the database went away")

        async def calls():
            first = await self.threads.run(where)
            with contextlib.suppress(RuntimeError):
                await self.threads.run(fail)
            return first, await self.threads.run(where)

        self.usable = False
        first, second = run_loop_in_thread(calls)
        self.assertEqual(first[0], second[0])  # same worker thread
        self.assertEqual(self.closed, [first[0]])  # closed once, after the failed call

    def test_an_idle_connection_is_checked_before_it_is_used(self):
        async def calls():
            first = await self.threads.run(where)
            await asyncio.sleep(0.15)
            return first, await self.threads.run(where)

        self.usable = False
        original = db_threads.HEALTH_CHECK_AFTER
        db_threads.HEALTH_CHECK_AFTER = 0.1
        self.addCleanup(setattr, db_threads, "HEALTH_CHECK_AFTER", original)
        first, _ = run_loop_in_thread(calls)
        self.assertEqual(self.closed, [first[0]])  # checked once, before the second call

    def test_a_usable_failed_connection_is_kept(self):
        def fail():
            connection.ensure_connection()
            connection.errors_occurred = True
            raise RuntimeError("a query failed, the connection is fine")

        async def calls():
            with contextlib.suppress(RuntimeError):
                await self.threads.run(fail)
            return await self.threads.run(where)

        run_loop_in_thread(calls)
        self.assertEqual(self.closed, [])

    def test_a_busy_connection_is_not_checked(self):
        checks = []
        self.usable = False  # would be closed if it were checked
        wrapper = type(connections["default"])
        wrapper.is_usable = lambda wrapper_self: checks.append(1) or False

        async def calls():
            return [await self.threads.run(where) for _ in range(20)]

        seen = run_loop_in_thread(calls)
        self.assertEqual({s[:2] for s in seen}, {seen[0][:2]})
        self.assertEqual((checks, self.closed), ([], []))


class SyncCallerTests(TestCase):
    """Under a waiting sync caller the work sees the caller's transaction."""

    def test_work_runs_on_the_waiting_thread_inside_its_transaction(self):
        threads = DatabaseThreads("test-db", 2)
        self.addCleanup(threads.close)
        Tenant.objects.create(name="only-in-this-transaction")

        async def call():
            self.assertTrue(sync_caller_waiting())
            return await threads.run(
                lambda: (threading.get_ident(), list(Tenant.objects.values_list("name", flat=True)))
            )

        thread, names = async_to_sync(call)()
        self.assertEqual(thread, threading.get_ident())
        self.assertEqual(names, ["only-in-this-transaction"])
        self.assertEqual(threads.in_flight(), 0)


@override_settings(DEPENDENCY_FAST_PATHS=False)
class PublicPathTests(SimpleTestCase):
    """With the fast paths off (notifier.compat.asgiref), every call goes where
    ``sync_to_async(thread_sensitive=True)`` sends it, never to the workers."""

    databases = {"default"}

    def test_a_plain_loop_runs_the_work_on_asgirefs_thread_not_a_worker(self):
        threads = DatabaseThreads("test-db", 2)
        self.addCleanup(threads.close)

        async def calls():
            return [await threads.run(lambda: threading.current_thread().name)
                    for _ in range(3)]

        names = run_loop_in_thread(calls)
        self.assertEqual(len(names), 3)
        self.assertFalse([name for name in names if name.startswith("test-db")], names)
        self.assertIsNone(threads._workers)  # never started


@override_settings(DEPENDENCY_FAST_PATHS=False)
class PublicPathSyncCallerTests(SyncCallerTests):
    pass
