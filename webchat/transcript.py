"""Writing and reading a conversation's activities: the only place that moves a watermark."""

import contextlib
import fcntl
import threading
from datetime import UTC, datetime

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from notifier.signals import watermark_bumped

from . import queries
from .models import Conversation


def activity_id(conversation_id: str, sequence: int) -> str:
    return f"{conversation_id}|{sequence:07d}"


def utc_timestamp() -> str:
    """ISO-8601 UTC with milliseconds and ``Z``, as Direct Line clients expect."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


_write_gate = SQLiteWriteGate()


def append_activity(conversation: Conversation, activity: dict, using=None) -> dict:
    """Store ``activity`` as the conversation's next one and return it as stored.

    In one transaction: bump the conversation's watermark, which locks its row (on SQLite
    the IMMEDIATE transaction already holds the write lock) and gives the next sequence
    number, store the row and send ``watermark_bumped``, whose receiver publishes after
    commit. Two replicas writing at once get gap-free, unique numbers.
    The caller fills ``from``, ``type`` etc.; this sets ``id``, ``timestamp``, ``channelId``
    and ``conversation``. Raises ``Conversation.DoesNotExist`` if it is gone.
    """
    with _write_gate.hold(using), transaction.atomic(using=using):
        bumped = queries.bump_watermark(conversation.pk, using)
        if bumped is None:
            raise Conversation.DoesNotExist(f"Conversation {conversation.pk!r} does not exist.")
        conversation_id, tenant_id, sequence = bumped
        stored = dict(activity)
        stored["id"] = activity_id(conversation_id, sequence)
        stored["timestamp"] = utc_timestamp()
        stored["channelId"] = "directline"
        stored["conversation"] = {"id": conversation_id}
        queries.insert_activity(conversation_id, sequence, stored, using)
        watermark_bumped.send(
            sender=Conversation,
            tenant_id=str(tenant_id),
            conversation_id=conversation_id,
            new_watermark=sequence,
            using=using,
        )
    conversation.watermark = sequence
    return stored


def activities_since(conversation_id: str, watermark: int, limit: int | None = None):
    """Return ``(activities, newest_sequence)`` after ``watermark``, oldest first."""
    rows = queries.activities_since(conversation_id, watermark, limit)
    newest = rows[-1][0] if rows else watermark
    return [data for _, data in rows], newest
