"""The stream's database reads: one kept connection per process, reads shared and batched.

Every watermark bump makes each subscribed socket re-read its conversation from its cursor.
Read one by one, each socket paid a thread hop and its own query, and each encoded the same
frame again. Here (measured with ``bench/load.py``, see docs/benchmarks.md):

* reads run on one thread per process that keeps its database connection
  (:func:`stream_db`, ``webchat.db_threads``), instead of opening and closing one per read;
* reads that wait together go to that thread in one hop, and sockets of one conversation at
  the same cursor share one query and one encoded frame (:class:`SharedReads`).
"""

import asyncio

from .db_threads import DatabaseThreads, read_retried

#: The stream's database thread: one per process (reads come in batches, see SharedReads).
stream_threads = DatabaseThreads("stream-db", 1)


async def stream_db(function, *args):
    """Await ``function(*args)`` on the process's stream database thread, which keeps its
    connection (in tests: on the test's own thread, see ``webchat.db_threads``). The stream
    only reads: a read that lost its connection (a database restart) is tried once more on
    a fresh one."""
    return await stream_threads.run(read_retried, function, *args)


def _read_all(keys):
    """Called in the stream database thread with a batch: one outcome per key, in order (a
    failing read gives its exception, the others still run)."""
    outcomes = []
    for read, *args in keys:
        try:
            outcomes.append(read_retried(read, *args))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


def _retrieve(future):
    # A socket that went away leaves its outcome unread: do not log it as "never retrieved".
    if not future.cancelled():
        future.exception()


class SharedReads:
    """Batches the stream reads of one event loop.

    ``await read(function, *args)`` returns ``function(*args)`` (a
    :class:`~webchat.pages.Page`: never mutate it, it is shared), run on the stream
    database thread. Reads asked for while no batch waits start one; a batch starts on the
    next loop iteration and takes every read asked for until then, in one thread hop, with
    one query per distinct ``(function, *args)``. A read never joins a batch that already
    started: it asked after its bump arrived, so it must see rows committed before the bump.

    The batch task belongs to this object and ends by itself when no read waits; a socket
    that goes away while its read is in flight does not cancel the read for the others.
    """

    def __init__(self):
        self._loop = None
        self._waiting = {}
        self._runner = None

    async def read(self, function, *args):
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new loop (tests): the old one took its tasks along
            self._loop, self._waiting, self._runner = loop, {}, None
        key = (function, *args)
        future = self._waiting.get(key)
        if future is None:
            future = self._waiting[key] = loop.create_future()
            future.add_done_callback(_retrieve)
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._run())
        return await asyncio.shield(future)

    async def _run(self):
        await asyncio.sleep(0)  # let the other sockets woken by the same bump ask too
        while self._waiting:
            batch, self._waiting = self._waiting, {}
            try:
                outcomes = await stream_db(_read_all, list(batch))
            except asyncio.CancelledError:
                for future in batch.values():
                    future.cancel()
                raise
            except Exception as exc:  # the hop itself failed: every read of the batch did
                outcomes = [exc] * len(batch)
            for future, outcome in zip(batch.values(), outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)


#: The process's shared reads (one event loop serves the consumers).
shared_reads = SharedReads()
