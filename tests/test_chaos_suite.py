"""Issue 12's chaos suite: no single failure loses an activity, and each is measured.

Two real daphne replicas, two stream sockets on each replica for each of two conversations,
a post every 0.1 s alternating the conversations, each through its own replica; then one
failure (tests/support/chaos.py runs it and checks every socket against the transcript:
every activity exactly once, in order; no GET 5xx; ``/readyz`` 200 after recovery). Each
case measures the catch-up time, from the moment the failure is over (posts stopped, so no
later activity carries a socket forward) until every socket had every activity, and holds
it to BOUND. The README's "Delivery guarantees" table reports the measured values.

To add a failure: subclass ``Failure`` below (``deploy``
returns ``start_cluster``'s keyword arguments, ``strike`` breaks, ``recover`` repairs and
returns when catch-up counts from) and add a line ``test_<name> = case(<YourFailure>)`` to
``ChaosSuiteTests``.
"""

import asyncio
import logging
import shutil
import time
from unittest import SkipTest

from django.test import SimpleTestCase

from tests.support.chaos import Chaos, Failure, commit_then_die
from tests.support.cluster import ClusterDeployment, cluster_unavailable
from tests.support.postgres_server import PostgresServer, postgres_binaries_missing
from tests.support.redis_server import RedisServer
from tests.support.replicas import redis_unavailable
from tests.support.sentinel import SentinelDeployment

logger = logging.getLogger(__name__)

#: Seconds from the end of a failure until every socket has every activity: the issue's
#: bound, generous for a loaded 2-core machine (the README gives the measured values).
BOUND = 5.0


def requires(binary):
    if not shutil.which(binary):
        raise SkipTest(f"{binary} is not installed")


def shared_redis():
    reason = redis_unavailable()
    if reason:
        raise SkipTest(reason)
    return {}


class KilledBetweenCommitAndPublish(Failure):
    """(a) A replica commits and is SIGKILLed before it PUBLISHes: only the watermark sweep
    (webchat/catch_up.py, every CATCH_UP_INTERVAL) tells the sockets."""

    name = "replica SIGKILLed between commit and PUBLISH"

    def deploy(self, testcase):
        return shared_redis()

    async def recover(self, chaos):
        ids = [c["conversationId"] for c in chaos.conversations]
        return await asyncio.to_thread(commit_then_die, chaos.cluster, ids, 3, 0.37)


class SentinelFailoverThenKill(Failure):
    """(b) ``SENTINEL FAILOVER``, then a SIGKILL of the promoted master (real
    ``redis-server --sentinel`` processes: tests/support/sentinel.py)."""

    name = "SENTINEL FAILOVER, then SIGKILL of the promoted master"

    def deploy(self, testcase):
        requires("redis-server")
        self.deployment = SentinelDeployment.start_for(testcase)
        return {"redis_url": self.deployment.url}

    async def strike(self, chaos):
        # The posts go on through the forced failover, the kill and the ~2 s without a
        # master until the sentinels promote the old master again.
        deployment = self.deployment
        old = await asyncio.to_thread(deployment.failover)
        promoted = await asyncio.to_thread(deployment.wait_master, old)
        await asyncio.to_thread(deployment.wait_replica_synced, old)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(deployment.kill_master)
        await asyncio.to_thread(deployment.wait_master, promoted)


class RedisKilledRestartedEmpty(Failure):
    """(c) The only Redis SIGKILLed while both replicas write, then started again empty."""

    name = "Redis SIGKILLed, restarted empty"

    def deploy(self, testcase):
        requires("redis-server")
        self.redis = RedisServer.start_for(testcase)
        return {"redis_url": self.redis.url}

    async def strike(self, chaos):
        await asyncio.to_thread(self.redis.kill)
        await asyncio.sleep(1.5)

    async def recover(self, chaos):
        await asyncio.to_thread(self.redis.start)  # returns once Redis answers
        return time.monotonic()


class DatabaseRestart(Failure):
    """(d) ``pg_ctl restart -m fast`` of a private PostgreSQL: reads (GETs, stream reads)
    wait it out; a POST in flight may answer 500."""

    name = "database restart (private PostgreSQL)"

    def deploy(self, testcase):
        reason = redis_unavailable() or postgres_binaries_missing()
        if reason:
            raise SkipTest(reason)
        self.server = PostgresServer.start(testcase)
        return {"database": "postgres", "postgres_admin_url": self.server.url}

    async def strike(self, chaos):
        await asyncio.to_thread(self.server.restart)


class ReplicaKilled(Failure):
    """(e) A replica SIGKILLed: its sockets resume on the other replica with their
    watermark, and the posts through it move to the other replica. Catch-up counts from the
    kill: the clients notice, reconnect and get what they missed from the replay."""

    name = "replica SIGKILLed, clients resume on the other"

    def deploy(self, testcase):
        return shared_redis()

    async def strike(self, chaos):
        await chaos.kill_replica(1)
        self.killed_at = time.monotonic()

    async def recover(self, chaos):
        return self.killed_at


class ClusterNodeDeath(Failure):
    """(f) On ``redis+cluster://`` (a real 3-master cluster with a replica per master), the
    node both listeners use is SIGKILLed: they move to another node and resync, and a
    replica takes over the dead master's slots (tests/support/cluster.py)."""

    name = "Redis Cluster: the listeners' node SIGKILLed"

    def deploy(self, testcase):
        reason = cluster_unavailable()
        if reason:
            raise SkipTest(reason)
        self.deployment = ClusterDeployment.start_for(testcase, replicas=1)
        return {"redis_url": self.deployment.url}

    async def strike(self, chaos):
        # Both replicas start at the URL's first node, so their listeners share it.
        port = self.deployment.ports[0]
        await asyncio.to_thread(self.deployment.kill, port)
        await asyncio.to_thread(self.deployment.wait_failover, port)


def case(failure_class):
    async def test(self):
        failure = failure_class()
        result = await Chaos(self, failure).run()
        logger.info("chaos: %s: caught up %.2f s after recovery, longest POST -> frame "
                    "%.2f s (bound %.1f s); %d activities, %d sockets, POSTs %s, GETs %s",
                    failure.name, result.catch_up, result.delay, BOUND, result.activities,
                    result.sockets, result.posts, result.gets)
        self.assertLess(result.catch_up, BOUND)
        self.assertLess(result.delay, BOUND)

    test.__doc__ = failure_class.__doc__
    return test


class ChaosSuiteTests(SimpleTestCase):
    test_a_replica_killed_between_commit_and_publish = case(KilledBetweenCommitAndPublish)
    test_b_sentinel_failover_then_kill = case(SentinelFailoverThenKill)
    test_c_redis_killed_and_restarted_empty = case(RedisKilledRestartedEmpty)
    test_d_database_restart = case(DatabaseRestart)
    test_e_replica_killed = case(ReplicaKilled)
    test_f_cluster_node_death = case(ClusterNodeDeath)
