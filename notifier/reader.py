"""Reading many Redis replies cheaply: a subscribed connection's messages in batches (with a
silence deadline that costs no timer per read), and the replies of commands sent together.

On the fast path (:mod:`notifier.compat.redis_py`, with hiredis), one awaited read is
followed by every reply the reader already holds; otherwise one reply per call, as redis-py
reads. docs/backplane.md explains the deadline.
"""

import asyncio

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from .compat import redis_py

try:  # hiredis >= 3.2 returns RESP3 push messages as this list subclass
    from hiredis import PushNotification
except ImportError:  # pragma: no cover - the pinned hiredis has it
    PushNotification = None

_MESSAGE = b"message"


class BatchReader:
    """Reads the replies of one subscribed ``PubSub``, many at a time.

    Made by the listener for each session, on the loop and in the task that reads; closed
    (:meth:`close`) when the session ends.
    """

    def __init__(self, pubsub):
        self._pubsub = pubsub
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._deadline = None  # while a read waits: when it becomes silence
        self._timer = None
        self._expired = False

    def close(self):
        """Called when the session ends: drop the timer."""
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def read(self, timeout):
        """Return the next replies: a list of one or more, in the connection's order, or an
        empty list when none came within ``timeout`` seconds. Raises what ``parse_response``
        raises (the connection is gone: ``ConnectionError`` and kin)."""
        deadline = self._loop.time() + timeout
        self._deadline = deadline
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(deadline, self._check_deadline)
        try:
            first = await self._pubsub.parse_response(block=True)
        except asyncio.CancelledError:
            if self._expired:
                self._expired = False
                if self._task.uncancel() == 0:
                    return []  # our cancellation, and nobody else's: silence
            raise
        finally:
            self._deadline = None
        if first is None:
            return []  # redis-py's health-check answer, which it filters out
        batch = [first]
        if not redis_py.fast():
            return batch  # one reply per call, exactly as redis-py reads it
        parser, gets = redis_py.hiredis_parser(self._pubsub.connection)
        if gets is None:
            return batch
        not_enough_data = redis_py.NOT_ENOUGH_DATA
        while True:
            reply = gets()
            if reply is not_enough_data:
                return batch
            kind = type(reply)
            if (kind is PushNotification or kind is list) and reply and reply[0] == _MESSAGE:
                batch.append(reply)  # the common case, which redis-py returns as it is
            else:
                batch.append(await _checked(parser, reply, push_request=True))

    def _check_deadline(self):
        # The timer: runs on the loop, so the reading task is suspended right now.
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return  # not reading (the caller is processing a batch): the next read re-arms
        if self._loop.time() < deadline:
            self._timer = self._loop.call_at(deadline, self._check_deadline)  # a later read
            return
        self._expired = True
        self._task.cancel()


async def read_replies(connection, count):
    """Read the ``count`` replies of commands sent together on ``connection``, in order.

    Raises the first error reply, or what ``read_response`` raises; the caller must then
    close the connection (replies may be left unread). The first reply of each socket read
    goes through redis-py's ``read_response``, the rest come straight from hiredis.
    """
    replies = []
    parser, gets = redis_py.hiredis_parser(connection) if redis_py.fast() else (None, None)
    not_enough_data = redis_py.NOT_ENOUGH_DATA
    while len(replies) < count:
        replies.append(await connection.read_response())
        if gets is None:
            continue
        while len(replies) < count:
            reply = gets()
            if reply is not_enough_data:
                break
            if type(reply) is int:
                replies.append(reply)  # PUBLISH's answer: how many received it
                continue
            reply = await _checked(parser, reply, push_request=False)
            if reply is not _SKIPPED:
                replies.append(reply)
    return replies


# A push message that was not the reply being read (RESP3): handled, then skipped.
_SKIPPED = object()


async def _checked(parser, reply, *, push_request):
    """What redis-py's hiredis parser and connection do with a reply other than a message."""
    if isinstance(reply, (RedisConnectionError, ResponseError)):
        raise reply
    if PushNotification is not None and type(reply) is PushNotification:
        handled = await parser.handle_push_response(reply)
        return handled if push_request else _SKIPPED
    if type(reply) is list and reply and isinstance(reply[0], RedisConnectionError):
        raise reply[0]
    return reply
