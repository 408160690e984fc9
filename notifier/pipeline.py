"""PUBLISH a batch of payloads in one round trip.

On the fast path (:mod:`notifier.compat.redis_py`) the batch is written in RESP directly;
otherwise, or with ``DEPENDENCY_FAST_PATHS = False``, it goes through a ``Pipeline``. A
batch whose connection fails is sent once more at once on a new connection; a connection
whose round trip did not complete is closed, never reused (docs/backplane.md).
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
