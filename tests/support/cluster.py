"""A private Redis Cluster for tests: 3 masters (optionally one replica each), all on free
loopback ports, each ``redis-server --cluster-enabled yes`` in its own directory::

    cluster = ClusterDeployment.start_for(self, replicas=1)   # stopped by pid in cleanup
    cluster.url                      # redis+cluster://127.0.0.1:<p1>,...,127.0.0.1:<p6>
    cluster.masters()                # ports of the nodes that say role:master now
    cluster.kill(port)               # SIGKILL the node on ``port`` by its pid
    cluster.wait_failover(port)      # until a replica took over the dead master's slots

Formed with ``redis-cli --cluster create ... --cluster-yes``. ``cluster-node-timeout`` is
1000 ms unless told otherwise, so a dead master is replaced a second or two after it died.
Each node's bus port (``cluster-port``) is a free port of its own, not port + 10000.
"""

import os
import shutil
import subprocess
import time

import redis

from .redis_server import RedisServer, free_port

NODE_TIMEOUT_MS = 1000


class ClusterNode(RedisServer):
    """One cluster-enabled ``redis-server`` with its own directory and nodes.conf."""

    def __init__(self, password=None, node_timeout_ms=NODE_TIMEOUT_MS, pki=None):
        super().__init__()
        self.bus_port = free_port()
        self.password = password
        self.node_timeout_ms = node_timeout_ms
        self.pki = pki  # tests.support.tls.PKI: TLS only, clients and cluster bus

    @property
    def url(self):
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def extra_args(self):
        args = ["--cluster-enabled", "yes", "--cluster-port", str(self.bus_port),
                "--cluster-config-file", os.path.join(self._dir, "nodes.conf"),
                "--cluster-node-timeout", str(self.node_timeout_ms)]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        if self.pki is not None:
            from .tls import server_tls_args

            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cluster", "yes",
                     "--tls-replication", "yes", *server_tls_args(self.pki)]
        return args

    def client(self, **kwargs):
        if self.pki is not None:  # the server's certificate serves as a client one too
            kwargs = {"ssl": True, "ssl_ca_certs": self.pki.ca,
                      "ssl_certfile": self.pki.path("server.pem"),
                      "ssl_keyfile": self.pki.path("server.key"), **kwargs}
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, **kwargs)

    def info(self, section):
        with self.client(socket_timeout=1, decode_responses=True) as client:
            return client.info(section)

    def cluster_info(self):
        with self.client(socket_timeout=1, decode_responses=True) as client:
            text = client.execute_command("CLUSTER", "INFO")
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


class ClusterDeployment:
    """``masters`` masters with ``replicas`` replicas each, formed by ``redis-cli``."""

    def __init__(self, masters=3, replicas=0, *, password=None, node_timeout_ms=NODE_TIMEOUT_MS,
                 pki=None):
        self.password = password
        self.pki = pki
        self.nodes = [ClusterNode(password=password, node_timeout_ms=node_timeout_ms, pki=pki)
                      for _ in range(masters * (1 + replicas))]
        self.masters_count = masters
        self.replicas = replicas

    @classmethod
    def start_for(cls, test_case, **kwargs):
        deployment = cls(**kwargs)
        test_case.addCleanup(deployment.cleanup)
        deployment.start()
        return deployment

    @property
    def ports(self):
        return [node.port for node in self.nodes]

    @property
    def url(self):
        auth = f":{self.password}@" if self.password else ""
        scheme = "rediss+cluster" if self.pki is not None else "redis+cluster"
        return f"{scheme}://" + auth + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def node(self, port):
        return next(node for node in self.nodes if node.port == port)

    def start(self, timeout=30.0):
        try:
            for node in self.nodes:
                node.start()
            args = ["redis-cli", "--cluster", "create",
                    *(f"127.0.0.1:{p}" for p in self.ports),
                    "--cluster-replicas", str(self.replicas), "--cluster-yes"]
            if self.password:
                args += ["-a", self.password, "--no-auth-warning"]
            if self.pki is not None:
                args += ["--tls", "--cacert", self.pki.ca, "--cert",
                         self.pki.path("server.pem"), "--key", self.pki.path("server.key")]
            done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
            if done.returncode:
                raise RuntimeError(f"redis-cli --cluster create failed:\n{done.stdout}"
                                   f"{done.stderr}")
            self.wait_ok(timeout)
        except BaseException:
            self.cleanup()
            raise
        return self

    def _live(self):
        return [node for node in self.nodes if node.process is not None]

    def wait_ok(self, timeout=30.0):
        """Wait until every live node says ``cluster_state:ok`` and knows every other live
        node, and each master's replicas are in sync."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._settled(node) for node in self._live()):
                return
            time.sleep(0.05)
        raise RuntimeError("the cluster did not settle")

    def _settled(self, node):
        try:
            info = node.cluster_info()
            replication = node.info("replication")
        except (redis.RedisError, OSError):
            return False
        if info.get("cluster_state") != "ok" or int(info["cluster_known_nodes"]) < len(
                self._live()):
            return False
        if replication.get("role") == "slave":
            return replication.get("master_link_status") == "up"
        return True

    def role(self, port):
        with self.node(port).client(socket_timeout=1) as client:
            role = client.execute_command("ROLE")[0]
        return role.decode() if isinstance(role, bytes) else role

    def masters(self):
        """Ports of the live nodes that say ``role:master``."""
        ports = []
        for node in self._live():
            try:
                if self.role(node.port) == "master":
                    ports.append(node.port)
            except (redis.RedisError, OSError):
                pass
        return ports

    def kill(self, port):
        """SIGKILL the node on ``port`` by its pid (a crash) and wait for its exit."""
        self.node(port).kill()

    def wait_failover(self, dead_port, timeout=20.0):
        """Wait until the live nodes say ``cluster_state:ok`` again with ``dead_port`` gone
        (a replica promoted in its place); return the live masters' ports."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            masters = self.masters()
            if len(masters) == self.masters_count and dead_port not in masters and all(
                    self._state(node) == "ok" for node in self._live()):
                return masters
            time.sleep(0.05)
        raise RuntimeError(f"no replica took over from the master on port {dead_port}")

    def _state(self, node):
        try:
            return node.cluster_info().get("cluster_state")
        except (redis.RedisError, OSError):
            return None

    def cleanup(self):
        for node in self.nodes:
            node.cleanup()


def cluster_unavailable():
    """None when redis-server and redis-cli can make a cluster here, else why not."""
    for binary in ("redis-server", "redis-cli"):
        if not shutil.which(binary):
            return f"{binary} is not installed"
    return None
