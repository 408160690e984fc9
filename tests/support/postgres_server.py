"""A private PostgreSQL server for tests that stop or restart the database.

The shared server on 127.0.0.1:5432 belongs to everyone: a test that restarts a database
starts its own, in a temporary directory, on a free port::

    server = PostgresServer.start(self)    # initdb + pg_ctl start; stopped in cleanup
    server.url                              # postgresql://postgres@127.0.0.1:<port>/postgres
    server.restart()                        # pg_ctl restart -m fast

PostgreSQL refuses to run as root: when the tests run as root, its commands run as the
``postgres`` user (``runuser``).
"""

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

BIN = Path(os.environ.get("TEST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))


def postgres_binaries_missing() -> str | None:
    """None if this machine can run a private PostgreSQL, else why not (for ``skipTest``)."""
    if not (BIN / "initdb").exists():
        return f"no PostgreSQL binaries in {BIN} (set TEST_POSTGRES_BIN)"
    if os.geteuid() == 0 and not shutil.which("runuser"):
        return "running as root without runuser: PostgreSQL refuses to run as root"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    def __init__(self, directory: Path, port: int):
        self.directory = directory
        self.data = directory / "data"
        self.port = port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    @classmethod
    def start(cls, testcase):
        directory = Path(tempfile.mkdtemp(prefix="webchat-pg-"))
        server = cls(directory, _free_port())
        testcase.addCleanup(shutil.rmtree, directory, True)
        if os.geteuid() == 0:
            shutil.chown(directory, "postgres")
        server._run("initdb", "-D", server.data, "-A", "trust", "-U", "postgres")
        server._ctl("start")
        testcase.addCleanup(server.stop)
        return server

    def _run(self, *args, timeout=120):
        command = [str(BIN / args[0]), *map(str, args[1:])]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode:
            raise RuntimeError(f"{args[0]} failed: {done.stdout[-1000:]}{done.stderr[-2000:]}")
        return done.stdout

    def _ctl(self, action, *extra):
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        return self._run("pg_ctl", "-D", self.data, "-o", options, "-w",
                         "-l", self.directory / "log", action, *extra)

    def restart(self):
        """``pg_ctl restart -m fast``: every connection is cut, then the server is back."""
        self._ctl("restart", "-m", "fast")

    def stop(self):
        if (self.data / "postmaster.pid").exists():
            self._ctl("stop", "-m", "immediate")
