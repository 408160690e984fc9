"""Redis Sentinel: the ``redis+sentinel://`` backplane URL, and a transport whose every
connection goes to the master the sentinels name now.

URL: ``redis+sentinel://[user:password@]host:port[,host:port...]/<service>[/<db>]``
(``?sentinel_username=&sentinel_password=`` when the sentinels want other credentials
than the master). The user and password are the master's; without ``sentinel_*`` the
sentinels get the same ones only if they are given explicitly (see :class:`SentinelURL`).
``rediss+sentinel://`` speaks TLS to the sentinels and to the master, with the settings of
``BACKPLANE["TLS"]`` (:mod:`notifier.tls`).

redis-py's public ``Sentinel``/``SentinelConnectionPool`` do the discovery. On top of it:

* each new connection checks ``ROLE`` and refuses a node that is not a master (the sentinels
  may name a demoted master for a moment);
* a pool asks the sentinels again when a connection is taken and its last answer is older
  than ``recheck`` seconds; when they name another master, its idle connections are closed
  and the in-use ones are dropped on release (redis-py's ``owns_connection``);
* a subscription's watch task asks them as often, and its next read fails (a connection
  error: the listener reconnects) once they name another master. A demoted master keeps answering
  SUBSCRIBE while PUBLISHes go to the new one (docs/backplane.md).
"""

import asyncio
import contextlib
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as async_sentinel
import redis.sentinel as sync_sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from .hosts import format_netloc, parse_hosts, split_netloc
from .tasks import cancel_and_wait
from .transport import _DEFAULT, RedisTransport, Subscription

SCHEME = "redis+sentinel"
TLS_SCHEME = "rediss+sentinel"
DEFAULT_PORT = 26379

#: Seconds after which a pool or a subscription asks the sentinels again who the master is.
RECHECK_INTERVAL = 1.0

#: Seconds a publisher's connection waits for the sentinels' answer to a recheck.
CHECK_TIMEOUT = 0.5

_QUERY_KEYS = ("sentinel_username", "sentinel_password")


@dataclass(frozen=True)
class SentinelURL:
    """A parsed ``redis+sentinel://`` URL (see :func:`parse_url`)."""

    hosts: tuple
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    tls: bool = False

    def to_url(self):
        """The URL again (passwords in clear: only ever log it through ``mask_url``)."""
        query = "&".join(f"{key}={quote(value, safe='')}" for key, value in (
            ("sentinel_username", self.sentinel_username),
            ("sentinel_password", self.sentinel_password)) if value is not None)
        netloc = format_netloc(self.username, self.password, self.hosts)
        scheme = TLS_SCHEME if self.tls else SCHEME
        return (f"{scheme}://{netloc}/{quote(self.service, safe='')}/{self.db}"
                + (f"?{query}" if query else ""))


def is_sentinel_url(url):
    return isinstance(url, str) and url.partition("://")[0].lower() in (SCHEME, TLS_SCHEME)


def parse_url(url):
    """Parse a ``redis+sentinel://`` (or ``rediss+sentinel://``) URL; raise ``ValueError``
    naming what is wrong."""
    head, sep, rest = url.partition("://")
    if not sep or head.lower() not in (SCHEME, TLS_SCHEME):
        raise ValueError(f"a Sentinel URL starts with {SCHEME}:// (or {TLS_SCHEME}://)")
    rest, _, query = rest.partition("?")
    rest = rest.partition("#")[0]
    netloc, _, path = rest.partition("/")
    username, password, hostlist = split_netloc(netloc)
    hosts = parse_hosts(hostlist, default_port=DEFAULT_PORT, what="sentinel")
    segments = [unquote(s) for s in path.split("/")] if path else []
    if segments and segments[-1] == "":
        segments.pop()  # a trailing slash
    if not segments or not segments[0]:
        raise ValueError("the URL names no service after the sentinels (.../<service_name>)")
    if len(segments) > 2:
        raise ValueError(f"too many path segments {path!r}: expected /<service_name>[/<db>]")
    db = 0
    if len(segments) == 2:
        if not segments[1].isdigit():
            raise ValueError(f"the database {segments[1]!r} is not a non-negative integer")
        db = int(segments[1])
    options = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _QUERY_KEYS:
            raise ValueError(f"unknown query parameter {key!r} (known: {', '.join(_QUERY_KEYS)})")
        options[key] = value
    return SentinelURL(hosts=hosts, service=segments[0], db=db, username=username,
                       password=password, tls=head.lower() == TLS_SCHEME, **options)


def _role(reply):
    role = reply[0] if isinstance(reply, (list, tuple)) and reply else reply
    return role.decode() if isinstance(role, bytes) else str(role)


def _not_master(connection, role):
    return redis.ConnectionError(
        f"{connection.host}:{connection.port} is a {role}, not the master of "
        f"{connection.connection_pool.service_name!r}; asking the sentinels again")


# The redis-py pinned here runs on_connect_check_health() after connecting (its on_connect()
# calls it too); older ones, without that method, run on_connect(). The ROLE check follows
# whichever runs, once.


class _AsyncMasterConnection(async_sentinel.SentinelManagedConnection):
    async def on_connect_check_health(self, check_health=True):
        await super().on_connect_check_health(check_health=check_health)
        await self._check_role()

    async def on_connect(self):
        await super().on_connect()
        if not hasattr(async_sentinel.SentinelManagedConnection, "on_connect_check_health"):
            await self._check_role()

    async def _check_role(self):
        await self.send_command("ROLE")
        role = _role(await self.read_response())
        if role != "master":
            await self.disconnect()
            raise _not_master(self, role)


class _SyncMasterConnection(sync_sentinel.SentinelManagedConnection):
    def on_connect_check_health(self, check_health=True):
        super().on_connect_check_health(check_health=check_health)
        self._check_role()

    def on_connect(self):
        super().on_connect()
        if not hasattr(sync_sentinel.SentinelManagedConnection, "on_connect_check_health"):
            self._check_role()

    def _check_role(self):
        self.send_command("ROLE")
        role = _role(self.read_response())
        if role != "master":
            self.disconnect()
            raise _not_master(self, role)


# rediss+sentinel://: the same ROLE check over TLS.
class _AsyncMasterSSLConnection(_AsyncMasterConnection,
                                async_sentinel.SentinelManagedSSLConnection):
    pass


class _SyncMasterSSLConnection(_SyncMasterConnection,
                               sync_sentinel.SentinelManagedSSLConnection):
    pass


class _AsyncMasterPool(async_sentinel.SentinelConnectionPool):
    def __init__(self, service_name, sentinel_manager, *, recheck=RECHECK_INTERVAL, **kwargs):
        super().__init__(service_name, sentinel_manager, **kwargs)
        self.recheck = recheck
        self._checked_at = None

    async def get_connection(self, *args, **kwargs):
        now = time.monotonic()
        if self._checked_at is not None and now - self._checked_at >= self.recheck:
            self._checked_at = now
            # Closes the idle connections when the sentinels name another master. No answer
            # (soon): the connection below finds out for itself, and a publish never waits
            # on unresponsive sentinels longer than CHECK_TIMEOUT.
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError, TimeoutError):
                async with asyncio.timeout(CHECK_TIMEOUT):
                    await self.get_master_address()
        elif self._checked_at is None:
            self._checked_at = now  # the first connect asks them anyway
        return await super().get_connection(*args, **kwargs)

    async def disconnect(self, inuse_connections=True):
        await super().disconnect(inuse_connections)
        if inuse_connections:  # closing the client: the sentinels' connections too
            for client in self.sentinel_manager.sentinels:
                await client.connection_pool.disconnect()


class _SyncMasterPool(sync_sentinel.SentinelConnectionPool):
    def __init__(self, service_name, sentinel_manager, *, recheck=RECHECK_INTERVAL, **kwargs):
        super().__init__(service_name, sentinel_manager, **kwargs)
        self.recheck = recheck
        self._checked_at = None

    def get_connection(self, *args, **kwargs):
        now = time.monotonic()
        if self._checked_at is not None and now - self._checked_at >= self.recheck:
            self._checked_at = now
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                self.get_master_address()
        elif self._checked_at is None:
            self._checked_at = now
        return super().get_connection(*args, **kwargs)

    def disconnect(self, inuse_connections=True):
        super().disconnect(inuse_connections)
        if inuse_connections:
            for client in self.sentinel_manager.sentinels:
                client.connection_pool.disconnect()


class SentinelTransport(RedisTransport):
    """Connections to the current master of a ``redis+sentinel://`` URL's service.

    ``recheck``: seconds after which a pool or a subscription asks the sentinels again.
    """

    def __init__(self, url, *, connect_timeout=2.0, socket_timeout=2.0,
                 recheck=RECHECK_INTERVAL, tls=None):
        super().__init__(url, connect_timeout=connect_timeout, socket_timeout=socket_timeout,
                         tls=tls)
        self.config = parse_url(url)
        self.recheck = recheck

    def client(self, name=None, *, asynchronous=True, retries=0, connect_timeout=None,
               socket_timeout=_DEFAULT, **options):
        """A client whose pool asks the sentinels (see the module); arguments as the base's."""
        config = self.config
        connect_timeout = connect_timeout or self.connect_timeout
        socket_timeout = self.socket_timeout if socket_timeout is _DEFAULT else socket_timeout
        if asynchronous:
            module, redis_class, retry_class = async_sentinel, aioredis.Redis, AsyncRetry
            pool_class, connection_class = _AsyncMasterPool, _AsyncMasterConnection
            ssl_connection_class = _AsyncMasterSSLConnection
        else:
            module, redis_class, retry_class = sync_sentinel, redis.Redis, Retry
            pool_class, connection_class = _SyncMasterPool, _SyncMasterConnection
            ssl_connection_class = _SyncMasterSSLConnection
        # rediss+sentinel://: TLS to the sentinels and to the master, with the same settings.
        tls = self.tls_kwargs()
        if config.tls:
            connection_class = ssl_connection_class
        # Each client has its own sentinel connections, closed with it (see the pools). One
        # try per sentinel: discovery goes on to the next one (redis-py's default retries a
        # refused sentinel for seconds).
        sentinel = module.Sentinel(list(config.hosts), sentinel_kwargs={
            "retry": retry_class(NoBackoff(), 0),
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": connect_timeout,
            "username": config.sentinel_username,
            "password": config.sentinel_password,
            **({"ssl": True, **tls} if config.tls else {}),
        })
        return sentinel.master_for(
            config.service,
            redis_class=redis_class,
            connection_pool_class=pool_class,
            connection_class=connection_class,
            recheck=self.recheck,
            db=config.db,
            username=config.username,
            password=config.password,
            socket_connect_timeout=connect_timeout,
            socket_timeout=socket_timeout,
            socket_keepalive=True,
            retry=retry_class(NoBackoff(), retries),
            client_name=name,
            **tls,
            **options,
        )

    @contextlib.asynccontextmanager
    async def subscribe(self, channels, *, timeout, name=None):
        """As the base's, and the subscription ends once the sentinels name another master
        (asked every ``recheck`` seconds by a task this context owns)."""
        async with super().subscribe(channels, timeout=timeout, name=name) as subscription:
            watched = _MasterSubscription(subscription, self.recheck)
            task = asyncio.get_running_loop().create_task(watched.watch(),
                                                          name="notifier-sentinel-watch")
            try:
                yield watched
            finally:
                await cancel_and_wait(task)


class _MasterSubscription(Subscription):
    """A subscription whose reads fail once its watch found that the sentinels name
    another master. The watch runs beside the reads: sentinels that do not answer never
    hold up a message."""

    def __init__(self, subscription, recheck):  # noqa: D107 - wraps, no super().__init__
        self._inner = subscription
        self._pubsub = subscription._pubsub
        self._recheck = recheck
        self._moved = None  # the error to raise once the sentinels name another master

    async def read(self, timeout):
        # Raised before a read, so that leaving never drops a batch already read, or
        # instead of the error of a read whose connection the watch closed.
        if self._moved is not None:
            raise self._moved
        try:
            return await self._inner.read(min(timeout, self._recheck))
        except (redis.ConnectionError, OSError):
            if self._moved is not None:  # the watch closed the connection under this read
                raise self._moved from None
            raise

    async def watch(self):
        """Ask the sentinels every ``recheck`` seconds until they name another master."""
        pool = self._pubsub.connection_pool
        while self._moved is None:
            await asyncio.sleep(self._recheck)
            connection = self._pubsub.connection
            if connection is None:
                continue
            try:
                master = await pool.sentinel_manager.discover_master(pool.service_name)
            except (redis.ConnectionError, redis.TimeoutError):
                continue  # no sentinel answers: the probe and PING tell if this one works
            here = (connection.host, connection.port)
            if tuple(master) != here:
                self._moved = redis.ConnectionError(
                    f"subscribed at {here[0]}:{here[1]}, but the sentinels name "
                    f"{master[0]}:{master[1]} the master of {pool.service_name!r}")
                # Wakes a read waiting on this connection: leave now, not at its timeout.
                await connection.disconnect()
