"""A private Redis Sentinel deployment for tests: one master, one replica, three sentinels.

::

    deployment = SentinelDeployment.start_for(self)   # free ports; stopped by pid in cleanup
    deployment.url                  # redis+sentinel://127.0.0.1:<s1>,...:<s3>/<service>/0
    deployment.master_port()        # what the sentinels say now
    deployment.failover()           # SENTINEL FAILOVER; returns the new master's port
    deployment.kill_master()        # SIGKILL the current master by its pid; returns its port
    deployment.wait_master(not_port=old, timeout=20)   # until the sentinels promote another

Every process is a ``redis-server`` started by this module on 127.0.0.1, each sentinel with
its own config file (a sentinel rewrites it).
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid

import redis

from .redis_server import RedisServer, free_port


class SentinelServer:
    """One ``redis-server --sentinel`` process with its own config file."""

    def __init__(self, directory, service, master_port, quorum=2, *, password=None,
                 master_password=None):
        self.port = free_port()
        self.password = password
        self.config = os.path.join(directory, f"sentinel-{self.port}.conf")
        with open(self.config, "w") as file:
            file.write(
                f"port {self.port}\nbind 127.0.0.1\ndir {directory}\n"
                "sentinel resolve-hostnames no\n"
                f"sentinel monitor {service} 127.0.0.1 {master_port} {quorum}\n"
                f"sentinel down-after-milliseconds {service} 1000\n"
                f"sentinel failover-timeout {service} 5000\n"
                f"sentinel parallel-syncs {service} 1\n"
            )
            if master_password:
                file.write(f"sentinel auth-pass {service} {master_password}\n")
            if password:  # asked of clients, and used with the other sentinels
                file.write(f"requirepass {password}\n")
        self.process = None

    def start(self, timeout=10.0):
        self.process = subprocess.Popen(
            ["redis-server", self.config, "--sentinel", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.client() as client:
                    client.ping()
                return self
            except (redis.RedisError, OSError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"sentinel on port {self.port} did not start") from None
                time.sleep(0.02)

    def pause(self):
        """SIGSTOP by pid: connections open, nothing answered (a partitioned sentinel)."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.process.pid, signal.SIGCONT)

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2,
                           socket_connect_timeout=2, decode_responses=True,
                           password=self.password)

    def stop(self, timeout=10.0):
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(signal.SIGCONT)  # a paused one would not see SIGTERM
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class SentinelDeployment:
    """A master, a replica (``--replicaof``) and three sentinels (quorum 2), all private."""

    def __init__(self, service=None, *, password=None, sentinel_password=None):
        self.service = service or f"test-{uuid.uuid4().hex[:8]}"
        self.password = password
        self.sentinel_password = sentinel_password
        self._dir = tempfile.mkdtemp(prefix="test-sentinel-")
        self.master = _Node(password=password)
        self.replica = _Node(replicaof=self.master.port, password=password)
        self.sentinels = []

    @classmethod
    def start_for(cls, test_case):
        deployment = cls()
        test_case.addCleanup(deployment.cleanup)
        deployment.start()
        return deployment

    @property
    def servers(self):
        return {server.port: server for server in (self.master, self.replica)}

    @property
    def url(self):
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        auth = f":{self.password}@" if self.password else ""
        query = f"?sentinel_password={self.sentinel_password}" if self.sentinel_password else ""
        return f"redis+sentinel://{auth}{hosts}/{self.service}/0{query}"

    def start(self, timeout=20.0):
        self.master.start()
        self.replica.start()
        self.sentinels = [SentinelServer(self._dir, self.service, self.master.port,
                                         password=self.sentinel_password,
                                         master_password=self.password)
                          for _ in range(3)]
        for sentinel in self.sentinels:
            sentinel.start()
        # Ready when every sentinel sees the replica and the two other sentinels.
        deadline = time.monotonic() + timeout
        while not all(self._sees_everyone(s) for s in self.sentinels):
            if time.monotonic() > deadline:
                raise RuntimeError("the sentinels did not discover the replica and each other")
            time.sleep(0.1)
        self.wait_replica_synced(self.replica.port, timeout)
        return self

    def _sees_everyone(self, sentinel):
        try:
            with sentinel.client() as client:
                state = client.sentinel_master(self.service)
        except (redis.RedisError, OSError):
            return False
        return state["num-slaves"] >= 1 and state["num-other-sentinels"] >= 2

    def wait_replica_synced(self, port, timeout=20.0):
        """Wait until the server on ``port`` is a replica with its link to the master up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.servers.get(port)
            try:
                with server.client(decode_responses=True, socket_timeout=1) as client:
                    info = client.info("replication")
                if info.get("role") == "slave" and info.get("master_link_status") == "up":
                    return
            except (redis.RedisError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the replica on port {port} did not sync")

    def master_port(self):
        """The master's port as the first sentinel that answers names it."""
        for sentinel in self.sentinels:
            try:
                with sentinel.client() as client:
                    return int(client.sentinel_get_master_addr_by_name(self.service)[1])
            except (redis.RedisError, OSError, TypeError):
                continue
        raise RuntimeError("no sentinel answers")

    def wait_master(self, not_port, timeout=20.0):
        """Wait until every sentinel names a master other than ``not_port``, and it says
        ``role:master``; return its port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ports = set()
            for sentinel in self.sentinels:
                try:
                    with sentinel.client() as client:
                        ports.add(int(client.sentinel_get_master_addr_by_name(self.service)[1]))
                except (redis.RedisError, OSError, TypeError):
                    ports.add(None)
            if len(ports) == 1 and None not in ports and not_port not in ports:
                port = ports.pop()
                try:
                    with self.servers[port].client(socket_timeout=1) as client:
                        if client.execute_command("ROLE")[0] in (b"master", "master"):
                            return port
                except (redis.RedisError, OSError):
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"the sentinels did not promote a master other than {not_port}")

    def failover(self):
        """``SENTINEL FAILOVER``; return the old master's port (see :meth:`wait_master`)."""
        old = self.master_port()
        with self.sentinels[0].client() as client:
            client.execute_command("SENTINEL", "FAILOVER", self.service)
        return old

    def kill_master(self):
        """SIGKILL the current master by its pid; return its port."""
        port = self.master_port()
        self.servers[port].kill()
        return port

    def restart_as_replica(self, port):
        """Start the killed server on ``port`` again; the sentinels make it a replica."""
        self.servers[port].start()

    def cleanup(self):
        for sentinel in self.sentinels:
            sentinel.stop()
        self.master.cleanup()
        self.replica.cleanup()
        shutil.rmtree(self._dir, ignore_errors=True)


class _Node(RedisServer):
    """A private ``redis-server``, optionally a replica (``--replicaof``) and with a
    password (``--requirepass``, and ``--masterauth`` for when it is a replica)."""

    def __init__(self, replicaof=None, password=None):
        super().__init__()
        self.replicaof = replicaof
        self.password = password

    @property
    def url(self):
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def extra_args(self):
        args = []
        if self.replicaof:
            args += ["--replicaof", "127.0.0.1", str(self.replicaof)]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        return args
