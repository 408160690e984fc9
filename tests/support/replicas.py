"""Real daphne replicas for integration tests: N processes, one database, one Redis channel.

Usage, from any TestCase (nothing here touches the test database)::

    cluster = start_cluster(self, replicas=2, database="sqlite")   # or "postgres"
    secret = cluster.create_tenant("acme")        # manage.py create_tenant, on the shared DB
    status, body = cluster.http(0, "POST", "/v3/directline/tokens/generate", secret=secret)
    url = cluster.replicas[1].ws_url + "/v3/directline/conversations/..."

With ``with_front=True`` (or a dict of limits, see deploy/nginx.py) nginx runs in front of
the replicas as in production (tests/support/nginx.py): ``cluster.url(i)`` is then replica
``i`` through the proxy (TLS), ``cluster.front`` the proxy; ``cluster.http`` and
``replicas[i].http_url`` still go to the replica itself.

What it does:
- the database: a SQLite file in a temporary directory, or a uniquely named PostgreSQL
  database on 127.0.0.1:5432 (user postgres, trust auth) created here and dropped after
  (``postgres_unavailable()`` says why one cannot be had, for ``skipTest``);
- ``manage.py migrate`` once, then each replica: ``daphne`` as a subprocess with
  ``DATABASE_URL``, ``WEBCHAT_NOTIFIER_BACKEND=redis``, ``REDIS_URL``, a unique
  ``WEBCHAT_NOTIFIER_CHANNEL`` (``test:<uuid>``), serving a listening socket bound here on a
  free port and handed over with ``--fd`` (no window where another process takes the port);
- waits until each answers HTTP, failing with the tail of its log if it exits first;
- cleanup (registered with ``addCleanup``, or ``stop()``): SIGTERM each replica by pid, SIGKILL
  after 10 s, drop the PostgreSQL database, remove the temporary directory.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .processes import stop_process
from .redis_server import SHARED_URL as REDIS_URL
from .redis_server import redis_answers

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
STARTUP_TIMEOUT = 60  # seconds; generous, the machine is shared


def redis_unavailable(url=REDIS_URL) -> str | None:
    """None if Redis answers at ``url``, else why not (for ``skipTest``)."""
    return None if redis_answers(url) else f"Redis does not answer at {url}"


def postgres_unavailable() -> str | None:
    """None if PostgreSQL answers at ``POSTGRES_ADMIN_URL``, else why not."""
    import psycopg

    try:
        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=2).close()
    except Exception as exc:
        return f"PostgreSQL does not answer at {POSTGRES_ADMIN_URL}: {exc}"
    return None


def _postgres(sql: str, admin_url: str):
    import psycopg

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


def listening_socket() -> socket.socket:
    """A TCP socket listening on 127.0.0.1, on a port the kernel picked."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@dataclass
class Replica:
    index: int
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log_tail(self, lines=40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self, timeout=10):
        """SIGKILL by pid (a crash: no shutdown hook runs) and wait for the exit."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout)

    def stop(self, timeout=10):
        """SIGTERM, then SIGKILL after ``timeout`` seconds; by pid, this process only."""
        stop_process(self.process, timeout)


@dataclass
class Cluster:
    """Replicas sharing one database and one notifier channel. See the module docstring."""

    database: str = "sqlite"
    redis_url: str = REDIS_URL
    extra_env: dict = field(default_factory=dict)
    replicas: list = field(default_factory=list)
    with_front: bool | dict = False
    #: The PostgreSQL server the database is created on (a private one: postgres_server.py).
    postgres_admin_url: str = ""

    def __post_init__(self):
        if self.database not in {"sqlite", "postgres"}:
            raise ValueError(f"database must be 'sqlite' or 'postgres', not {self.database!r}")
        self.front = None
        self.directory = Path(tempfile.mkdtemp(prefix="webchat-replicas-"))
        self.channel = f"test:{uuid.uuid4()}"
        self.postgres_name = None
        if self.database == "postgres":
            self.postgres_name = f"webchat_test_{uuid.uuid4().hex[:12]}"
            self.postgres_admin_url = self.postgres_admin_url or POSTGRES_ADMIN_URL
            base = self.postgres_admin_url.rsplit("/", 1)[0]
            self.database_url = f"{base}/{self.postgres_name}"
        else:
            self.database_url = f"sqlite:///{self.directory / 'db.sqlite3'}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "webchat.settings",
            "DATABASE_URL": self.database_url,
            "WEBCHAT_NOTIFIER_BACKEND": "redis",
            "REDIS_URL": self.redis_url,
            "WEBCHAT_NOTIFIER_CHANNEL": self.channel,
            "MEDIA_ROOT": str(self.directory / "media"),
            "LOG_LEVEL": os.environ.get("REPLICA_LOG_LEVEL", "WARNING"),
            "PYTHONUNBUFFERED": "1",
            # Off unless a test asks (extra_env): the suite posts faster than any client.
            "WEBCHAT_LIMITS_ENABLED": "0",
            **self.extra_env,
        }
        # Settings meant for the test process only must not leak into the replicas.
        self.env.pop("SQLITE_TEST_NAME", None)

    def start(self, count: int):
        """Create and migrate the database, start ``count`` replicas, wait for each."""
        try:
            if self.postgres_name:
                _postgres(f'CREATE DATABASE "{self.postgres_name}"', self.postgres_admin_url)
            self.manage("migrate", "--noinput")
            for _ in range(count):
                self._spawn()
            for replica in self.replicas:
                self._wait_until_up(replica)
            if self.with_front is not False:
                from .nginx import Front

                options = self.with_front if isinstance(self.with_front, dict) else {}
                addresses = [f"127.0.0.1:{replica.port}" for replica in self.replicas]
                self.front = Front(addresses, **options).start()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self):
        index = len(self.replicas)
        log_path = self.directory / f"replica-{index}.log"
        sock = listening_socket()
        try:
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    [
                        sys.executable, "-m", "daphne",
                        "--fd", str(sock.fileno()),
                        "--ping-interval", "20", "--ping-timeout", "30",
                        "webchat.asgi:application",
                    ],
                    cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, pass_fds=(sock.fileno(),),
                )  # fmt: skip
            port = sock.getsockname()[1]
        finally:
            sock.close()  # daphne holds its own copy
        self.replicas.append(Replica(index, port, process, log_path))

    def _wait_until_up(self, replica: Replica):
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if replica.process.poll() is not None:
                raise RuntimeError(
                    f"replica {replica.index} exited with {replica.process.returncode}:\n"
                    + replica.log_tail()
                )
            try:
                # Any HTTP answer means the replica serves; the kernel queues connections on
                # the listening socket until daphne accepts them.
                urllib.request.urlopen(replica.http_url + "/v3/directline/ping", timeout=2)
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"replica {replica.index} did not answer within {STARTUP_TIMEOUT} s:\n"
                        + replica.log_tail()
                    ) from None
                time.sleep(0.1)

    def stop(self):
        """Stop the front and every replica, drop the PostgreSQL database, remove the
        temporary files."""
        if self.front is not None:
            self.front.stop()
            self.front = None
        for replica in self.replicas:
            replica.stop()
        if self.postgres_name:
            try:
                _postgres(f'DROP DATABASE IF EXISTS "{self.postgres_name}" WITH (FORCE)',
                          self.postgres_admin_url)
            finally:
                self.postgres_name = None
        shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, index) -> str:
        """Where clients reach replica ``index``: through the front when there is one."""
        if self.front is not None:
            return self.front.pinned_url(index)
        return self.replicas[index].http_url

    def manage(self, *args: str) -> str:
        """Run ``manage.py`` against the shared database; return its stdout."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def create_tenant(self, name: str | None = None) -> str:
        """Create a tenant on the shared database; return its Direct Line secret."""
        output = self.manage("create_tenant", name or f"tenant-{uuid.uuid4().hex[:8]}")
        return output.strip().splitlines()[-1]

    def http(self, index, method, path, body=None, *, secret=None, token=None, timeout=30):
        """One JSON request to replica ``index``; return ``(status, decoded body or None)``."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.replicas[index].http_url + path, data=data, method=method
        )
        if body is not None:
            request.add_header("Content-Type", "application/json")
        if secret or token:
            request.add_header("Authorization", f"Bearer {secret or token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        return status, (json.loads(raw) if raw else None)


def start_cluster(testcase, replicas=2, database="sqlite", **kwargs) -> Cluster:
    """Start a cluster whose cleanup is registered on ``testcase`` (a test or a class)."""
    cluster = Cluster(database=database, **kwargs)
    # Registered first: a failed start still removes what it made.
    add = getattr(testcase, "addClassCleanup", None) if isinstance(testcase, type) else None
    (add or testcase.addCleanup)(cluster.stop)
    return cluster.start(replicas)
