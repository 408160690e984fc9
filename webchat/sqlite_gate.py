"""Queueing SQLite writers before SQLite's own lock (``transcript.append_activity`` uses it)."""

import contextlib
import fcntl
import threading

from django.db import DEFAULT_DB_ALIAS, connections


class SQLiteWriteGate:
    """Queues SQLite writers, in this process and across processes, before SQLite's lock.

    SQLite has one write lock per file, and a writer that finds it taken sleeps in SQLite's
    busy handler (1, 2, 5, 10 ... 100 ms) instead of waking when it is released: with a few
    concurrent writers on two replicas, most of a write's time went to those sleeps and the
    lock sat idle (bench/load.py: ~70 writes/s at p99 1.7 s). Here writers wait on a thread
    lock, then on an ``flock`` of ``<database>-writers`` shared by every process on the file,
    both of which wake the next writer at once. SQLite's own lock stays the correctness
    guarantee: a writer that skips the gate (admin, management commands) still works.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._files = {}

    @contextlib.contextmanager
    def hold(self, using=None):
        """Called around a write transaction; a no-op off SQLite and inside a transaction
        (which already holds SQLite's write lock: waiting here could deadlock)."""
        connection = connections[using or DEFAULT_DB_ALIAS]
        if connection.vendor != "sqlite" or connection.in_atomic_block:
            yield
            return
        with self._lock:
            handle = self._lock_file(connection)
            if handle is None:
                yield
                return
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _lock_file(self, connection):
        """The open lock file beside the database file (None for an in-memory database)."""
        name = str(connection.settings_dict["NAME"])
        if name not in self._files:
            in_memory = name == ":memory:" or "mode=memory" in name
            # Kept open for the life of the process: flock is held per open file.
            self._files[name] = None if in_memory else open(f"{name}-writers", "a+b")  # noqa: SIM115
        return self._files[name]


#: The process's gate: one lock and one open lock file per database file.
write_gate = SQLiteWriteGate()
