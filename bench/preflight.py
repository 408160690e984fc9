"""What strict startup's proof costs: ``notifier.preflight.prove`` against the PING it replaced.

    .venv/bin/python bench/preflight.py [--url redis://127.0.0.1:6379/0] [--rounds 30]

Interleaved rounds (one PING-only check, then one proof: PING, three SUBSCRIBEs, a PUBLISH
round trip), each on a fresh connection as at startup; prints the medians of wall and CPU
time and the load average before and after. Uses a fresh channel name; PUBLISHes only on a
probe channel nobody else listens on.
"""

import argparse
import os
import pathlib
import statistics
import sys
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchat.settings")

import django  # noqa: E402

django.setup()

from notifier.preflight import prove  # noqa: E402
from notifier.transport import RedisTransport  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0", help="Redis to measure on")
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds")
    options = parser.parse_args()
    transport = RedisTransport(options.url)
    channel = f"bench:preflight:{uuid.uuid4()}"

    def ping_only():
        client = transport.client(asynchronous=False, connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()

    contenders = {"PING only": ping_only, "prove()": lambda: prove(transport, channel, 2.0)}
    times = {name: [] for name in contenders}
    print("load average before:", pathlib.Path("/proc/loadavg").read_text().strip())
    for _ in range(options.rounds):
        for name, run in contenders.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    print("load average after: ", pathlib.Path("/proc/loadavg").read_text().strip())
    for name, samples in times.items():
        print(f"{name:10} wall median {statistics.median(s[0] for s in samples) * 1000:.2f} ms, "
              f"CPU median {statistics.median(s[1] for s in samples) * 1000:.2f} ms "
              f"({len(samples)} rounds)")


if __name__ == "__main__":
    main()
