"""Classic pub/sub (PUBLISH/SUBSCRIBE) against sharded pub/sub (SPUBLISH/SSUBSCRIBE) on one
channel of a real Redis Cluster: what each costs the nodes, how fast it goes, how late.

    .venv/bin/python bench/cluster_pubsub.py                      # 3 masters, no replicas
    .venv/bin/python bench/cluster_pubsub.py --replicas 1 --rounds 3

A private cluster (tests/support/cluster.py: ``--masters`` masters with ``--replicas``
replicas each, on loopback) is formed once; the rounds then alternate the two modes, the
order swapped every round. In each mode:

* ``--subscribers`` connections subscribe to the channel: classic ones spread over every
  node (as replicas of the service pick a node each), sharded ones over the nodes of the
  channel's shard (the only nodes that carry it);
* *throughput*: one connection on the channel's master (the same node in both modes) sends
  ``--messages`` payloads of ``--payload`` bytes, pipelined by 100, as fast as it can; the
  time runs until every subscriber has every message. Measured beside it: each node's CPU
  time (``INFO cpu``, user + sys), the cluster-bus messages (``CLUSTER INFO`` counters)
  and the bytes on every cluster-bus connection (``ss -ti``, the kernel's ``bytes_sent``);
* *latency*: ``--paced`` messages at ``--rate`` per second, each stamped with the time it was
  written; the delay until each subscriber read it (p50, p99, max over all subscribers).

Readers and the publisher are raw sockets (RESP2) in threads of this process, counting
messages without parsing, so the client side costs little beside the servers.
"""

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.cluster import ClusterDeployment  # noqa: E402

CHANNEL = "greentic:webchat:notify"
BATCH = 100


def command(*parts):
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        part = part if isinstance(part, bytes) else str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def connect(port):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Subscriber(threading.Thread):
    """Counts ``message``/``smessage`` replies on one connection; in the paced phase also
    reads the stamp of each and records its delay."""

    MARK = b"message\r\n$"
    STAMP = re.compile(rb"T(\d{19})")

    def __init__(self, port, sharded):
        super().__init__(daemon=True)
        self.sock = connect(port)
        verb = "SSUBSCRIBE" if sharded else "SUBSCRIBE"
        self.sock.sendall(command(verb, CHANNEL))
        reply = self.sock.recv(4096)
        if b"subscribe" not in reply:
            raise RuntimeError(f"{verb} on {port}: {reply!r}")
        self.count = 0
        self.delays = []
        self.timing = False
        self.done = threading.Event()
        self.target = None
        self.closed = False

    def run(self):
        tail = b""
        try:
            while True:
                data = self.sock.recv(1 << 20)
                if not data:
                    self.closed = True
                    return
                now = time.time_ns()
                chunk = tail + data
                self.count += chunk.count(self.MARK)
                if self.timing:
                    self.delays.extend((now - int(m)) / 1e6 for m in self.STAMP.findall(chunk))
                # Keep a tail shorter than either pattern: never counted twice.
                tail = chunk[-(len(self.MARK) - 1):] if not self.timing else b""
                if self.target is not None and self.count >= self.target:
                    self.done.set()
        except OSError:
            return

    def close(self):
        self.sock.close()


def info_cpu(port):
    with connect(port) as sock:
        sock.sendall(command("INFO", "cpu"))
        text = read_bulk(sock)
    values = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return float(values["used_cpu_user"]) + float(values["used_cpu_sys"])


def cluster_counters(port):
    with connect(port) as sock:
        sock.sendall(command("CLUSTER", "INFO"))
        text = read_bulk(sock)
    values = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key: int(value) for key, value in values.items()
            if key.startswith("cluster_stats_messages_") and value.strip().isdigit()}


def read_bulk(sock):
    data = b""
    while True:
        data += sock.recv(65536)
        header, _, rest = data.partition(b"\r\n")
        if header.startswith(b"$") and len(rest) >= int(header[1:]) + 2:
            return rest[:int(header[1:])].decode()


def bus_bytes(bus_ports):
    """Bytes sent so far on every established connection to or from a bus port."""
    out = subprocess.run(["ss", "-tinH", "state", "established"], capture_output=True,
                         text=True, check=True).stdout
    total, current = 0, None
    for line in out.splitlines():
        if not line.startswith(("\t", " ")):
            fields = line.split()
            ports = {int(address.rpartition(":")[2]) for address in fields[-2:]}
            current = bool(ports & bus_ports)
            continue
        if current:
            match = re.search(r"bytes_sent:(\d+)", line)
            if match:
                total += int(match.group(1))
    return total


def shard_nodes(deployment, slot_owner):
    """The ports of the master ``slot_owner`` and its replicas."""
    with deployment.node(slot_owner).client(decode_responses=True) as client:
        shards = client.execute_command("CLUSTER", "SHARDS")
    for shard in shards:
        ports = [node["port"] for node in shard["nodes"]]
        if slot_owner in ports:
            return ports
    raise RuntimeError("no shard holds the channel's master")


def channel_master(deployment):
    with deployment.nodes[0].client(decode_responses=True) as client:
        slot = client.execute_command("CLUSTER", "KEYSLOT", CHANNEL)
        for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(master[1])
    raise RuntimeError("no master for the channel's slot")


def publish_all(port, verb, payloads):
    with connect(port) as sock:
        for start in range(0, len(payloads), BATCH):
            batch = payloads[start:start + BATCH]
            sock.sendall(b"".join(command(verb, CHANNEL, p) for p in batch))
            replies = 0
            while replies < len(batch):
                replies += sock.recv(65536).count(b"\r\n")


def run_mode(deployment, mode, args, master, bus_ports):
    sharded = mode == "sharded"
    verb = "SPUBLISH" if sharded else "PUBLISH"
    targets = shard_nodes(deployment, master) if sharded else deployment.ports
    subscribers = [Subscriber(targets[i % len(targets)], sharded)
                   for i in range(args.subscribers)]
    for subscriber in subscribers:
        subscriber.start()
    try:
        filler = b"x" * max(0, args.payload - 1)
        payloads = [b"m" + filler] * args.messages
        for subscriber in subscribers:
            subscriber.target = args.messages
        cpu_before = {port: info_cpu(port) for port in deployment.ports}
        bus_before = {port: cluster_counters(port) for port in deployment.ports}
        bytes_before = bus_bytes(bus_ports)
        started = time.perf_counter()
        publish_all(master, verb, payloads)
        for subscriber in subscribers:
            if not subscriber.done.wait(120):
                raise RuntimeError(f"{mode}: a subscriber got {subscriber.count} of "
                                   f"{args.messages} (connection closed by Redis: "
                                   f"{subscriber.closed})")
        seconds = time.perf_counter() - started
        bytes_after = bus_bytes(bus_ports)
        cpu = {port: info_cpu(port) - cpu_before[port] for port in deployment.ports}
        bus = {}
        for port in deployment.ports:
            after = cluster_counters(port)
            for key, value in after.items():
                bus[key] = bus.get(key, 0) + value - bus_before[port].get(key, 0)
        # Paced: stamped payloads, one at a time.
        for subscriber in subscribers:
            subscriber.count, subscriber.target = 0, None
            subscriber.timing = True
        with connect(master) as sock:
            period = 1.0 / args.rate
            next_at = time.perf_counter()
            for _ in range(args.paced):
                stamp = b"T%019d" % time.time_ns()
                sock.sendall(command(verb, CHANNEL, stamp + filler[:max(0, args.payload - 20)]))
                sock.recv(64)
                next_at += period
                pause = next_at - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
        deadline = time.monotonic() + 10
        while any(s.count < args.paced for s in subscribers) and time.monotonic() < deadline:
            time.sleep(0.01)
        delays = sorted(d for s in subscribers for d in s.delays)
    finally:
        for subscriber in subscribers:
            subscriber.close()
    return {
        "throughput": args.messages / seconds,
        "cpu": cpu,
        "bus_messages": bus.get("cluster_stats_messages_sent", 0),
        "bus_publish": bus.get("cluster_stats_messages_publish_sent", 0)
        + bus.get("cluster_stats_messages_publishshard_sent", 0),
        "bus_bytes": bytes_after - bytes_before,
        "p50": delays[len(delays) // 2], "p99": delays[int(len(delays) * 0.99)],
        "max": delays[-1], "delays": len(delays),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masters", type=int, default=3, help="masters in the cluster")
    parser.add_argument("--replicas", type=int, default=0, help="replicas of each master")
    parser.add_argument("--subscribers", type=int, default=4, help="subscriber connections")
    parser.add_argument("--messages", type=int, default=50_000, help="messages per round")
    parser.add_argument("--payload", type=int, default=200, help="bytes per message")
    parser.add_argument("--paced", type=int, default=1000, help="messages timed one by one")
    parser.add_argument("--rate", type=float, default=500.0, help="paced messages per second")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both modes")
    parser.add_argument("--node-timeout", type=int, default=15000,
                        help="cluster-node-timeout in ms (Redis's default: 15000)")
    args = parser.parse_args()
    load_start = os.getloadavg()
    deployment = ClusterDeployment(masters=args.masters, replicas=args.replicas,
                                   node_timeout_ms=args.node_timeout).start()
    try:
        master = channel_master(deployment)
        bus_ports = {node.bus_port for node in deployment.nodes}
        results = {"classic": [], "sharded": []}
        for round_ in range(args.rounds):
            modes = ("classic", "sharded") if round_ % 2 == 0 else ("sharded", "classic")
            for mode in modes:
                results[mode].append(run_mode(deployment, mode, args, master, bus_ports))
    finally:
        deployment.cleanup()
    load_end = os.getloadavg()
    print(f"{args.masters} masters x {1 + args.replicas} nodes, {args.subscribers} "
          f"subscribers, {args.messages} messages of {args.payload} B per round (pipelined by "
          f"{BATCH}), {args.paced} paced at {args.rate:g}/s, {args.rounds} interleaved rounds, "
          f"cluster-node-timeout {args.node_timeout} ms; "
          f"load average {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end")
    for mode, rounds in results.items():
        print(f"\n{mode} ({'SPUBLISH/SSUBSCRIBE' if mode == 'sharded' else 'PUBLISH/SUBSCRIBE'})")
        for n, r in enumerate(rounds, 1):
            per_10k = {port: cpu / args.messages * 10_000 for port, cpu in r["cpu"].items()}
            total = sum(per_10k.values())
            print(f"  round {n}: {r['throughput']:9,.0f} msg/s; node CPU per 10k messages: "
                  f"total {total * 1000:6.1f} ms, by node (ms) "
                  + " ".join(f"{v * 1000:.1f}" for v in per_10k.values())
                  + f"; bus: {r['bus_publish'] / args.messages:.2f} publish messages and "
                  f"{r['bus_bytes'] / args.messages:,.0f} bytes per message; paced delay "
                  f"p50 {r['p50']:.3f} ms, p99 {r['p99']:.3f} ms, max {r['max']:.3f} ms "
                  f"({r['delays']} deliveries)")
        cpu = statistics.median(sum(r["cpu"].values()) for r in rounds) / args.messages
        print(f"  median throughput {statistics.median(r['throughput'] for r in rounds):,.0f}"
              f" msg/s, median node CPU per 10k messages {cpu * 1e7:.1f} ms")


if __name__ == "__main__":
    main()
