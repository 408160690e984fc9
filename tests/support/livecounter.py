"""The tutorial's live counter project (tests/livecounter) served by real ASGI servers.

::

    site = LiveCounterSite(self, venv, redis_url)     # a database and a channel of its own
    site.migrate()
    site.start("gunicorn-preload", "uvicorn", "daphne", "hypercorn")
    asyncio.run(site.every_bump_reaches_every_socket("c1", bumps=5))

Each server gets a listening socket bound here (``--fd`` / ``fd://``: no port race) and
runs from ``venv``'s ``bin/``, in the project's folder, with ``notifier`` from that venv.
Servers are stopped by pid in the test's cleanup.
"""

import asyncio
import json
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import websockets

from .package import PROJECT, project_env
from .processes import stop_process
from .replicas import listening_socket

APP = "livecounter.asgi:application"
_SCRAPE = """
import django
django.setup()
from prometheus_client import CollectorRegistry, generate_latest
from notifier.metrics import NotifierCollector
registry = CollectorRegistry()
registry.register(NotifierCollector())
print(generate_latest(registry).decode())
"""
STARTUP_TIMEOUT = 60.0  # seconds; the machine is shared
FRAME_TIMEOUT = 10.0


def server_command(kind, venv, fd):
    """The command line that serves the project with server ``kind`` on socket ``fd``."""
    bin_ = venv / "bin"
    if kind == "gunicorn-preload":
        return [str(bin_ / "gunicorn"), "--preload", "--workers", "2",
                "--worker-class", "uvicorn.workers.UvicornWorker", "--graceful-timeout", "5",
                "--bind", f"fd://{fd}", APP]
    if kind == "uvicorn":
        return [str(bin_ / "uvicorn"), "--fd", str(fd), "--ws", "wsproto", APP]
    if kind == "uvicorn-workers":
        return [str(bin_ / "uvicorn"), "--fd", str(fd), "--ws", "wsproto", "--workers", "2",
                APP]
    if kind == "daphne":
        return [str(bin_ / "daphne"), "--fd", str(fd), APP]
    if kind == "hypercorn":
        return [str(bin_ / "hypercorn"), "--bind", f"fd://{fd}", APP]
    raise ValueError(f"unknown server {kind!r}")


class Server:
    def __init__(self, kind, process, port, log_path):
        self.kind, self.process, self.port, self.log_path = kind, process, port, log_path

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"

    def stop(self, timeout=15):
        """SIGTERM by pid, SIGKILL after ``timeout`` s."""
        stop_process(self.process, timeout)


class LiveCounterSite:
    """One SQLite database and one backplane channel, shared by the servers started."""

    def __init__(self, test_case, venv, redis_url):
        self.venv = Path(venv)
        self.directory = Path(tempfile.mkdtemp(prefix="livecounter-"))
        self.channel = f"test:livecounter:{uuid.uuid4()}"
        self.env = project_env(LIVECOUNTER_DB=str(self.directory / "db.sqlite3"),
                               REDIS_URL=redis_url, BACKPLANE_CHANNEL=self.channel)
        self.servers = []
        test_case.addCleanup(self.stop)

    def python(self, *args, timeout=300):
        """Run the venv's python in the project's folder; return (code, output)."""
        completed = subprocess.run([str(self.venv / "bin" / "python"), *args], cwd=PROJECT,
                                   env=self.env, capture_output=True, text=True,
                                   timeout=timeout)
        return completed.returncode, completed.stdout + completed.stderr

    def manage(self, *args, timeout=300):
        code, output = self.python("manage.py", *args, timeout=timeout)
        if code != 0:
            raise AssertionError(f"manage.py {' '.join(args)} exited {code}:\n{output}")
        return output

    def migrate(self):
        self.manage("migrate", "--noinput", "-v", "0")

    def scrape_metrics(self):
        """One scrape of the backplane's collector (the ``[prometheus]`` extra)."""
        code, output = self.python("-c", _SCRAPE)
        if code != 0:
            raise AssertionError(f"scraping notifier.metrics failed:\n{output}")
        return output

    def spawn(self, kind):
        """Start one server (not waiting for it)."""
        sock = listening_socket()
        log_path = self.directory / f"{kind}-{len(self.servers)}.log"
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                server_command(kind, self.venv, sock.fileno()), cwd=PROJECT, env=self.env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(sock.fileno(),),
            )
        port = sock.getsockname()[1]
        sock.close()
        server = Server(kind, process, port, log_path)
        self.servers.append(server)
        return server

    def start(self, *kinds):
        """Start the servers and wait until each answers HTTP."""
        started = [self.spawn(kind) for kind in kinds]
        for server in started:
            self.wait_until_up(server)
        return started

    def wait_until_up(self, server):
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise AssertionError(f"{server.kind} exited ({server.process.returncode}):\n"
                                     + server.log()[-4000:])
            try:
                self.http(server, "GET", "/counters/up", timeout=2)
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"{server.kind} did not answer within {STARTUP_TIMEOUT} s:\n"
                             + server.log()[-4000:])

    def http(self, server, method, path, timeout=10):
        request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}",
                                         method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def stop(self):
        for server in self.servers:
            server.stop()

    def logs(self):
        return "\n".join(f"--- {server.kind} :{server.port}\n{server.log()[-3000:]}"
                         for server in self.servers)

    # The scenario

    async def open_sockets(self, counter, per_server=2, pids_per_server=None):
        """Open sockets on every server; for a server with several worker processes, open
        more, 8 at once (up to 64), until ``pids_per_server[kind]`` distinct processes hold
        one. Returns ``[(server, websocket, pid)]``; each socket has read its first frame.

        At once, because workers share one listening socket and the kernel tends to hand
        one-by-one connects to the same idle worker: a burst is what spreads real traffic.
        """
        pids_per_server = pids_per_server or {}
        sockets = []
        for server in self.servers:
            want = pids_per_server.get(server.kind, 1)
            pids = set()
            opened = 0
            while opened < per_server or (len(pids) < want and opened < 64):
                batch = per_server if opened < per_server else 8
                for ws, pid in await asyncio.gather(
                    *(self._open_socket(server, counter) for _ in range(batch))
                ):
                    pids.add(pid)
                    sockets.append((server, ws, pid))
                opened += batch
            if len(pids) < want:
                raise AssertionError(f"{server.kind}: {opened} sockets all went to {pids}")
        return sockets

    async def _open_socket(self, server, counter):
        """One socket on ``server``, after its first frame: ``(websocket, pid)``."""
        ws = await websockets.connect(
            f"ws://127.0.0.1:{server.port}/ws/counters/{counter}", open_timeout=10
        )
        first = json.loads(await asyncio.wait_for(ws.recv(), FRAME_TIMEOUT))
        return ws, first["pid"]

    async def every_bump_reaches_every_socket(self, counter, bumps=5, pids_per_server=None):
        """Open sockets on every server, then bump ``bumps`` times, through each server in
        turn; after each bump every socket must send exactly the new value. Returns the
        sockets' pids by server kind."""
        sockets = await self.open_sockets(counter, pids_per_server=pids_per_server)
        try:
            for value in range(1, bumps + 1):
                server = self.servers[(value - 1) % len(self.servers)]
                answer = await asyncio.to_thread(
                    self.http, server, "POST", f"/counters/{counter}/increment")
                assert answer["value"] == value, answer
                for holder, ws, pid in sockets:
                    try:
                        frame = json.loads(await asyncio.wait_for(ws.recv(), FRAME_TIMEOUT))
                    except TimeoutError:
                        raise AssertionError(
                            f"bump {value} (through {server.kind}) did not reach a socket on "
                            f"{holder.kind} (pid {pid}) within {FRAME_TIMEOUT} s\n"
                            + self.logs()) from None
                    assert frame["value"] == value, (holder.kind, pid, frame, value)
        finally:
            for _, ws, _ in sockets:
                await ws.close()
        pids = {}
        for server, _, pid in sockets:
            pids.setdefault(server.kind, set()).add(pid)
        return pids
