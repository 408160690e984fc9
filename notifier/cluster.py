"""Redis Cluster: the ``redis+cluster://`` backplane URL, and a transport whose every
connection goes to one live node of the cluster.

URL: ``redis+cluster://[user:password@]host:port[,host:port...][/0][?<redis-py options>]``
(``rediss+cluster://`` for TLS; the query, e.g. ``ssl_ca_certs=...``, applies to each node).
A cluster has only database 0.

Classic pub/sub, not sharded: a PUBLISH on any node reaches the SUBSCRIBErs of every node
over the cluster bus, so each connection may use any node, replicas included, and the
reference service (PUBLISH/SUBSCRIBE) hears us. README "Redis Cluster" has the measurements
behind that choice (bench/cluster_pubsub.py).

One :class:`NodeList` per transport, shared by all its connections: each new connection
tries the node the last one reached first, then the others (those that failed last), and
refreshes the list from ``CLUSTER NODES`` of the node it reached once something failed (not
more often than the :data:`REFRESH_SCHEDULE_MS` backoff allows), so promoted replicas and
added nodes are found and failed ones dropped.
"""

import logging
import threading
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl

import redis
import redis.asyncio as aioredis
import redis.asyncio.connection as async_connection
import redis.connection as sync_connection
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

from .backoff import Backoff
from .hosts import format_netloc, parse_hosts, split_netloc
from .transport import _DEFAULT, RedisTransport

logger = logging.getLogger(__name__)

SCHEMES = ("redis+cluster", "rediss+cluster")
DEFAULT_PORT = 6379

#: Pauses between two refreshes of the node list while nodes keep failing (ms, ±20 %); the
#: first refresh after a failure is at once.
REFRESH_SCHEDULE_MS = (250, 500, 1000, 2000, 5000)

#: Flags of a ``CLUSTER NODES`` line that make the node useless to connect to.
_UNUSABLE = frozenset({"fail", "handshake", "noaddr"})


@dataclass(frozen=True)
class ClusterURL:
    """A parsed ``redis+cluster://`` URL (see :func:`parse_url`)."""

    hosts: tuple
    username: str | None = None
    password: str | None = None
    tls: bool = False
    query: str = ""

    def to_url(self):
        """The URL again (passwords in clear: only ever log it through ``mask_url``)."""
        scheme = SCHEMES[self.tls]
        netloc = format_netloc(self.username, self.password, self.hosts)
        return f"{scheme}://{netloc}/0" + (f"?{self.query}" if self.query else "")

    def node_url(self, host, port):
        """The ``redis://`` (``rediss://``) URL of one node, credentials and query kept."""
        netloc = format_netloc(self.username, self.password, ((host, port),))
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{netloc}/0" + (f"?{self.query}" if self.query else "")


def is_cluster_url(url):
    return isinstance(url, str) and url.partition("://")[0].lower() in SCHEMES


def parse_url(url):
    """Parse a ``redis+cluster://`` URL; raise ``ValueError`` naming what is wrong."""
    head, sep, rest = url.partition("://")
    if not sep or head.lower() not in SCHEMES:
        raise ValueError("a Cluster URL starts with redis+cluster:// or rediss+cluster://")
    rest, _, query = rest.partition("?")
    rest = rest.partition("#")[0]
    netloc, _, path = rest.partition("/")
    username, password, hostlist = split_netloc(netloc)
    hosts = parse_hosts(hostlist, default_port=DEFAULT_PORT, what="cluster node")
    if path not in ("", "0"):
        raise ValueError(f"a Redis Cluster has only database 0, the URL names {path!r}: "
                         "end it with /0 or nothing")
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "db" and value != "0":
            raise ValueError(f"a Redis Cluster has only database 0, not db={value}")
    config = ClusterURL(hosts=hosts, username=username, password=password,
                        tls=head.lower() == SCHEMES[1], query=query)
    # redis-py's own parser on one node's URL: the options it refuses are refused here.
    sync_connection.parse_url(config.node_url(*hosts[0]))
    return config


class NodeList:
    """The nodes connections may go to: the URL's, and those ``CLUSTER NODES`` names.

    Thread-safe (the sync sender's thread and the loop share it). :meth:`candidates` orders
    them for a new connection; connections report back with :meth:`reached` and
    :meth:`failed`.
    """

    def __init__(self, seeds, *, clock=time.monotonic):
        self.seeds = tuple(seeds)
        self.clock = clock
        self._lock = threading.Lock()
        self._known = list(self.seeds)  # learned nodes first once refreshed, then the seeds
        self._preferred = None
        self._failed_at = {}  # address -> clock() of its last failure
        self._refreshed = False  # never refreshed: the first connection refreshes
        self._refresh_due_at = 0.0
        self._refresh_backoff = Backoff(REFRESH_SCHEDULE_MS)

    def candidates(self):
        """Every known node, to try in this order: the one reached last, the others in
        order, then those that failed (longest ago first)."""
        with self._lock:
            nodes = list(dict.fromkeys(self._known + list(self.seeds)))
            failed = self._failed_at
            fresh = [n for n in nodes if n not in failed]
            stale = sorted((n for n in nodes if n in failed), key=failed.__getitem__)
            preferred = self._preferred
            if preferred in fresh:
                fresh.remove(preferred)
                fresh.insert(0, preferred)
            return fresh + stale

    def reached(self, address):
        with self._lock:
            self._preferred = address
            self._failed_at.pop(address, None)

    def failed(self, address):
        with self._lock:
            self._failed_at[address] = self.clock()
            if self._preferred == address:
                self._preferred = None

    def refresh_due(self):
        """Whether a connection that just reached a node should ask it for the nodes: the
        first time, and after a failure once the backoff since the last refresh is over."""
        with self._lock:
            if not self._refreshed:
                return True
            return bool(self._failed_at) and self.clock() >= self._refresh_due_at

    def refreshed(self, reply):
        """Take the nodes of a ``CLUSTER NODES`` reply (str or bytes)."""
        nodes = parse_cluster_nodes(reply)
        with self._lock:
            first = not self._refreshed
            self._refreshed = True
            self._pause_refreshes()
            if nodes:
                # Failure marks stay until a connection reaches the node again: right after
                # a crash the cluster still lists the node as connected (for
                # cluster-node-timeout), and only the order of the tries depends on them.
                self._known = nodes
        if first or nodes:
            logger.debug("cluster nodes: %s", ", ".join(f"{h}:{p}" for h, p in nodes))

    def refresh_skipped(self):
        """The node would not say (no permission): try again only after the backoff."""
        with self._lock:
            self._refreshed = True
            self._pause_refreshes()

    def _pause_refreshes(self):
        # Under the lock. Nothing failed: the next failure refreshes at once.
        if self._failed_at:
            self._refresh_due_at = self.clock() + self._refresh_backoff.next_delay()
        else:
            self._refresh_backoff.reset()
            self._refresh_due_at = self.clock()


def parse_cluster_nodes(reply):
    """``[(host, port), ...]`` of the usable nodes in a ``CLUSTER NODES`` reply."""
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    nodes = []
    for line in reply.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        flags = set(fields[2].split(","))
        if flags & _UNUSABLE or fields[7] != "connected" and "myself" not in flags:
            continue
        address = fields[1].partition("@")[0].partition(",")[0]
        host, _, port = address.rpartition(":")
        if host and port.isdigit() and int(port):
            nodes.append((host.strip("[]"), int(port)))
    return nodes


def _not_a_cluster(address, error):
    return redis.ConnectionError(f"{address[0]}:{address[1]} is not a cluster node ({error}); "
                                 "for a single Redis use redis://")


def _refresh_failed(connection, address, error):
    message = str(error)
    if "cluster support disabled" in message:
        raise _not_a_cluster(address, message) from None
    connection.cluster_nodes.refresh_skipped()
    logger.info("cannot list the cluster's nodes at %s:%s (%s); keeping %d known",
                address[0], address[1], message, len(connection.cluster_nodes.candidates()))


def _all_failed(errors):
    return redis.ConnectionError("no node of the cluster answers: " + "; ".join(errors))


class _AsyncNodeFailover:
    """Mixed into redis-py's asyncio connections: connect to the first candidate that
    answers, and refresh the node list from it when due."""

    def __init__(self, *, cluster_nodes, **kwargs):
        self.cluster_nodes = cluster_nodes
        super().__init__(**kwargs)

    async def connect_check_health(self, check_health=True, retry_socket_connect=True):
        # redis-py >= 5.3 opens every connection here (connect() and a command's send).
        if self.is_connected:
            return
        await self._each_node(lambda: super(_AsyncNodeFailover, self).connect_check_health(
            check_health=check_health, retry_socket_connect=False))

    async def connect(self):
        if hasattr(async_connection.AbstractConnection, "connect_check_health"):
            return await super().connect()  # goes through connect_check_health above
        if getattr(self, "is_connected", False):
            return None
        return await self._each_node(super().connect)

    async def on_connect_check_health(self, check_health=True):
        # After the handshake, before redis-py's connect callbacks (a PubSub's SUBSCRIBE).
        await super().on_connect_check_health(check_health=check_health)
        await self._refresh_if_due()

    async def on_connect(self):
        await super().on_connect()
        if not hasattr(async_connection.AbstractConnection, "on_connect_check_health"):
            await self._refresh_if_due()

    async def _each_node(self, connect):
        nodes, errors = self.cluster_nodes, []
        for address in nodes.candidates():
            self.host, self.port = address
            try:
                await connect()
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                await self.disconnect()
                nodes.failed(address)
                errors.append(f"{address[0]}:{address[1]}: {exc}")
                continue
            nodes.reached(address)
            return
        raise _all_failed(errors)

    async def _refresh_if_due(self):
        if not self.cluster_nodes.refresh_due():
            return
        await self.send_command("CLUSTER", "NODES")
        try:
            reply = await self.read_response()
        except redis.ResponseError as exc:
            _refresh_failed(self, (self.host, self.port), exc)
            return
        self.cluster_nodes.refreshed(reply)


class _SyncNodeFailover:
    """As :class:`_AsyncNodeFailover`, for redis-py's synchronous connections."""

    def __init__(self, *, cluster_nodes, **kwargs):
        self.cluster_nodes = cluster_nodes
        super().__init__(**kwargs)

    def connect_check_health(self, check_health=True, retry_socket_connect=True):
        if self.is_connected:
            return
        self._each_node(lambda: super(_SyncNodeFailover, self).connect_check_health(
            check_health=check_health, retry_socket_connect=False))

    def connect(self):
        if hasattr(sync_connection.AbstractConnection, "connect_check_health"):
            return super().connect()
        if getattr(self, "is_connected", False):
            return None
        return self._each_node(super().connect)

    def on_connect_check_health(self, check_health=True):
        super().on_connect_check_health(check_health=check_health)
        self._refresh_if_due()

    def on_connect(self):
        super().on_connect()
        if not hasattr(sync_connection.AbstractConnection, "on_connect_check_health"):
            self._refresh_if_due()

    def _each_node(self, connect):
        nodes, errors = self.cluster_nodes, []
        for address in nodes.candidates():
            self.host, self.port = address
            try:
                connect()
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self.disconnect()
                nodes.failed(address)
                errors.append(f"{address[0]}:{address[1]}: {exc}")
                continue
            nodes.reached(address)
            return
        raise _all_failed(errors)

    def _refresh_if_due(self):
        if not self.cluster_nodes.refresh_due():
            return
        self.send_command("CLUSTER", "NODES")
        try:
            reply = self.read_response()
        except redis.ResponseError as exc:
            _refresh_failed(self, (self.host, self.port), exc)
            return
        self.cluster_nodes.refreshed(reply)


class _AsyncConnection(_AsyncNodeFailover, async_connection.Connection):
    pass


class _AsyncSSLConnection(_AsyncNodeFailover, async_connection.SSLConnection):
    pass


class _SyncConnection(_SyncNodeFailover, sync_connection.Connection):
    pass


class _SyncSSLConnection(_SyncNodeFailover, sync_connection.SSLConnection):
    pass


class ClusterTransport(RedisTransport):
    """Connections to a live node of a ``redis+cluster://`` URL's cluster (see the module).

    PUBLISH counts only the subscribers of the node it ran on, so a count of 0 does not mean
    that nobody listens (:attr:`counts_every_subscriber`).
    """

    counts_every_subscriber = False

    def __init__(self, url, *, connect_timeout=2.0, socket_timeout=2.0):
        super().__init__(url, connect_timeout=connect_timeout, socket_timeout=socket_timeout)
        self.config = parse_url(url)
        self.nodes = NodeList(self.config.hosts)

    def client(self, name=None, *, asynchronous=True, retries=0, connect_timeout=None,
               socket_timeout=_DEFAULT, **options):
        """A client whose connections each go to a live node; arguments as the base's."""
        config = self.config
        kwargs = sync_connection.parse_url(config.node_url(*config.hosts[0]))
        kwargs.pop("connection_class", None)
        if asynchronous:
            redis_class, pool_class, retry_class = (aioredis.Redis, aioredis.ConnectionPool,
                                                    AsyncRetry)
            connection_class = _AsyncSSLConnection if config.tls else _AsyncConnection
        else:
            redis_class, pool_class, retry_class = redis.Redis, redis.ConnectionPool, Retry
            connection_class = _SyncSSLConnection if config.tls else _SyncConnection
        pool = pool_class(
            connection_class=connection_class,
            cluster_nodes=self.nodes,
            socket_connect_timeout=connect_timeout or self.connect_timeout,
            socket_timeout=self.socket_timeout if socket_timeout is _DEFAULT else socket_timeout,
            socket_keepalive=True,
            retry=retry_class(NoBackoff(), retries),
            client_name=name,
            **{**kwargs, **options},
        )
        return redis_class.from_pool(pool)

    def keyed_client(self, timeout):
        """A :class:`KeyedClient` for commands on keys (the shared rate limits): redis-py's
        ``RedisCluster`` sends each to the master of its key's slot and follows MOVED."""
        config = self.config

        def build():
            from redis.cluster import ClusterNode, RedisCluster

            options = sync_connection.parse_url(config.node_url(*config.hosts[0]))
            for key in ("connection_class", "host", "port", "db"):
                options.pop(key, None)
            return RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in config.hosts],
                ssl=config.tls, socket_timeout=timeout, socket_connect_timeout=timeout,
                **options)

        return KeyedClient(build)


class KeyedClient:
    """A ``RedisCluster`` made on first use, for ``register_script`` and ``close``: making
    one connects, and a process must start while no node answers (the caller's first
    command fails instead, as a connection error)."""

    def __init__(self, factory):
        self._factory = factory
        self._client = None
        self._lock = threading.Lock()

    def _get(self):
        with self._lock:
            if self._client is None:
                from redis.exceptions import RedisClusterException

                try:
                    self._client = self._factory()
                except RedisClusterException as exc:
                    raise redis.ConnectionError(f"Redis Cluster: {exc}") from exc
            return self._client

    def get_encoder(self):
        # What Script hashes a str script with; RedisCluster's default encoding.
        return sync_connection.Encoder("utf-8", "strict", False)

    def register_script(self, script):
        return Script(self, script)

    def evalsha(self, *args):
        return self._get().evalsha(*args)

    def script_load(self, script):
        return self._get().script_load(script)

    def close(self):
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
