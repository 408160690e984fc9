"""Subprocesses for tests: ``manage.py`` commands and daphne, with their output read by lines.

::

    proc = ManagedProcess.manage(self, "run_backplane_listener", "-v", "2", env={...})
    proc.wait_for_line(lambda line: line.startswith("connected:"), timeout=15)
    proc.terminate()                      # SIGTERM; returns the exit code
    proc.output()                         # everything read so far (stdout and stderr)

Every process is stopped by pid in the test's cleanup.
"""

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def child_env(**overrides):
    """The environment for a child process: this one's, unbuffered, plus ``overrides``
    (a value of ``None`` removes the variable)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DJANGO_SETTINGS_MODULE": "webchat.settings"}
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


class ManagedProcess:
    """A child process whose stdout and stderr lines are collected by two reader threads."""

    def __init__(self, args, *, env=None):
        self.args = args
        self.lines = queue.Queue()
        self._seen = []
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=env or child_env(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
        )
        self.stdout = []
        self.stderr = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout),
                             daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr),
                             daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @classmethod
    def start_for(cls, test_case, args, *, env=None):
        process = cls(args, env=env)
        test_case.addCleanup(process.kill)
        return process

    @classmethod
    def manage(cls, test_case, *args, env=None):
        """Start ``python manage.py <args>`` for ``test_case`` (stopped in its cleanup)."""
        return cls.start_for(test_case, [PYTHON, "manage.py", *args], env=env)

    def _read(self, stream, sink):
        for line in stream:
            line = line.rstrip("\n")
            sink.append(line)
            self.lines.put(line)

    def wait_for_line(self, predicate, timeout=15.0):
        """Return the first not yet consumed line that satisfies ``predicate``; raise
        ``AssertionError`` with the output so far when none comes within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching line within {timeout} s; output:\n"
                                     + self.output())
            try:
                line = self.lines.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    time.sleep(0.05)  # let the readers drain
                    if self.lines.empty():
                        raise AssertionError(
                            f"process exited ({self.process.returncode}); output:\n"
                            + self.output()
                        ) from None
                continue
            if predicate(line):
                return line

    def wait(self, timeout=15.0):
        """Wait for the exit; return the code (after the readers drained the output)."""
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(2)
        return code

    def terminate(self, sig=signal.SIGTERM, timeout=15.0):
        """Send ``sig`` and return the exit code."""
        self.process.send_signal(sig)
        return self.wait(timeout)

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for reader in self._readers:
            reader.join(2)
        for stream in (self.process.stdout, self.process.stderr):
            stream.close()

    def output(self):
        return "\n".join(["--- stdout", *self.stdout, "--- stderr", *self.stderr])


def stop_process(process, timeout=15.0) -> bool:
    """SIGTERM ``process`` (a ``Popen``) by pid, SIGKILL after ``timeout`` seconds; return
    whether it had to be killed."""
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
        return False
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)
        return True


def run_manage(*args, env=None, timeout=60.0):
    """Run ``python manage.py <args>`` to completion; return ``(code, output, seconds)``."""
    started = time.monotonic()
    completed = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env or child_env(), capture_output=True,
        text=True, timeout=timeout,
    )
    return (completed.returncode, completed.stdout + completed.stderr,
            time.monotonic() - started)
