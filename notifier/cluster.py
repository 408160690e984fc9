"""Redis Cluster: the ``redis+cluster://`` backplane URL, and a transport whose every
connection goes to one live node of the cluster.

URL: ``redis+cluster://[user:password@]host:port[,host:port...][/0][?<redis-py options>]``
(``rediss+cluster://`` for TLS, with the settings of ``BACKPLANE["TLS"]``:
:mod:`notifier.tls`; a query, e.g. ``ssl_ca_certs=...``, applies to each node).
A cluster has only database 0.

Classic pub/sub, not sharded: a PUBLISH on any node reaches the SUBSCRIBErs of every node
over the cluster bus, so each connection may use any node, replicas included, and the
reference service (PUBLISH/SUBSCRIBE) hears us. README "Redis Cluster" has the measurements
behind that choice (bench/cluster_pubsub.py).

Which node each connection goes to: :mod:`notifier.cluster_nodes`.
"""

import threading
from dataclasses import dataclass
from urllib.parse import parse_qsl

import redis
import redis.asyncio as aioredis
import redis.connection as sync_connection
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

from .cluster_nodes import (
    AsyncNodeConnection,
    AsyncSSLNodeConnection,
    NodeList,
    SyncNodeConnection,
    SyncSSLNodeConnection,
)
from .hosts import format_netloc, parse_hosts, split_netloc
from .transport import _DEFAULT, RedisTransport

SCHEMES = ("redis+cluster", "rediss+cluster")
DEFAULT_PORT = 6379


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


class ClusterTransport(RedisTransport):
    """Connections to a live node of a ``redis+cluster://`` URL's cluster (see the module).

    PUBLISH counts only the subscribers of the node it ran on, so a count of 0 does not mean
    that nobody listens (:attr:`counts_every_subscriber`).
    """

    counts_every_subscriber = False

    def __init__(self, url, *, connect_timeout=2.0, socket_timeout=2.0, tls=None):
        super().__init__(url, connect_timeout=connect_timeout, socket_timeout=socket_timeout,
                         tls=tls)
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
            connection_class = AsyncSSLNodeConnection if config.tls else AsyncNodeConnection
        else:
            redis_class, pool_class, retry_class = redis.Redis, redis.ConnectionPool, Retry
            connection_class = SyncSSLNodeConnection if config.tls else SyncNodeConnection
        pool = pool_class(
            connection_class=connection_class,
            cluster_nodes=self.nodes,
            socket_connect_timeout=connect_timeout or self.connect_timeout,
            socket_timeout=self.socket_timeout if socket_timeout is _DEFAULT else socket_timeout,
            socket_keepalive=True,
            retry=retry_class(NoBackoff(), retries),
            client_name=name,
            **{**kwargs, **self.tls_kwargs(), **options},
        )
        return redis_class.from_pool(pool)

    def keyed_client(self, timeout):
        """A :class:`KeyedClient` for commands on keys (the shared rate limits): redis-py's
        ``RedisCluster`` sends each to the master of its key's slot and follows MOVED."""
        config, tls = self.config, self.tls_kwargs()

        def build():
            from redis.cluster import ClusterNode, RedisCluster

            options = sync_connection.parse_url(config.node_url(*config.hosts[0]))
            for key in ("connection_class", "host", "port", "db"):
                options.pop(key, None)
            return RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in config.hosts],
                ssl=config.tls, socket_timeout=timeout, socket_connect_timeout=timeout,
                **{**options, **tls})

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
