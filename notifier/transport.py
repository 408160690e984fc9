"""The Redis transport: bytes to and from Redis, and nothing about what they mean.

Every connection the notifier makes (listener, senders, probe, startup check) comes from
:meth:`RedisTransport.client`: override it to find the current master another way.
"""

import contextlib

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import pipeline
from .conf import mask_url
from .reader import BatchReader
from .tasks import raise_if_cancelled
from .tls import is_tls_url

_DEFAULT = object()


def transport_for_url(url, **options):
    """The transport for ``url``: a :class:`~notifier.sentinel.SentinelTransport` for
    ``redis(s)+sentinel://``, a :class:`~notifier.cluster.ClusterTransport` for
    ``redis(s)+cluster://``, else a :class:`RedisTransport`; ``options`` go to any."""
    scheme = url.partition("://")[0].lower() if isinstance(url, str) else ""
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        from .sentinel import SentinelTransport

        return SentinelTransport(url, **options)
    if scheme in ("redis+cluster", "rediss+cluster"):
        from .cluster import ClusterTransport

        return ClusterTransport(url, **options)
    return RedisTransport(url, **options)


class RedisTransport:
    """Connections to the Redis at ``url`` (redis://, rediss:// or unix://; for
    redis+sentinel:// see :func:`transport_for_url`).

    ``connect_timeout`` and ``socket_timeout``: seconds, the defaults of :meth:`client`.
    ``tls``: a :class:`~notifier.tls.TLSConfig` for a TLS URL's connections.
    """

    #: Whether a PUBLISH's answer counts every subscriber (not so in a cluster, where it
    #: counts those of the node it ran on): the probe trusts a count of 0 only then.
    counts_every_subscriber = True

    def __init__(self, url, *, connect_timeout=2.0, socket_timeout=2.0, tls=None):
        self.url = url
        self.connect_timeout = connect_timeout
        self.socket_timeout = socket_timeout
        self.tls = tls

    def tls_kwargs(self):
        """redis-py's ``ssl_*`` arguments from :attr:`tls` (none unless the URL is TLS)."""
        if self.tls is None or not is_tls_url(self.url):
            return {}
        return self.tls.redis_kwargs()

    def __repr__(self):
        return f"<{type(self).__name__} {mask_url(self.url)}>"

    def client(self, name=None, *, asynchronous=True, retries=0, connect_timeout=None,
               socket_timeout=_DEFAULT, **options):
        """Return a new client for the current master, named ``name`` (``CLIENT SETNAME``).

        ``retries``: immediate reconnects redis-py may make per command; no other retries are
        hidden in the client (reconnecting with backoff is the callers' job).
        ``asynchronous``: a ``redis.asyncio`` client, else a synchronous one. Other
        ``options`` go to ``from_url``.
        """
        client_class, retry_class = ((aioredis.Redis, AsyncRetry) if asynchronous
                                     else (redis.Redis, Retry))
        return client_class.from_url(
            self.url,
            socket_connect_timeout=connect_timeout or self.connect_timeout,
            socket_timeout=self.socket_timeout if socket_timeout is _DEFAULT else socket_timeout,
            socket_keepalive=True,
            retry=retry_class(NoBackoff(), retries),
            client_name=name,
            **self.tls_kwargs(),
            **options,
        )

    @contextlib.asynccontextmanager
    async def subscribe(self, channels, *, timeout, name=None):
        """Subscribe one new connection to ``channels`` (str); yield a :class:`Subscription`
        once Redis confirmed each, and close the connection on exit.

        ``timeout``: seconds for connecting and for each confirmation.
        """
        # RESP2: the same messages as RESP3's push messages, which redis-py also formats for
        # a debug log, logged or not (see docs/benchmarks.md).
        client = self.client(name, connect_timeout=timeout, socket_timeout=timeout, protocol=2)
        pubsub = client.pubsub()
        reader = None
        try:
            # subscribe() before any read: redis-py refuses get_message() on an unsubscribed
            # PubSub (its connection is only made by the first command).
            await pubsub.subscribe(*channels)
            raise_if_cancelled()
            await _confirm(pubsub, len(channels), timeout)
            reader = BatchReader(pubsub)
            yield Subscription(pubsub, reader)
        finally:
            if reader is not None:
                reader.close()
            await pubsub.aclose()
            await client.aclose()

    async def publish(self, client, commands):
        """Send ``[(pipeline.command_head(channel), payload), ...]`` in one round trip with
        ``client`` (from :meth:`client`); return the receiver counts (see
        :func:`notifier.pipeline.publish`)."""
        return await pipeline.publish(client, commands)


class Subscription:
    """One confirmed SUBSCRIBE connection, read in batches (see :mod:`notifier.reader`).

    ``await read(timeout)`` returns the next replies (``[b"message", channel, payload]`` and
    any other pub/sub reply) in the connection's order, or ``[]`` after ``timeout`` seconds
    of silence.
    """

    def __init__(self, pubsub, reader):
        self._pubsub = pubsub
        # The reader's own method: no coroutine of ours per read.
        self.read = reader.read

    async def ping(self):
        """Send a PING; its answer arrives through :meth:`read`."""
        await self._pubsub.ping()
        raise_if_cancelled()


async def _confirm(pubsub, count, timeout):
    # Redis answers SUBSCRIBE (once per channel) before it forwards any message on it.
    confirmed = 0
    while confirmed < count:
        response = await pubsub.parse_response(block=False, timeout=timeout)
        if response is None:
            raise TimeoutError(f"no SUBSCRIBE confirmation within {timeout} s")
        if response[0] == b"subscribe":
            confirmed += 1
