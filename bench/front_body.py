"""What a huge request body costs a replica, sent to it directly and through the nginx front.

    .venv/bin/python bench/front_body.py                 # 1 GiB, both paths, both framings
    .venv/bin/python bench/front_body.py --size 268435456 --only front

Starts two daphne replicas in production settings (SQLite, the shared Redis) with the front
of ``scripts/cluster --production`` (tests/support/nginx.py), then POSTs ``--size`` bytes of
zeros, streamed (tests/support/bodies.py), with no credentials to
``/v3/directline/tokens/generate`` and to ``/healthz``, with ``Content-Length`` and chunked.
For each, prints the answer, the bytes sent, the time, and the receiving replica's RSS
before, at its peak (sampled every 20 ms) and after. Results: docs/deploy.md.
"""

import argparse
import os
import secrets
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchat.settings")

import django  # noqa: E402

django.setup()

from tests.support.bodies import stream_body  # noqa: E402
from tests.support.replicas import Cluster  # noqa: E402

MIB = 1024 * 1024
PRODUCTION = {
    "DEBUG": "0",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "WEBCHAT_TOKEN_SIGNING_KEY": secrets.token_urlsafe(32),
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "CORS_ALLOWED_ORIGINS": "https://www.example.com",
}


def rss(pid) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class PeakRSS:
    """Samples a pid's RSS on a thread while the body goes by."""

    def __init__(self, pid):
        self.pid, self.peak, self._stop = pid, rss(pid), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss(self.pid))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024 * MIB, help="Body bytes (1 GiB).")
    parser.add_argument("--only", choices=("direct", "front"), help="One path only.")
    args = parser.parse_args()
    cluster = Cluster(database="sqlite", extra_env=PRODUCTION, with_front=True).start(2)
    try:
        pid = cluster.replicas[0].process.pid
        # The front first: a direct body leaves the replica's RSS high for good.
        targets = {"front": (cluster.url(0), cluster.front.ssl_context()),
                   "direct": (cluster.replicas[0].http_url, None)}
        print(f"body {args.size / MIB:.0f} MiB; replica 0 pid {pid}")
        print("target  path                            framing  status  sent MiB  seconds  "
              "RSS MiB before/peak/after")
        for name, (url, context) in targets.items():
            if args.only and name != args.only:
                continue
            for path in ("/v3/directline/tokens/generate", "/healthz"):
                for chunked in (False, True):
                    time.sleep(1)
                    before = rss(pid)
                    started = time.monotonic()
                    with PeakRSS(pid) as peak:
                        status, _, sent = stream_body(url, path, args.size, chunked=chunked,
                                                      context=context, timeout=600)
                    seconds = time.monotonic() - started
                    time.sleep(1)
                    print(f"{name:7} {path:31} {'chunked' if chunked else 'length ':8} "
                          f"{status:6}  {sent / MIB:8.1f}  {seconds:7.2f}  "
                          f"{before / MIB:.0f}/{peak.peak / MIB:.0f}/{rss(pid) / MIB:.0f}",
                          flush=True)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
