"""Database work of the hot paths, on threads that keep their connections.

Under ASGI, Django runs each request's sync code on a new thread of its own, and with
``CONN_MAX_AGE = 0`` (persistent connections cannot follow a request from thread to thread)
every request opens and closes a database connection. On the Direct Line API and the
stream that was most of a request's cost (docs/benchmarks.md): a thread start, a connect
(on SQLite, ~30 SQL function registrations) and a close, around a millisecond of database
work. Here a few long-lived threads each keep one connection and take the work instead:

    await api_threads.run(view_body, request)       # the Direct Line views
    await stream_threads.run(read, conversation_id)  # the stream's reads

A connection stays open across calls; one that failed and no longer answers is closed
after the call, so the next call opens a fresh one. A connection idle for
``HEALTH_CHECK_AFTER`` seconds is checked before it is used again (Django's
``is_usable()``: a ``SELECT 1`` on PostgreSQL, nothing on SQLite), so a database restart
during a quiet spell costs no request; under traffic no check runs. ``CONN_MAX_AGE`` does
not apply to these threads (Django's request signals never run on them).

When sync code waits further up the stack (``async_to_sync``: Django's test client, a
management command, a WSGI worker), the work runs on that thread instead, exactly where
``sync_to_async(thread_sensitive=True)`` would run it: that thread may hold the connection
and the transaction the work must see (a ``TestCase`` runs every test in one). Telling so
reads asgiref's internals (:mod:`notifier.compat.asgiref`): on an asgiref it was not
written for, or with ``DEPENDENCY_FAST_PATHS = False``, every call takes that public path.
"""

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.db import connections

from notifier.compat import asgiref as asgiref_internals
from notifier.compat import django as django_internals


def sync_caller_waiting() -> bool:
    """Whether sync code waits for this event loop through ``async_to_sync`` (see
    :func:`notifier.compat.asgiref.sync_caller_waiting`); always True on the public path,
    which sends every call where ``sync_to_async(thread_sensitive=True)`` would. The
    workers also need Django's connection internals (:func:`_close_broken_connections`)."""
    return (not (asgiref_internals.fast() and django_internals.fast())
            or asgiref_internals.sync_caller_waiting())


#: Seconds a worker's connection may sit unused before it is checked again.
HEALTH_CHECK_AFTER = 1.0

_worker = threading.local()  # last_used: monotonic time this worker's last call ended


def _close_broken_connections(*, idle):
    """Called on a worker around each call: close connections that failed (or, when
    ``idle``, that sat unused long enough to be checked) and no longer answer; keep the
    others (``close_old_connections`` honours ``CONN_MAX_AGE`` and would close every one
    of them with the default of 0)."""
    for connection in connections.all(initialized_only=True):
        if (
            connection.connection is not None
            and (idle or connection.errors_occurred)
            and not connection.in_atomic_block
            and not connection.is_usable()
        ):
            connection.close()


def _kept(function, args, kwargs):
    last_used = getattr(_worker, "last_used", None)
    if last_used is not None and time.monotonic() - last_used > HEALTH_CHECK_AFTER:
        _close_broken_connections(idle=True)
    try:
        return function(*args, **kwargs)
    finally:
        _close_broken_connections(idle=False)
        _worker.last_used = time.monotonic()


class DatabaseThreads:
    """``size`` worker threads (an int, or a callable read when the workers start), each
    keeping its own database connections.

    :meth:`run` hands a call to the worker with the fewest calls in flight (the lowest
    index on ties, so light traffic keeps one warm connection busy rather than many).
    Workers start on first use; :meth:`close` closes their connections and stops them. At
    process exit the interpreter stops the workers itself, and a thread's connections close
    with it.
    """

    def __init__(self, name: str, size):
        self.name = name
        self._size = size
        self._lock = threading.Lock()
        self._workers = None
        self._in_flight = []

    def __repr__(self):
        return f"<DatabaseThreads {self.name!r}>"

    def _start(self):
        """The workers and their in-flight counts, started on first use (lock held)."""
        if self._workers is None:
            size = self._size() if callable(self._size) else self._size
            if size < 1:
                raise ValueError(f"{self!r} needs at least one thread, not {size}.")
            self._in_flight = [0] * size
            self._workers = [
                ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-{i}") for i in range(size)
            ]
        return self._workers, self._in_flight

    async def run(self, function, /, *args, **kwargs):
        """Await ``function(*args, **kwargs)`` on a worker (or on the waiting sync caller's
        thread, see the module docstring). A cancelled caller stops waiting; a call that had
        started runs to its end (a write is committed or rolled back whole), one that had
        not is dropped."""
        if sync_caller_waiting():
            return await sync_to_async(function, thread_sensitive=True)(*args, **kwargs)
        with self._lock:
            workers, in_flight = self._start()
            index = min(range(len(workers)), key=in_flight.__getitem__)
            in_flight[index] += 1
        try:
            call = sync_to_async(_kept, thread_sensitive=False, executor=workers[index])
            return await call(function, args, kwargs)
        finally:
            with self._lock:
                in_flight[index] -= 1

    def close(self, timeout: float = 5.0):
        """Called at shutdown (and by tests): close every worker's connections, stop them.
        The next :meth:`run` starts new workers."""
        with self._lock:
            workers, self._workers = self._workers, None
            self._in_flight = []
        for worker in workers or ():
            # RuntimeError: the interpreter is shutting its executors down already.
            with contextlib.suppress(RuntimeError):
                worker.submit(connections.close_all).result(timeout)
            worker.shutdown(wait=True)

    def in_flight(self) -> int:
        """Calls handed to the workers and not finished yet (for tests and metrics)."""
        return sum(self._in_flight)

