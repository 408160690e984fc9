"""Redis Cluster's nodes as the backplane's connections see them: which to try, and
redis-py connections that try them in turn (see :mod:`notifier.cluster`).

One :class:`NodeList` per transport, shared by all its connections: each new connection
tries the node the last one reached first, then the others (those that failed last), and
refreshes the list from ``CLUSTER NODES`` of the node it reached once something failed (not
more often than the :data:`REFRESH_SCHEDULE_MS` backoff allows), so promoted replicas and
added nodes are found.
"""

import asyncio
import logging
import threading
import time

import redis
import redis.asyncio.connection as async_connection
import redis.connection as sync_connection

from .backoff import Backoff

logger = logging.getLogger(__name__)

#: Pauses between two refreshes of the node list while nodes keep failing (ms, ±20 %); the
#: first refresh after a failure is at once.
REFRESH_SCHEDULE_MS = (250, 500, 1000, 2000, 5000)

#: Flags of a ``CLUSTER NODES`` line that make the node useless to connect to.
_UNUSABLE = frozenset({"fail", "handshake", "noaddr"})


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

    async def read_response(self, *args, **kwargs):
        # A reply cut off by a timeout or the caller's deadline: the node may have stopped
        # (SIGSTOP, a dead host), so the next connection tries the others first. Silence
        # on a subscription is no such cut: redis-py returns None for it.
        try:
            return await super().read_response(*args, **kwargs)
        except (redis.TimeoutError, asyncio.CancelledError):
            self.cluster_nodes.failed((self.host, self.port))
            raise

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
            except asyncio.CancelledError:
                # Cut off by the caller's deadline (a sender's round trip, a probe): the node
                # was too slow, so the next connection tries the others first.
                nodes.failed(address)
                raise
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

    def read_response(self, *args, **kwargs):
        try:
            return super().read_response(*args, **kwargs)
        except redis.TimeoutError:
            self.cluster_nodes.failed((self.host, self.port))
            raise

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


class AsyncNodeConnection(_AsyncNodeFailover, async_connection.Connection):
    pass


class AsyncSSLNodeConnection(_AsyncNodeFailover, async_connection.SSLConnection):
    pass


class SyncNodeConnection(_SyncNodeFailover, sync_connection.Connection):
    pass


class SyncSSLNodeConnection(_SyncNodeFailover, sync_connection.SSLConnection):
    pass
