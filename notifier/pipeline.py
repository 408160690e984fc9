"""PUBLISH a batch of payloads in one round trip, without redis-py's cost per command.

The notifier's async sender (:mod:`notifier.outbound`) sends up to 256 PUBLISHes per round
trip. Through redis-py's ``Pipeline`` each costs about 5 µs of the publishing process's CPU,
more than everything else a publish does: the command is queued with its options, each
argument goes through the encoder, and each reply through ``read_response`` and the
response-callback lookup. Every one of these commands has the same shape, so here the batch
is written in RESP directly (two bytes strings per command) and the replies, one integer per
PUBLISH, are taken as the listener takes messages (:func:`notifier.reader.read_replies`).

What redis-py's client still does: the connection pool, connecting (handshake, AUTH, client
name, protocol), the pool's check that a connection has nothing unread, and the error
replies. That is the fast path (:mod:`notifier.compat.redis_py`); on another redis-py, or
with ``DEPENDENCY_FAST_PATHS = False``, the same batch goes through a ``Pipeline``.

As its pipeline did for the sender (``Retry(NoBackoff(), 1)``), a batch whose
connection fails is sent once more at once, on a new connection: a pooled connection that
Redis closed (restart, ``CLIENT KILL``) costs no batch. A connection whose round trip did not
complete (an error, a cancellation, the caller's timeout) is closed, never reused with
replies still on their way.
"""

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .compat import redis_py
from .reader import read_replies

# Errors after which the batch is sent once more on a fresh connection.
_RETRIED = (RedisConnectionError, RedisTimeoutError)


_HEAD = b"*3\r\n$7\r\nPUBLISH\r\n$"


def command_head(channel):
    """The RESP bytes that start a PUBLISH to ``channel`` (str), up to the payload."""
    name = channel.encode()
    return b"%s%d\r\n%s\r\n" % (_HEAD, len(name), name)


def head_channel(head):
    """The channel (bytes) that :func:`command_head` wrote into ``head``."""
    # After the prefix: <length> CRLF, then exactly <length> bytes (which may hold CRLF).
    end = head.index(b"\r\n", len(_HEAD))
    start = end + 2
    return head[start:start + int(head[len(_HEAD):end])]


def pack(commands):
    """RESP for ``[(command_head(channel), payload bytes), ...]``, in order."""
    return b"".join([b"%s$%d\r\n%s\r\n" % (head, len(payload), payload)
                     for head, payload in commands])


async def publish(client, commands):
    """Send the PUBLISH ``commands`` (see :func:`pack`) with ``client``'s pool, in one round
    trip; return the receiver counts. Raises what redis-py raises for a failed connection
    (a connection that cannot be made is not retried), or the first error reply."""
    if not redis_py.fast():
        return await _publish_with_pipeline(client, commands)
    packed = pack(commands)
    pool = client.connection_pool
    for attempt in (1, 2):
        connection = await redis_py.get_connection(pool)
        try:
            await connection.send_packed_command(packed, check_health=False)
            return await read_replies(connection, len(commands))
        except _RETRIED:
            await connection.disconnect(nowait=True)
            if attempt == 2:
                raise
        except BaseException:
            # Unread replies, or a cancelled round trip: never hand the connection out again.
            await connection.disconnect(nowait=True)
            raise
        finally:
            await pool.release(connection)


async def _publish_with_pipeline(client, commands):
    """The public path: the same batch through redis-py's ``Pipeline``, sent once more when
    its connection failed (the pipeline closes that connection)."""
    for attempt in (1, 2):
        try:
            async with client.pipeline(transaction=False) as pipe:
                for head, payload in commands:
                    pipe.publish(head_channel(head), payload)
                return await pipe.execute()
        except _RETRIED:
            if attempt == 2:
                raise
