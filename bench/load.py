"""Load harness: thousands of Direct Line stream sockets on two replicas, three designs.

    .venv/bin/python bench/load.py                         # full run (~8 min), prints the table
    .venv/bin/python bench/load.py --quick                 # small numbers, ~2 min
    .venv/bin/python bench/load.py --write docs/benchmarks.md   # + the docs section and plots

For each design it starts two daphne replicas (``tests/support/replicas.py``) on one shared
database (a SQLite file in WAL mode, or ``--database postgres``) and a private redis-server
(free port, stopped by pid), then, in processes of their own:

* clients (``bench/load_clients.py``, ``--client-procs`` asyncio processes with the
  ``websockets`` package) open ``--sockets`` stream sockets per replica: every conversation
  has ``--fanout`` sockets on each replica, so each activity is one frame per socket, on the
  replica it was posted to and on the other one; each from a loopback address of its own
  among 127.1.x.y, 50 sockets per address and replica (the stream allows 100 per client
  address, ``MAX_SOCKETS_PER_IP``), and the sockets still open after connecting are counted;
* a poster (``bench/load_poster.py``) writes activities through the bot API (tenant secret)
  of both replicas, alternately: a warm-up, then ``--rate`` activities/s for ``--duration``
  seconds (latency: POST to frame on every subscribed socket), then as fast as it can for
  ``--burst`` seconds (throughput: activities whose frames reached every socket, per second);
* then ``--idle`` sockets in all on replica 0 (idle conversations added), with its RSS per
  socket, and a short paced run to see the idle crowd cost nothing to the live ones.

The in-process bot is off (``WEBCHAT_BOT=""``): one activity per POST, one frame per socket.
Redis commands come from ``INFO commandstats`` deltas over the connect and the posting phases.
Designs: ``backplane`` (Redis notifier + process-local layer), ``redis-core`` and
``redis-pubsub`` (memory notifier + channels_redis ``RedisChannelLayer`` /
``RedisPubSubChannelLayer``: the notifier's group send goes through the cross-process layer).
The clients, the poster and Redis share the machine's cores with the replicas; the table
shows what each used.
"""

import argparse
import json
import math
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench import load_report  # noqa: E402
from bench.load_support import (  # noqa: E402
    Window,
    command_counts,
    command_delta,
    cpu_calibration,
    gc_counts,
    gc_delta,
)
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.replicas import Cluster  # noqa: E402

PYTHON = sys.executable
DESIGNS = {
    "backplane": {"WEBCHAT_NOTIFIER_BACKEND": "redis", "CHANNEL_LAYER": "local"},
    "redis-core": {"WEBCHAT_NOTIFIER_BACKEND": "memory", "CHANNEL_LAYER": "redis-core",
                   # Its capacity counts per replica process, not per socket: the default 100
                   # would measure drops under a burst rather than delivery.
                   "CHANNEL_CAPACITY": "10000"},
    "redis-pubsub": {"WEBCHAT_NOTIFIER_BACKEND": "memory", "CHANNEL_LAYER": "redis-pubsub"},
}  # fmt: skip
# Production mode (DEBUG=0, so no per-query debug cursor) with throwaway keys for this run.
PRODUCTION = {
    "DEBUG": "0",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "WEBCHAT_TOKEN_SIGNING_KEY": secrets.token_urlsafe(32),
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "CORS_ALLOWED_ORIGINS": "http://127.0.0.1",
    # With DEBUG off /metrics needs its token (webchat/metrics_access.py); gc_counts sends it.
    "WEBCHAT_METRICS_TOKEN": secrets.token_urlsafe(24),
}
SOCKETS_PER_TENANT = 500  # per replica; the stream allows 1000 (MAX_SOCKETS_PER_TENANT)
# Per client source address and replica; the stream allows 100 (MAX_SOCKETS_PER_IP): the
# clients spread their sockets over loopback addresses (127.0.0.0/8 is all the host's).
SOCKETS_PER_ADDRESS = 50


def source_address(number):
    """The loopback address socket ``number`` (counted per replica) connects from."""
    block = number // SOCKETS_PER_ADDRESS
    return f"127.1.{block // 250}.{block % 250 + 1}"


def say(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class ClientProcess:
    """One ``load_clients.py`` process, driven over its stdin/stdout (JSON lines)."""

    def __init__(self):
        self.process = subprocess.Popen(
            [PYTHON, str(ROOT / "bench" / "load_clients.py")], cwd=ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip

    def send(self, **command):
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def answer(self):
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"client process {self.process.pid} exited")
        return json.loads(line)

    def stop(self):
        if self.process.poll() is None:
            try:
                self.send(cmd="close")
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


def ask_all(clients, **command):
    for client in clients:
        client.send(**command)
    return [client.answer() for client in clients]


class Run:
    """One design's run: its cluster, clients and measurements (see the module docstring)."""

    def __init__(self, design, args, redis_server, workdir):
        self.design, self.args = design, args
        self.redis_server = redis_server
        self.redis = redis.Redis.from_url(redis_server.url)
        self.workdir = workdir / design
        self.workdir.mkdir()
        self.result = {"design": design}
        self.cluster = None
        self.clients = []
        self.per_replica = [0, 0]  # sockets opened so far on each replica

    def run(self):
        args = self.args
        env = {**DESIGNS[self.design], **PRODUCTION, "WEBCHAT_BOT": "", "LOG_LEVEL": "WARNING"}
        if args.database == "sqlite":
            env["SQLITE_SYNCHRONOUS"] = args.sqlite_synchronous
        if args.no_gc_freeze:
            env["WEBCHAT_GC_FREEZE"] = "0"
        say(f"{self.design}: starting redis-backed replicas ({args.database})")
        self.cluster = Cluster(database=args.database, redis_url=self.redis_server.url,
                               extra_env=env).start(2)  # fmt: skip
        try:
            self.clients = [ClientProcess() for _ in range(args.client_procs)]
            self.pids = {f"replica{r.index}": r.process.pid for r in self.cluster.replicas}
            self.pids["redis"] = self.redis_server.pid
            self.phases()
        finally:
            for client in self.clients:
                client.stop()
            self.cluster.stop()
        return self.result

    def seed(self, conversations, sockets_per_conversation, tag):
        tenants = max(1, math.ceil(conversations * sockets_per_conversation / SOCKETS_PER_TENANT))
        out = self.workdir / f"seed-{tag}.json"
        subprocess.run(
            [PYTHON, str(ROOT / "bench" / "load_seed.py"), "--tenants", str(tenants),
             "--conversations", str(conversations), "--prefix", f"{tag}-{uuid.uuid4().hex[:6]}",
             "--out", str(out)],
            cwd=ROOT, env=self.cluster.env, check=True,
        )  # fmt: skip
        return json.loads(out.read_text())

    def connect(self, seed, replicas, fanout):
        """Open ``fanout`` sockets per conversation on each of ``replicas``; return results."""
        sockets = []
        for conversation, _tenant, token in seed["conversations"]:
            for replica in replicas:
                base = self.cluster.replicas[replica].ws_url
                url = f"{base}/v3/directline/conversations/{conversation}/stream"
                url += f"?watermark=&t={token}"
                for _ in range(fanout):
                    address = source_address(self.per_replica[replica])
                    self.per_replica[replica] += 1
                    sockets.append([url, conversation, replica, address])
        shares = [sockets[i :: len(self.clients)] for i in range(len(self.clients))]
        open_before = sum(a["open"] for a in ask_all(self.clients, cmd="counts"))
        before = command_counts(self.redis)
        window = Window(self.pids).start()
        for client, share in zip(self.clients, shares, strict=True):
            client.send(cmd="connect", sockets=share, concurrency=self.args.connect_concurrency)
        answers = [client.answer() for client in self.clients]
        usage = window.stop()
        time.sleep(0.5)  # commands a connect triggers just after the handshake
        delta = self.net(command_delta(before, command_counts(self.redis)), window.seconds + 0.5)
        connected = sum(a["connected"] for a in answers)
        # A refused socket (e.g. 4429, a cap reached) completes its handshake, then closes:
        # count what is still open, so a run never measures fewer sockets than it says.
        still_open = sum(a["open"] for a in ask_all(self.clients, cmd="counts")) - open_before
        if still_open < connected:
            say(f"{self.design}: warning: {connected} sockets connected, {still_open} still open")
        connected = still_open
        errors = {}
        for a in answers:
            for name, count in a["errors"].items():
                errors[name] = errors.get(name, 0) + count
        return {
            "sockets": len(sockets), "connected": connected, "errors": errors,
            "seconds": window.seconds, "usage": usage, "redis": delta,
            "redis_per_connect": sum(delta.values()) / max(1, connected),
        }  # fmt: skip

    def measure_background(self, seconds=3.0):
        """Redis commands per second with no client connecting and nothing posted (e.g. the
        listener's or channels_redis' own polling), subtracted from the phases' counts."""
        before = command_counts(self.redis)
        time.sleep(seconds)
        delta = command_delta(before, command_counts(self.redis))
        self.background = {name: calls / seconds for name, calls in delta.items()}
        self.result["redis_background"] = self.background

    def net(self, delta, seconds):
        """``delta`` less the background rate over ``seconds`` (never below zero)."""
        background = getattr(self, "background", {})
        net = {name: max(0, round(calls - background.get(name, 0) * seconds))
               for name, calls in delta.items()}  # fmt: skip
        return {name: calls for name, calls in net.items() if calls}

    def post(self, seed, phase, rate, duration, writer=False):
        config = self.workdir / "targets.json"
        config.write_text(json.dumps({
            "ports": [r.port for r in self.cluster.replicas],
            "targets": [[c, seed["secrets"][t]] for c, t, _ in seed["conversations"]],
        }))  # fmt: skip
        out = self.workdir / f"post-{phase}.json"
        command = [
            PYTHON,
            str(ROOT / "bench" / "load_poster.py"),
            "--connections",
            str(self.args.connections),
        ]
        if writer:
            command = [PYTHON, str(ROOT / "bench" / "load_writer.py")]
        poster = subprocess.Popen(
            [*command, "--config", str(config), "--phase", phase, "--rate", str(rate),
             "--duration", str(duration), "--out", str(out)], cwd=ROOT, env=self.cluster.env,
        )  # fmt: skip
        before = command_counts(self.redis)
        window = Window(
            {**self.pids, **{f"clients{i}": c.process.pid for i, c in enumerate(self.clients)}}
        )
        window.start()
        if phase in ("m", "f") and self.args.profile and self.design == "backplane":
            self.profile(phase, duration)
        # wait4: the poster's own CPU time, which /proc no longer has once it exited.
        _, status, rusage = os.wait4(poster.pid, 0)
        poster.returncode = os.waitstatus_to_exitcode(status)
        usage = window.stop()
        usage["poster"] = {
            "cpu": 100 * (rusage.ru_utime + rusage.ru_stime) / window.seconds,
            "rss_mb": rusage.ru_maxrss / 1024,
        }
        ours = sum(v["cpu"] for k, v in usage.items() if k != "machine")
        usage["others"] = {
            "cpu": max(0.0, usage["machine"]["cpu"] * usage["machine"]["cores"] - ours),
            "rss_mb": 0.0,
        }
        result = json.loads(out.read_text())
        result["usage"] = usage
        result["redis_before"] = before
        return result

    def profile(self, phase, duration):
        """py-spy both replicas for most of the paced POST phase and of the paced fan-out
        phase (``--profile DIR``): raw collapsed stacks, one file per replica and phase,
        for flame graphs or a quick sort."""
        target = Path(self.args.profile)
        target.mkdir(parents=True, exist_ok=True)
        spy = str(Path(PYTHON).parent / "py-spy")
        idle = ["--idle"] if self.args.profile_idle else []
        self._spies = [
            subprocess.Popen(
                [spy, "record", "--pid", str(r.process.pid), "--rate", "200", *idle,
                 "--duration", str(max(1, int(duration) - 1)), "--format", "raw",
                 "--output", str(target / f"{self.design}-{phase}-replica{r.index}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            for r in self.cluster.replicas
        ]  # fmt: skip

    def drain(self, phase, expected, stall=5.0, limit=90.0):
        """Wait until the clients counted ``expected`` activities of ``phase``, or until
        nothing new arrived for ``stall`` seconds (lost frames), ``limit`` at most."""
        started = last_change = time.monotonic()
        got = -1
        while True:
            now_got = sum(a["phases"].get(phase, 0) for a in ask_all(self.clients, cmd="counts"))
            now = time.monotonic()
            if now_got != got:
                got, last_change = now_got, now
            if got >= expected or now - last_change > stall or now - started > limit:
                return got
            time.sleep(0.25)

    def gc_snapshot(self):
        return [gc_counts(replica.port, PRODUCTION["WEBCHAT_METRICS_TOKEN"])
                for replica in self.cluster.replicas]

    def posted_phase(self, seed, phase, rate, duration, sockets_per_conversation, writer=False):
        gc_before = self.gc_snapshot()
        posted = self.post(seed, phase, rate, duration, writer)
        for spy in getattr(self, "_spies", []):
            spy.wait()
        self._spies = []
        after = command_counts(self.redis)
        posted["redis_gross"] = command_delta(posted.pop("redis_before"), after)
        posted["redis"] = self.net(posted["redis_gross"], posted["seconds"])
        expected = sum(posted["per_conversation"].values()) * sockets_per_conversation
        posted["expected_frames"] = expected
        posted["received"] = self.drain(phase, expected)
        # Sockets closed and client errors so far: frames missing from a socket that closed
        # or whose reader failed are the harness's loss, not the server's.
        states = ask_all(self.clients, cmd="counts")
        posted["clients"] = {
            "open": sum(a["open"] for a in states),
            "closed": sum(sum(a["closed"].values()) for a in states),
            "errors": [a["errors"] for a in states if a["errors"]],
        }
        if posted["received"] < expected:
            say(f"{self.design}: phase {phase}: {posted['received']} of {expected} frames; "
                f"clients {posted['clients']}")  # fmt: skip
        # Scraped once every frame is in (a scrape is work on the replicas' loops too).
        posted["gc"] = gc_delta(gc_before, self.gc_snapshot())
        return posted

    def phases(self):
        args = self.args
        conversations = args.sockets // args.fanout
        say(f"{self.design}: seeding {conversations} conversations")
        load = self.seed(conversations, args.fanout, "load")
        self.measure_background()
        say(f"{self.design}: connecting {2 * conversations * args.fanout} sockets")
        self.result["connect"] = self.connect(load, (0, 1), args.fanout)
        say(f"{self.design}: connected {self.result['connect']['connected']} in "
            f"{self.result['connect']['seconds']:.1f} s; warm-up")  # fmt: skip
        if args.settle:
            self.result["settle_cpu"] = self.idle_cpu(args.settle)
            say(f"{self.design}: replicas' CPU (% of a core, per second) after connecting, "
                f"nothing posted: {self.result['settle_cpu']}")  # fmt: skip
        per_conversation = 2 * args.fanout
        if args.warmup:
            self.posted_phase(load, "w", args.rate, args.warmup, per_conversation)
        if args.duration:
            say(f"{self.design}: {args.rate:g} activities/s for {args.duration:g} s")
            self.result["paced"] = self.posted_phase(
                load, "m", args.rate, args.duration, per_conversation
            )
        if args.fanout_only:
            say(f"{self.design}: fan-out only: a worker writes {args.rate:g}/s, then as fast "
                f"as it can, {args.fanout_only:g} s each, no HTTP")  # fmt: skip
            self.result["fanout"] = self.posted_phase(
                load, "f", args.rate, args.fanout_only, per_conversation, writer=True
            )
            self.result["fanout_burst"] = self.posted_phase(
                load, "F", 0, args.fanout_only, per_conversation, writer=True
            )
        if args.burst:
            say(f"{self.design}: POST burst for {args.burst:g} s")
            self.result["burst"] = self.posted_phase(load, "b", 0, args.burst, per_conversation)
        extra = args.idle - args.sockets
        if extra > 0:
            say(f"{self.design}: seeding and connecting {extra} idle sockets on replica 0")
            idle = self.seed(extra, 1, "idle")
            rss_before = self._rss("replica0")
            self.result["idle"] = self.connect(idle, (0,), 1)
            time.sleep(1.0)
            self.result["idle"]["rss_before_mb"] = rss_before / 2**20
            self.result["idle"]["rss_after_mb"] = self._rss("replica0") / 2**20
            if args.duration:
                say(f"{self.design}: {args.rate:g}/s with {args.idle} sockets on replica 0")
                self.result["crowded"] = self.posted_phase(
                    load, "c", args.rate, args.duration / 2, per_conversation
                )
            counts = ask_all(self.clients, cmd="counts")
            self.result["open_at_end"] = sum(a["open"] for a in counts)
        reports = []
        for i, client in enumerate(self.clients):
            path = self.workdir / f"latencies-{i}.json"
            client.send(cmd="report", out=str(path))
            client.answer()
            reports.append(json.loads(path.read_text()))
        self.result["latencies"] = load_report.merge_latencies(reports)

    def idle_cpu(self, seconds):
        """Both replicas' CPU (% of one core, summed) in each second of ``seconds`` with
        nothing posted: work the connects left behind shows here."""
        from bench.load_support import cpu_seconds

        pids = [r.process.pid for r in self.cluster.replicas]
        out = []
        for _ in range(int(seconds)):
            before = sum(cpu_seconds(pid) for pid in pids)
            time.sleep(1.0)
            out.append(round(100 * (sum(cpu_seconds(pid) for pid in pids) - before)))
        return out

    def _rss(self, name):
        from bench.load_support import rss_bytes

        return rss_bytes(self.pids[name])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="300 sockets per replica, 1,000 idle, short phases (~2 min)",
    )
    parser.add_argument(
        "--designs", default=",".join(DESIGNS), help=f"comma-separated, from {', '.join(DESIGNS)}"
    )
    parser.add_argument("--sockets", type=int, default=2000, help="sockets per replica")
    parser.add_argument(
        "--fanout", type=int, default=1, help="sockets per conversation on each replica (at most 5)"
    )
    parser.add_argument("--rate", type=float, default=200, help="activities/s, paced phase")
    parser.add_argument(
        "--duration", type=float, default=15, help="seconds, paced POST phase (0: skip it)"
    )
    parser.add_argument("--warmup", type=float, default=3, help="seconds at --rate first")
    parser.add_argument(
        "--settle", type=float, default=0, help="seconds to wait between connecting and warm-up"
    )
    parser.add_argument(
        "--burst", type=float, default=10, help="seconds, POST throughput phase (0: skip it)"
    )
    parser.add_argument(
        "--fanout-only",
        type=float,
        default=10,
        metavar="SECONDS",
        help="seconds of the worker-writes phase (no HTTP; 0: skip it)",
    )
    parser.add_argument(
        "--idle",
        type=int,
        default=10000,
        help="sockets on replica 0 in the idle phase (0: skip it)",
    )
    parser.add_argument("--client-procs", type=int, default=2, help="client processes")
    parser.add_argument(
        "--connect-concurrency",
        type=int,
        default=64,
        help="handshakes in flight per client process",
    )
    parser.add_argument(
        "--connections", type=int, default=8, help="poster's keep-alive connections per replica"
    )
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--sqlite-synchronous",
        choices=("NORMAL", "FULL"),
        default="NORMAL",
        help="SQLite's PRAGMA synchronous, WAL mode (NORMAL: no fsync per commit)",
    )
    parser.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="replicas with WEBCHAT_GC_FREEZE=0 (Python's collector as it is; for comparison)",
    )
    parser.add_argument(
        "--write",
        metavar="PATH",
        help="write the section of docs/benchmarks.md and its plots beside it",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the designs this many times, interleaved; the table shows "
        "medians (the machine is shared: rounds smooth out other load)",
    )
    parser.add_argument(
        "--section",
        default="main",
        help="name of the generated block in --write's file (one per setup)",
    )
    parser.add_argument("--json", metavar="PATH", help="also dump every number as JSON")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy both replicas (backplane design, paced phase) into DIR",
    )
    parser.add_argument(
        "--profile-idle",
        action="store_true",
        help="with --profile: sample waiting threads too (wall time)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        # Smaller defaults; options given explicitly still win.
        parser.set_defaults(sockets=300, idle=1000, duration=6, burst=4, warmup=2, fanout_only=4)
        args = parser.parse_args(argv)
    args.designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    unknown = set(args.designs) - set(DESIGNS)
    if unknown:
        parser.error(f"unknown design(s) {sorted(unknown)}; known: {', '.join(DESIGNS)}")
    if not 1 <= args.fanout <= 5:
        parser.error("--fanout must be 1 to 5 (the stream's MAX_SOCKETS_PER_CONVERSATION)")
    return args


def main(argv=None):
    args = parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Every socket is a file descriptor in a replica and in a client: the children inherit it.
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.idle + 1000:
        say(f"warning: the hard fd limit {hard} is below --idle {args.idle} + 1000")
    command = " ".join(["bench/load.py", *(argv if argv is not None else sys.argv[1:])])
    results = []
    calibration_before = cpu_calibration()
    say(f"CPU calibration: {calibration_before:.0f} ms (lower is faster)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="webchat-load-") as workdir:
        server = RedisServer()
        server.start()
        try:
            for round_ in range(args.rounds):
                for design in args.designs:
                    if args.rounds > 1:
                        say(f"round {round_ + 1} of {args.rounds}")
                    workspace = Path(workdir) / f"round{round_}"
                    workspace.mkdir(exist_ok=True)
                    results.append(Run(design, args, server, workspace).run())
                    load_report.print_design(results[-1])
        finally:
            server.cleanup()
    say(f"done in {time.monotonic() - started:.0f} s")
    args.calibration = (calibration_before, cpu_calibration())
    say(f"CPU calibration: {args.calibration[1]:.0f} ms after the run")
    report = load_report.Report(args, results, command)
    print(report.table())
    load_report.print_targets(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report.numbers(), indent=1))
    if args.write:
        report.write(Path(args.write))
        say(f"written to {args.write} (plots beside it)")


if __name__ == "__main__":
    main()
