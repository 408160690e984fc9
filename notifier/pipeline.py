"""PUBLISH a batch of payloads in one round trip, written in RESP directly.

redis-py's client still pools, connects and reports error replies. A batch whose connection
fails is sent once more at once on a new connection; a connection whose round trip did not
complete is closed, never reused (docs/backplane.md).
"""

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .reader import read_replies

# Errors after which the batch is sent once more on a fresh connection.
_RETRIED = (RedisConnectionError, RedisTimeoutError)


def command_head(channel):
    """The RESP bytes that start a PUBLISH to ``channel`` (str), up to the payload."""
    name = channel.encode()
    return b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n" % (len(name), name)


def pack(commands):
    """RESP for ``[(command_head(channel), payload bytes), ...]``, in order."""
    return b"".join([b"%s$%d\r\n%s\r\n" % (head, len(payload), payload)
                     for head, payload in commands])


async def publish(client, commands):
    """Send the PUBLISH ``commands`` (see :func:`pack`) with ``client``'s pool, in one round
    trip; return the receiver counts. Raises what redis-py raises for a failed connection
    (a connection that cannot be made is not retried), or the first error reply."""
    packed = pack(commands)
    pool = client.connection_pool
    for attempt in (1, 2):
        connection = await pool.get_connection()
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
