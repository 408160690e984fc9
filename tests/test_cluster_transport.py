"""Redis Cluster with real processes: 3 masters, each with a replica, on free loopback ports
(tests/support/cluster.py). Connections on ``redis+cluster://`` go to one live node, learn the
others from it, and move on when their node dies; a listener and a publisher keep talking
across a SIGKILL of the node they use.

FOLLOW_KILL is measured here (see README "Redis Cluster"): from the SIGKILL until a
notification published after it arrives.
"""

import asyncio
import os
import shutil
import signal
import tempfile
import time
import unittest

import redis
from django.test import SimpleTestCase, override_settings

from notifier.backends.redis import RedisNotifier
from notifier.cluster import ClusterTransport
from notifier.cluster_nodes import NodeList, parse_cluster_nodes
from notifier.exceptions import BackplaneUnavailable
from notifier.layers import LocalChannelLayer
from notifier.tls import TLSConfig
from tests.support.cluster import ClusterDeployment, cluster_unavailable
from tests.support.redis_server import RedisServer, closed_port_url, unique_channel
from tests.support.tls import KEY_PASSWORD, make_pki, requires_tls_tools
from tests.test_sentinel_failover import Flow, resubscribed
from webchat import throttle
from webchat.ratelimit import Rate, RedisLimiter

#: Seconds from a SIGKILL of the node the listener and the publisher use until a
#: notification published after it arrives (no failover needed: any node will do).
FOLLOW_KILL = 2.0
#: Seconds from a SIGSTOP of that node until one published after it arrives: timeouts
#: (the probe's, the sender's round trip, each 2 s) tell that the node stopped answering,
#: then a probe through another node must fail to come back (2 s).
FOLLOW_FREEZE = 10.0

requires_cluster = unittest.skipIf(cluster_unavailable(), cluster_unavailable() or "")


def client_ports(client_name, deployment):
    """Ports of the live nodes where a connection named ``client_name`` is open."""
    ports = []
    for node in deployment.nodes:
        if node.process is None:
            continue
        with node.client(socket_timeout=1, decode_responses=True) as admin:
            if any(c.get("name") == client_name for c in admin.client_list()):
                ports.append(node.port)
    return ports


class NodeListTests(SimpleTestCase):
    """Pure logic: the order connections try the nodes in, and CLUSTER NODES parsing."""

    def test_the_node_reached_last_first_and_failed_ones_last(self):
        now = [0.0]
        nodes = NodeList([("a", 1), ("b", 2), ("c", 3)], clock=lambda: now[0])
        self.assertEqual(nodes.candidates(), [("a", 1), ("b", 2), ("c", 3)])
        nodes.reached(("b", 2))
        self.assertEqual(nodes.candidates()[0], ("b", 2))
        nodes.failed(("b", 2))
        now[0] = 1.0
        nodes.failed(("a", 1))
        self.assertEqual(nodes.candidates(), [("c", 3), ("b", 2), ("a", 1)])
        nodes.reached(("a", 1))
        self.assertEqual(nodes.candidates(), [("a", 1), ("c", 3), ("b", 2)])

    def test_refreshes_first_then_after_failures_with_backoff(self):
        now = [0.0]
        nodes = NodeList([("a", 1)], clock=lambda: now[0])
        self.assertTrue(nodes.refresh_due())
        nodes.refreshed(b"id1 10.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n"
                        b"id2 10.0.0.2:7000@17000 master - 0 0 2 connected 5461-10922\n")
        self.assertFalse(nodes.refresh_due())
        self.assertEqual(nodes.candidates(),
                         [("10.0.0.1", 7000), ("10.0.0.2", 7000), ("a", 1)])
        nodes.failed(("10.0.0.1", 7000))
        self.assertTrue(nodes.refresh_due())  # at once after a failure
        nodes.refreshed(b"id1 10.0.0.1:7000@17000 master - 0 0 1 connected 0-5460\n")
        now[0] = 0.1
        self.assertFalse(nodes.refresh_due())  # then not within the backoff's pause
        now[0] = 0.4
        self.assertTrue(nodes.refresh_due())
        nodes.reached(("10.0.0.1", 7000))
        self.assertFalse(nodes.refresh_due())  # nothing failed any more

    def test_parse_skips_failed_and_handshaking_nodes(self):
        reply = (
            "a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n"
            "b 127.0.0.1:7001@17001 master,fail - 0 0 2 disconnected 5461-10922\n"
            "c 127.0.0.1:7002@17002 slave a 0 0 1 connected\n"
            "d :0@0 master,noaddr - 0 0 3 disconnected\n"
            "e 127.0.0.1:7003@17003 handshake - 0 0 0 connected\n"
            "f [::1]:7004@17004,node-f.example slave a 0 0 1 connected\n"
        )
        self.assertEqual(parse_cluster_nodes(reply),
                         [("127.0.0.1", 7000), ("127.0.0.1", 7002), ("::1", 7004)])


@requires_cluster
class ClusterTransportTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.deployment = ClusterDeployment(replicas=1)
        cls.addClassCleanup(cls.deployment.cleanup)
        cls.deployment.start()

    async def test_a_client_learns_every_node_from_the_one_it_reached(self):
        first = self.deployment.ports[0]
        transport = ClusterTransport(f"redis+cluster://127.0.0.1:{first}")
        client = transport.client("test-learn")
        try:
            self.assertTrue(await client.ping())
        finally:
            await client.aclose()
        self.assertEqual(sorted(p for _, p in transport.nodes.candidates()),
                         sorted(self.deployment.ports))
        self.assertEqual(transport.nodes.candidates()[0], ("127.0.0.1", first))

    async def test_publish_on_one_node_reaches_a_subscriber_on_another(self):
        # Classic pub/sub: the cluster bus carries every PUBLISH to every node.
        ports = self.deployment.ports
        channel = unique_channel()
        listening = ClusterTransport(f"redis+cluster://127.0.0.1:{ports[1]}")
        publishing = ClusterTransport(f"redis+cluster://127.0.0.1:{ports[4]}")
        client = publishing.client("test-publish")
        try:
            async with listening.subscribe([channel], timeout=2) as subscription:
                # Counted on the publishing node only: 0, though a subscriber got it.
                self.assertEqual(await client.publish(channel, b"hello"), 0)
                replies = await subscription.read(2)
            self.assertEqual(replies, [[b"message", channel.encode(), b"hello"]])
            self.assertFalse(publishing.counts_every_subscriber)
        finally:
            await client.aclose()

    async def test_strict_startup_names_a_node_without_cluster_support(self):
        server = await asyncio.to_thread(RedisServer.start_for, self)
        notifier = RedisNotifier(f"redis+cluster://127.0.0.1:{server.port}")
        with self.assertRaisesRegex(BackplaneUnavailable, "is not a cluster node"):
            await asyncio.to_thread(notifier.verify, 2.0)

    async def test_a_plain_url_works_on_database_0_only(self):
        # Without failover, but classic pub/sub works through any one node; Redis refuses
        # SELECT in cluster mode, so /1 fails strict startup.
        port = self.deployment.ports[0]
        await asyncio.to_thread(RedisNotifier(f"redis://127.0.0.1:{port}/0").verify, 2.0)
        with self.assertRaisesRegex(BackplaneUnavailable, "SELECT is not allowed in cluster"):
            await asyncio.to_thread(RedisNotifier(f"redis://127.0.0.1:{port}/1").verify, 2.0)

    async def test_strict_startup_fails_when_no_node_answers(self):
        port = closed_port_url().rsplit(":", 1)[1].split("/")[0]
        notifier = RedisNotifier(f"redis+cluster://:hunter2@127.0.0.1:{port}")
        with self.assertRaisesRegex(BackplaneUnavailable,
                                    "no node of the cluster answers") as caught:
            await asyncio.to_thread(notifier.verify, 2.0)
        self.assertNotIn("hunter2", str(caught.exception))

    def test_shared_rate_limits_run_their_script_on_the_cluster(self):
        # The limiter's keys share one hash tag (webchat.throttle): one script, one slot.
        limiter = RedisLimiter(ClusterTransport(self.deployment.url).keyed_client(2.0),
                               f"{{{unique_channel('limits')}}}")
        try:
            limits = [("ip:1", Rate(2, 60)), ("tenant:1", Rate(100, 60))]
            self.assertEqual([limiter.hit(limits).allowed for _ in range(3)],
                             [True, True, False])
        finally:
            limiter.close()

    def test_the_service_shares_its_limits_through_the_cluster(self):
        prefix = unique_channel("limits")
        with override_settings(BACKPLANE={"BACKEND": "redis", "URL": self.deployment.url},
                               WEBCHAT_LIMITS={"BACKEND": "redis", "KEY_PREFIX": prefix}):
            limiter = throttle._build()
        try:
            self.assertIsInstance(limiter, throttle.FallbackLimiter)
            limits = [("ip:1", Rate(1, 60)), ("tenant:1", Rate(100, 60))]
            # Refused by the shared limit, not the local fallback's: the key is in the cluster.
            self.assertEqual([limiter.hit(limits).allowed for _ in range(2)], [True, False])
            cluster = redis.RedisCluster(host="127.0.0.1", port=self.deployment.ports[0])
            try:
                self.assertTrue(cluster.exists(f"{{{prefix}}}:ip:1"))
            finally:
                cluster.close()
        finally:
            limiter.close()

    def test_a_keyed_client_connects_on_first_use(self):
        port = int(closed_port_url().rsplit(":", 1)[1].split("/")[0])
        limiter = RedisLimiter(ClusterTransport(f"redis+cluster://127.0.0.1:{port}")
                               .keyed_client(0.5), "{limits}")
        with self.assertRaisesRegex(redis.ConnectionError, "Redis Cluster"):
            limiter.hit([("ip:1", Rate(2, 60))])

    async def test_the_sync_client_moves_on_from_a_dead_seed(self):
        port = int(closed_port_url().rsplit(":", 1)[1].split("/")[0])
        live = self.deployment.ports[2]
        transport = ClusterTransport(f"redis+cluster://127.0.0.1:{port},127.0.0.1:{live}")
        client = transport.client(asynchronous=False)
        try:
            self.assertTrue(client.ping())
        finally:
            client.close()
        self.assertEqual(transport.nodes.candidates()[0], ("127.0.0.1", live))


@requires_cluster
class ClusterFailoverTests(SimpleTestCase):
    async def check_follows_a_killed_node(self, replicas):
        deployment = await asyncio.to_thread(ClusterDeployment.start_for, self,
                                             replicas=replicas)
        channel = unique_channel()
        listening_layer = LocalChannelLayer()
        # The listener's and the publisher's process both start at the first master.
        listening = RedisNotifier(deployment.url, channel=channel, channel_layer=listening_layer)
        publishing = RedisNotifier(deployment.url, channel=channel,
                                   channel_layer=LocalChannelLayer())
        await listening.astart()
        await publishing.astart()
        listener = listening.listener()
        listener.start()
        flow = Flow(publishing, listening_layer)
        try:
            await listener.wait_connected(5)
            await flow.start()
            await flow.delivered_after(time.monotonic(), 5)
            used = await asyncio.to_thread(client_ports, "webchat-notifier-listener", deployment)
            self.assertEqual(used, [deployment.ports[0]])
            resyncs_before = len(flow.resyncs)
            connects = listener.counters["connects"]
            killed = time.monotonic()
            await asyncio.to_thread(deployment.kill, used[0])
            moved = await resubscribed(listener, connects, killed, FOLLOW_KILL)
            followed = moved + await flow.delivered_after(killed + moved, FOLLOW_KILL)
            print(f"\ncluster node SIGKILLed ({replicas} replica(s) per master): the listener "
                  f"resubscribed {moved:.2f} s and deliveries resumed {followed:.2f} s after")
            self.assertLess(followed, FOLLOW_KILL)
            now_on = await asyncio.to_thread(client_ports, "webchat-notifier-listener",
                                             deployment)
            self.assertEqual(len(now_on), 1)
            self.assertNotEqual(now_on, used)

            mark = time.monotonic()
            await asyncio.sleep(1.0)
            late = [w for w, at in flow.published.items() if mark < at < mark + 0.8]
            await asyncio.sleep(0.5)
            self.assertTrue(late)
            self.assertEqual([w for w in late if w not in flow.received], [])
            self.assertEqual(flow.duplicates, 0)
            self.assertTrue(flow.in_order())
            self.assertGreater(len(flow.resyncs), resyncs_before)
            # Honest readiness afterwards: probes make their round trips again.
            returned = listener.probe.counters["returned"]
            await asyncio.sleep(1.5)
            self.assertGreater(listener.probe.counters["returned"], returned)
            self.assertTrue(listener.probe.healthy())
        finally:
            await flow.stop()
            await listener.aclose()
            await listening.aclose()
            await publishing.aclose()

    async def test_listener_and_publisher_leave_a_frozen_node(self):
        # SIGSTOP: connections stay open and nothing answers. The probe's PUBLISH and the
        # sender's round trip time out, which marks the node as failed (tried last), and
        # the listener leaves once a probe PUBLISHed elsewhere does not come back.
        deployment = await asyncio.to_thread(ClusterDeployment.start_for, self, replicas=1)
        channel = unique_channel()
        listening_layer = LocalChannelLayer()
        listening = RedisNotifier(deployment.url, channel=channel, channel_layer=listening_layer)
        publishing = RedisNotifier(deployment.url, channel=channel,
                                   channel_layer=LocalChannelLayer())
        await listening.astart()
        await publishing.astart()
        listener = listening.listener()
        listener.start()
        flow = Flow(publishing, listening_layer)
        frozen = deployment.node(deployment.ports[0])
        try:
            await listener.wait_connected(5)
            await flow.start()
            await flow.delivered_after(time.monotonic(), 5)
            connects = listener.counters["connects"]
            stopped = time.monotonic()
            os.kill(frozen.pid, signal.SIGSTOP)
            try:
                moved = await resubscribed(listener, connects, stopped, FOLLOW_FREEZE)
                followed = moved + await flow.delivered_after(stopped + moved, FOLLOW_FREEZE)
            finally:
                os.kill(frozen.pid, signal.SIGCONT)
            print(f"\ncluster node SIGSTOPped: the listener resubscribed {moved:.2f} s and "
                  f"deliveries resumed {followed:.2f} s after")
            self.assertLess(followed, FOLLOW_FREEZE)
            mark = time.monotonic()
            await asyncio.sleep(1.0)
            late = [w for w, at in flow.published.items() if mark < at < mark + 0.8]
            await asyncio.sleep(0.5)
            self.assertTrue(late)
            self.assertEqual([w for w in late if w not in flow.received], [])
            # Only these: what the frozen node held in its socket buffers goes out when it
            # runs again, late (a bump is a hint: a socket re-reads from its cursor).
            self.assertEqual(sorted(late, key=flow.received.get), late)
        finally:
            await flow.stop()
            await listener.aclose()
            await listening.aclose()
            await publishing.aclose()

    async def test_listener_and_publisher_leave_a_killed_master_without_replicas(self):
        await self.check_follows_a_killed_node(replicas=0)

    async def test_listener_and_publisher_leave_a_killed_master_with_failover(self):
        await self.check_follows_a_killed_node(replicas=1)


@requires_cluster
class ClusterAuthTests(SimpleTestCase):
    async def test_the_password_is_used_on_every_node_and_never_shown(self):
        deployment = await asyncio.to_thread(ClusterDeployment.start_for, self,
                                             password="hunter2")
        channel = unique_channel()
        listening = ClusterTransport(deployment.url)
        publishing = ClusterTransport(deployment.url.replace(
            f"127.0.0.1:{deployment.ports[0]},", ""))
        client = publishing.client("test-auth")
        try:
            async with listening.subscribe([channel], timeout=2) as subscription:
                await client.publish(channel, b"hello")
                self.assertEqual(await subscription.read(2),
                                 [[b"message", channel.encode(), b"hello"]])
        finally:
            await client.aclose()
        # The node left out of its URL was learned from CLUSTER NODES (asked with AUTH).
        self.assertIn(("127.0.0.1", deployment.ports[0]), publishing.nodes.candidates())
        wrong = RedisNotifier(deployment.url.replace("hunter2", "hunter3"))
        with self.assertRaisesRegex(BackplaneUnavailable, "no node of the cluster answers")\
                as caught:
            await asyncio.to_thread(wrong.verify, 2.0)
        self.assertNotIn("hunter", str(caught.exception))

    async def test_an_acl_user_without_cluster_nodes_keeps_to_the_urls_nodes(self):
        # README "Redis Cluster": the ACL recipe plus +cluster|nodes. ACLs are per node.
        deployment = await asyncio.to_thread(ClusterDeployment.start_for, self,
                                             password="admin-pw")

        def grant(*rules):
            for node in deployment.nodes:
                with node.client() as admin:
                    admin.execute_command("ACL", "SETUSER", "webchat", "reset", "on",
                                          ">user-pw", "+ping", "+hello", "+client|setname",
                                          "+publish", "+subscribe", "&*", *rules)

        first = deployment.ports[0]
        url = f"redis+cluster://webchat:user-pw@127.0.0.1:{first}"
        await asyncio.to_thread(grant)
        await asyncio.to_thread(RedisNotifier(url).verify, 2.0)
        transport = ClusterTransport(url)
        client = transport.client("test-acl")
        try:
            with self.assertLogs("notifier.cluster_nodes", "INFO") as logs:
                self.assertTrue(await client.ping())
        finally:
            await client.aclose()
        self.assertIn("cannot list the cluster's nodes", logs.output[0])
        self.assertEqual(transport.nodes.candidates(), [("127.0.0.1", first)])
        await asyncio.to_thread(grant, "+cluster|nodes")
        transport = ClusterTransport(url)
        client = transport.client("test-acl")
        try:
            self.assertTrue(await client.ping())
        finally:
            await client.aclose()
        self.assertEqual(len(transport.nodes.candidates()), len(deployment.ports))


@requires_cluster
@requires_tls_tools
class ClusterTLSTests(SimpleTestCase):
    async def test_rediss_cluster_uses_the_tls_settings_on_every_node(self):
        # Nodes that speak only TLS (clients, replication and cluster bus) and want a client
        # certificate; the client's key is encrypted (KEY_PASSWORD).
        directory = tempfile.mkdtemp(prefix="test-cluster-tls-")
        self.addCleanup(shutil.rmtree, directory, True)
        pki = await asyncio.to_thread(make_pki, directory)
        deployment = await asyncio.to_thread(ClusterDeployment.start_for, self, pki=pki)
        tls = TLSConfig(ca_certs=pki.ca, certfile=pki.path("client.pem"),
                        keyfile=pki.path("client.key"), key_password=KEY_PASSWORD)
        first, last = deployment.ports[0], deployment.ports[-1]
        url = f"rediss+cluster://127.0.0.1:{first}"
        await asyncio.to_thread(RedisNotifier(url, tls=tls).verify, 2.0)
        channel = unique_channel()
        listening = ClusterTransport(url, tls=tls)
        publishing = ClusterTransport(f"rediss+cluster://127.0.0.1:{last}", tls=tls)
        client = publishing.client("test-tls")
        try:
            async with listening.subscribe([channel], timeout=2) as subscription:
                await client.publish(channel, b"hello")
                self.assertEqual(await subscription.read(2),
                                 [[b"message", channel.encode(), b"hello"]])
        finally:
            await client.aclose()
        self.assertEqual(sorted(p for _, p in listening.nodes.candidates()),
                         sorted(deployment.ports))
        # The node dies: the next connection goes to another one, over TLS too.
        await asyncio.to_thread(deployment.kill, first)
        client = listening.client("test-tls")
        try:
            self.assertTrue(await client.ping())
        finally:
            await client.aclose()
        self.assertNotEqual(listening.nodes.candidates()[0], ("127.0.0.1", first))
        # Without the client certificate every node refuses the handshake.
        untrusted = RedisNotifier(f"rediss+cluster://127.0.0.1:{last}",
                                  tls=TLSConfig(ca_certs=pki.ca))
        with self.assertRaisesRegex(BackplaneUnavailable, "TLS handshake failed at "
                                    "rediss\\+cluster://.*requires a client certificate"):
            await asyncio.to_thread(untrusted.verify, 2.0)
