"""Failures at scale, three designs side by side: a reconnect storm and a Redis outage.

    .venv/bin/python bench/failures.py --write docs/benchmarks.md
    .venv/bin/python bench/failures.py --storm-sockets 1000 --rounds 1    # smaller, quicker

Designs are those of ``bench/load.py`` (``backplane``, ``redis-core``, ``redis-pubsub``), run
in interleaved rounds: storm for each design, outage for each design, then the next round.
Each run has a fresh private redis-server, two daphne replicas (``tests/support/replicas.py``)
and its own database on one private PostgreSQL started here with ``pg_stat_statements``:
database statements are counted by the server, per statement, for the replicas' role only.

*Storm*: ``--storm-sockets`` sockets (one per conversation) on replica 0 and
``--steady-sockets`` on replica 1 (``bench/failures_clients.py``). A poster
(``bench/load_poster.py``) writes ``--rate`` activities/s to the steady conversations through
replica 1: first ``--quiet`` seconds with nothing else happening (the baseline), then
replica 0 is SIGKILLed and its clients reconnect at once to replica 1 with their watermark,
while ``--storm-rate`` activities/s go to the moved conversations for ``--storm-post``
seconds. *Caught up*: the last moved socket is open again and has its conversation's last
activity (so never under ``--storm-post``: at a few hundred sockets, that bound is the
figure). Redis commands (``INFO commandstats``) and statements are counted from the kill to
the moment every socket is caught up, less what the baseline's steady traffic makes over as
long. Steady p99: POST to frame on the sockets that were not moved, for activities posted
during the storm, against the baseline.

*Outage*: ``--outage-sockets`` sockets, every conversation with one on each replica. The
poster writes ``--rate`` activities/s through both replicas; after ``--outage-lead`` s
redis-server is SIGKILLed, ``--outage-gap`` s later started again empty on the same port,
and posting goes on ``--outage-tail`` s more. After ``--settle`` s each socket's watermark is
compared with the database's: *lost* counts (socket, activity) pairs the socket does not
have. *Catch-up*: from Redis answering again until every socket has every activity stored
before that moment. The replicas' periodic watermark sweep (``webchat/catch_up.py``) runs
whatever the design, so a notification a layer dropped still arrives within a sweep once
the layer works again; ``--sweep-interval 3600`` shows each design without it.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import redis  # noqa: E402

from bench import load  # noqa: E402
from bench.docs_block import write_block  # noqa: E402
from bench.failures_report import report  # noqa: E402
from bench.load_support import (  # noqa: E402
    Window,
    command_counts,
    command_delta,
    cpu_calibration,
    percentile,
)
from tests.support import replicas  # noqa: E402
from tests.support.postgres_server import PostgresServer  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

PYTHON = sys.executable
MARKERS = ("<!-- bench/failures.py: begin -->", "<!-- bench/failures.py: end -->")
say = load.say


class StatsPostgres(PostgresServer):
    """The private PostgreSQL of ``tests/support``, with ``pg_stat_statements`` loaded."""

    def _ctl(self, action, *extra):
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
            " -c shared_preload_libraries=pg_stat_statements -c max_connections=200"
        )
        return self._run("pg_ctl", "-D", self.data, "-o", options, "-w",
                         "-l", self.directory / "log", action, *extra)  # fmt: skip


class Cleanups:
    """What ``PostgresServer.start`` expects of a test case: ``addCleanup``."""

    def __init__(self, stack: ExitStack):
        self.addCleanup = stack.callback


class FailureClients(load.ClientProcess):
    """One ``bench/failures_clients.py`` process (the protocol of ``load.ClientProcess``)."""

    def __init__(self):
        self.process = subprocess.Popen(
            [PYTHON, str(ROOT / "bench" / "failures_clients.py")], cwd=ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip


class Statements:
    """Statement counts of one database, by normalised text, for the replicas' role."""

    def __init__(self, admin_url, database):
        self.admin_url = admin_url  # where the extension's view is
        self.url = admin_url.rsplit("/", 1)[0] + "/" + database
        self.database = database

    def counts(self):
        with psycopg.connect(self.admin_url, autocommit=True, user="bench") as conn:
            rows = conn.execute(
                "SELECT query, calls FROM pg_stat_statements s JOIN pg_database d"
                " ON d.oid = s.dbid WHERE d.datname = %s AND s.userid ="
                " (SELECT oid FROM pg_roles WHERE rolname = 'postgres')", [self.database],
            ).fetchall()  # fmt: skip
        out = {}
        for query, calls in rows:
            out[query] = out.get(query, 0) + calls
        return out

    def watermarks(self, ids):
        with psycopg.connect(self.url, autocommit=True, user="bench") as conn:
            rows = conn.execute(
                "SELECT id, watermark FROM webchat_conversation WHERE id = ANY(%s)", [ids]
            ).fetchall()
        return {str(cid): watermark for cid, watermark in rows}


def kind(query):
    """Which part of the service a statement belongs to (webchat/queries.py)."""
    q = " ".join(query.split())
    if "last_seen" in q and "token_epoch" in q and q.startswith("SELECT"):
        return "connect"  # queries.CONVERSATION: the stream's connect, and API lookups
    if "nbefore" in q:
        return "page"  # queries.ACTIVITIES_PAGE: a stream read (replay or live)
    if "= ANY(" in q and q.startswith("SELECT") and "webchat_conversation" in q:
        return "sweep"  # queries.watermarks: the catch-up sweep
    return "other"  # posting, sessions, transactions


def by_kind(delta):
    out = dict.fromkeys(("connect", "page", "sweep", "other"), 0)
    for query, calls in delta.items():
        out[kind(query)] += calls
    return out


def delta_of(before, after):
    delta = {k: after[k] - before.get(k, 0) for k in after}
    return {k: v for k, v in delta.items() if v}


def net(delta, baseline, seconds):
    """``delta`` less the baseline's rate over ``seconds`` (never below zero)."""
    return {k: max(0, round(v - baseline.get(k, 0) * seconds)) for k, v in delta.items()}


def address(specs):
    """Give each socket an address of its own (``bench/failures_clients.py``)."""
    for i, spec in enumerate(specs):
        spec.append(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")


class Run:
    """One design, one scenario: its Redis, replicas, clients and figures."""

    def __init__(self, design, args, postgres, workdir):
        self.design, self.args, self.postgres = design, args, postgres
        self.workdir = workdir / f"{design}-{uuid.uuid4().hex[:6]}"
        self.workdir.mkdir()
        self.clients = []
        self.posters = []

    def __enter__(self):
        self.redis_server = RedisServer().start()
        self.redis = redis.Redis.from_url(self.redis_server.url)
        env = {**load.DESIGNS[self.design], **load.PRODUCTION, "WEBCHAT_BOT": "",
               "LOG_LEVEL": "WARNING"}  # fmt: skip
        if self.args.sweep_interval:
            env["WEBCHAT_STREAM_CATCH_UP_INTERVAL"] = str(self.args.sweep_interval)
        try:
            self.cluster = replicas.Cluster(
                database="postgres", redis_url=self.redis_server.url, extra_env=env,
                postgres_admin_url=self.postgres.url,
            ).start(2)
        except BaseException:
            self.redis_server.cleanup()
            raise
        self.statements = Statements(self.postgres.url, self.cluster.postgres_name)
        self.clients = [FailureClients() for _ in range(self.args.client_procs)]
        return self

    def __exit__(self, *exc):
        for process in self.posters:
            if process.poll() is None:
                process.kill()
                process.wait()
        for client in self.clients:
            client.stop()
        self.cluster.stop()
        self.redis_server.cleanup()

    def seed(self, conversations, tag):
        """``{"secrets": [...], "conversations": [[id, tenant index, token], ...]}``: the
        seeding of ``bench/load.py``, which needs only ``cluster`` and ``workdir``."""
        return load.Run.seed(self, conversations, 1, tag)

    def stream(self, replica):
        return self.cluster.replicas[replica].ws_url + "/v3/directline/conversations/{}/stream"

    def connect(self, specs):
        shares = [specs[i :: len(self.clients)] for i in range(len(self.clients))]
        for client, share in zip(self.clients, shares, strict=True):
            client.send(cmd="connect", sockets=share, concurrency=self.args.connect_concurrency)
        answers = [client.answer() for client in self.clients]
        return sum(a["connected"] for a in answers), max(a["seconds"] for a in answers)

    def poster(self, seed, replicas_, rate, duration, phase):
        config = self.workdir / f"targets-{phase}.json"
        config.write_text(json.dumps({
            "ports": [self.cluster.replicas[r].port for r in replicas_],
            "targets": [[c, seed["secrets"][t]] for c, t, _ in seed["conversations"]],
        }))  # fmt: skip
        out = self.workdir / f"post-{phase}.json"
        process = subprocess.Popen(
            [PYTHON, str(ROOT / "bench" / "load_poster.py"), "--config", str(config),
             "--phase", phase, "--rate", str(rate), "--duration", str(duration),
             "--connections", "4", "--out", str(out)], cwd=ROOT, env=self.cluster.env,
        )  # fmt: skip
        process.out = out
        self.posters.append(process)
        return process

    @staticmethod
    def posted(process):
        process.wait()
        return json.loads(process.out.read_text())

    def counters(self):
        return command_counts(self.redis), self.statements.counts(), time.monotonic()

    def window(self, before, after):
        redis_before, sql_before, t0 = before
        redis_after, sql_after, t1 = after
        return command_delta(redis_before, redis_after), delta_of(sql_before, sql_after), t1 - t0

    def wait_caught_up(self, tag, ids, limit):
        """Send the database's watermarks of ``ids`` to the clients, then poll until no
        socket of ``tag`` is closed or behind; return the monotonic time it saw that."""
        targets = self.statements.watermarks(ids)
        load.ask_all(self.clients, cmd="targets", watermarks=targets)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if sum(a["behind"] for a in load.ask_all(self.clients, cmd="behind", tag=tag)) == 0:
                return time.monotonic(), targets
            time.sleep(0.1)
        return None, targets

    def reports(self):
        sockets, closes, errors = [], {}, {}
        for i, client in enumerate(self.clients):
            path = self.workdir / f"report-{i}.json"
            client.send(cmd="report", out=str(path))
            client.answer()
            report = json.loads(path.read_text())
            sockets += report["sockets"]
            for name, count in report["closes"].items():
                closes[name] = closes.get(name, 0) + count
            for name, count in report["errors"].items():
                errors[name] = errors.get(name, 0) + count
        return sockets, closes, errors

    # The storm

    def storm(self):
        args = self.args
        moved = self.seed(args.storm_sockets, "moved")
        steady = self.seed(args.steady_sockets, "steady")
        specs = [[c, "moved", token, [self.stream(0).format(c), self.stream(1).format(c)]]
                 for c, _, token in moved["conversations"]]  # fmt: skip
        specs += [[c, "steady", token, [self.stream(1).format(c)]]
                  for c, _, token in steady["conversations"]]  # fmt: skip
        address(specs)
        say(f"{self.design}: storm: connecting {len(specs)} sockets")
        connected, seconds = self.connect(specs)
        say(f"{self.design}: {connected} connected in {seconds:.1f} s; baseline")
        time.sleep(2.0)
        before = self.counters()
        quiet_posts = self.posted(self.poster(steady, (1,), args.rate, args.quiet, "q"))["ok"]
        redis_q, sql_q, quiet_s = self.window(before, self.counters())
        baseline = (
            {k: v / quiet_s for k, v in redis_q.items()},
            {k: v / quiet_s for k, v in sql_q.items()},
        )
        # What one activity costs on its own (its POST, its bump, one socket's read of it).
        per_post = (
            sum(redis_q.values()) / max(1, quiet_posts),
            {k: v / max(1, quiet_posts) for k, v in by_kind(sql_q).items()},
        )
        flow = self.poster(steady, (1,), args.rate, args.storm_post + args.storm_limit, "s")
        time.sleep(1.0)
        survivor = self.cluster.replicas[1].process.pid
        cpu = Window({"replica": survivor, "redis": self.redis_server.pid})
        before = self.counters()
        cpu.start()
        spy = self.profile(survivor) if args.profile else None
        killed_ns = time.monotonic_ns()
        self.cluster.replicas[0].kill()
        say(f"{self.design}: replica 0 SIGKILLed")
        storm_posts = self.posted(self.poster(moved, (1,), args.storm_rate, args.storm_post, "d"))
        ids = [c for c, _, _ in moved["conversations"]]
        seen, _ = self.wait_caught_up("moved", ids, args.storm_limit)
        time.sleep(0.2)
        usage = cpu.stop()
        redis_d, sql_d, storm_s = self.window(before, self.counters())
        if spy is not None:
            spy.wait()
        flow.kill()  # ends the steady flow early: its figures so far are what we need
        flow.wait()
        sockets, closes, errors = self.reports()
        targets = self.statements.watermarks(ids)
        moved_sockets = [s for s in sockets if s["tag"] == "moved"]
        result = {"design": self.design, "scenario": "storm",
                  "moved": len(moved_sockets), "steady": args.steady_sockets,
                  "connected": connected, "closes": closes, "errors": errors,
                  "storm_posts": storm_posts["ok"], "storm_statuses": storm_posts["statuses"],
                  "seen_seconds": None if seen is None else seen - killed_ns / 1e9,
                  "window_seconds": storm_s}  # fmt: skip
        result.update(self.storm_figures(moved_sockets, targets, killed_ns))
        result["redis"] = net(redis_d, baseline[0], storm_s)
        result["sql"] = net(sql_d, baseline[1], storm_s)
        result["sql_kinds"] = by_kind(result["sql"])
        result["sql_gross_kinds"] = by_kind(sql_d)
        # Per moved socket, the storm's own posts taken out at what the baseline's cost.
        posts, moved_n = storm_posts["ok"], max(1, len(moved_sockets))
        result["redis_per_socket"] = max(
            0.0, (sum(result["redis"].values()) - posts * per_post[0]) / moved_n
        )
        result["sql_per_socket"] = {
            k: max(0.0, (v - posts * per_post[1][k]) / moved_n)
            for k, v in result["sql_kinds"].items()
        }
        result["replica_cpu_s"] = usage["replica"]["cpu"] / 100 * cpu.seconds
        result["redis_cpu_s"] = usage["redis"]["cpu"] / 100 * cpu.seconds
        result["latency"] = self.steady_latency(sockets, killed_ns, result["caught_up_ns"])
        return result

    def profile(self, pid):
        """py-spy the surviving replica for ``--profile-seconds`` from the kill (raw
        collapsed stacks, ``--profile DIR``: one file per design and run)."""
        target = Path(self.args.profile)
        target.mkdir(parents=True, exist_ok=True)
        out = target / f"storm-{self.workdir.name}.txt"
        return subprocess.Popen(
            [str(Path(PYTHON).parent / "py-spy"), "record", "--pid", str(pid), "--rate", "250",
             "--duration", str(self.args.profile_seconds), "--format", "raw",
             "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    @staticmethod
    def storm_figures(moved, targets, killed_ns):
        """When every moved socket was open again, and caught up with ``targets``."""
        reopened, caught, behind = 0, 0, 0
        for s in moved:
            opens = [t for t in s["opens"] if t > killed_ns]
            if not opens or not s["open"]:
                behind += 1  # (a socket opens on replica 0 first: every one was moved)
                continue
            reopened = max(reopened, opens[-1])
            target = targets.get(s["conversation"], 0)
            history = s["history"]
            reached = next((history[i] for i in range(0, len(history), 2)
                            if history[i + 1] >= target), None)  # fmt: skip
            if target and reached is None:
                behind += 1
                continue
            caught = max(caught, opens[0], reached or 0)
        return {
            "reconnected_s": (reopened - killed_ns) / 1e9 if reopened else None,
            "caught_up_s": (caught - killed_ns) / 1e9 if caught else None,
            "caught_up_ns": caught or None,
            "not_caught_up": behind,
            "gaps": sum(s["gaps"] for s in moved),
            "repeats": sum(s["repeats"] for s in moved),
            "missing": sum(
                max(0, targets.get(s["conversation"], 0) - s["received"]) for s in moved
            ),  # fmt: skip
        }

    @staticmethod
    def steady_latency(sockets, killed_ns, until_ns):
        """p50/p99 (ms) POST to frame on the steady sockets: the baseline phase, and what
        was posted between the kill and the storm's end."""
        quiet, storm = [], []
        for s in sockets:
            if s["tag"] != "steady":
                continue
            lat = s["latencies"]
            for i in range(0, len(lat), 3):
                sent, us, phase = lat[i], lat[i + 1], chr(lat[i + 2])
                if phase == "q":
                    quiet.append(us)
                elif phase == "s" and killed_ns <= sent <= (until_ns or sent):
                    storm.append(us)
        quiet.sort()
        storm.sort()
        return {name: {"n": len(v), "p50": percentile(v, 0.5) / 1000,
                       "p99": percentile(v, 0.99) / 1000}
                for name, v in (("quiet", quiet), ("storm", storm))}  # fmt: skip

    # The outage

    def outage(self):
        args = self.args
        seed = self.seed(args.outage_sockets // 2, "outage")
        specs = [[c, "both", token, [self.stream(r).format(c)]]
                 for c, _, token in seed["conversations"] for r in (0, 1)]  # fmt: skip
        address(specs)
        say(f"{self.design}: outage: connecting {len(specs)} sockets")
        connected, seconds = self.connect(specs)
        say(f"{self.design}: {connected} connected in {seconds:.1f} s")
        time.sleep(2.0)
        total = args.outage_lead + args.outage_gap + args.outage_tail
        flow = self.poster(seed, (0, 1), args.rate, total, "o")
        time.sleep(args.outage_lead)
        statements = self.statements.counts()
        killed = time.monotonic()
        self.redis_server.kill()
        say(f"{self.design}: redis-server SIGKILLed")
        time.sleep(max(0.0, killed + args.outage_gap - time.monotonic()))
        self.redis_server.start()
        back_ns = time.monotonic_ns()
        ids = [c for c, _, _ in seed["conversations"]]
        at_back = self.statements.watermarks(ids)
        say(f"{self.design}: redis-server started again, empty")
        posts = self.posted(flow)
        time.sleep(args.settle)
        sql = by_kind(delta_of(statements, self.statements.counts()))
        sockets, closes, errors = self.reports()
        final = self.statements.watermarks(ids)
        lost, conversations_lost, caught, behind = 0, set(), 0, 0
        for s in sockets:
            missing = final.get(s["conversation"], 0) - s["watermark"]
            if missing > 0:
                lost += missing
                conversations_lost.add(s["conversation"])
            target = at_back.get(s["conversation"], 0)
            history = s["history"]
            reached = next((history[i] for i in range(0, len(history), 2)
                            if history[i + 1] >= target), None)  # fmt: skip
            if target and reached is None:
                behind += 1
            elif reached:
                caught = max(caught, reached)
        return {
            "design": self.design, "scenario": "outage", "sockets": len(sockets),
            "connected": connected, "posted": posts["ok"], "statuses": posts["statuses"],
            "sql_kinds": sql,
            "expected_frames": 2 * sum(final.values()), "lost": lost,
            "conversations_lost": len(conversations_lost), "conversations": len(ids),
            "not_caught_up": behind,
            "catch_up_s": max(0.0, (caught - back_ns) / 1e9) if caught and not behind else None,
            "gaps": sum(s["gaps"] for s in sockets),
            "repeats": sum(s["repeats"] for s in sockets),
            "closes": closes, "errors": errors,
        }  # fmt: skip


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--designs",
        default=",".join(load.DESIGNS),
        help=f"comma-separated, from {', '.join(load.DESIGNS)}",
    )
    parser.add_argument("--scenarios", default="storm,outage", help="storm, outage or both")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per design")
    parser.add_argument(
        "--storm-sockets", type=int, default=5000, help="sockets on the replica that is killed"
    )
    parser.add_argument(
        "--steady-sockets",
        type=int,
        default=500,
        help="sockets on the surviving replica (their latency is measured)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=50,
        help="activities/s to the steady (storm) or all (outage) conversations",
    )
    parser.add_argument("--quiet", type=float, default=4, help="seconds of the storm's baseline")
    parser.add_argument(
        "--storm-rate",
        type=float,
        default=200,
        help="activities/s to the moved conversations during the storm",
    )
    parser.add_argument(
        "--storm-post",
        type=float,
        default=1,
        help="seconds the moved conversations are posted to from the kill",
    )
    parser.add_argument(
        "--storm-limit",
        type=float,
        default=120,
        help="seconds the storm may take before it counts as not caught up",
    )
    parser.add_argument(
        "--outage-sockets",
        type=int,
        default=1000,
        help="sockets in the outage run, half on each replica",
    )
    parser.add_argument("--outage-lead", type=float, default=2, help="seconds before the kill")
    parser.add_argument("--outage-gap", type=float, default=2, help="seconds Redis is away")
    parser.add_argument(
        "--outage-tail", type=float, default=2, help="seconds of posting after Redis is back"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=5,
        help="seconds after the last post before counting what each socket has",
    )
    parser.add_argument(
        "--sweep-interval",
        type=float,
        help="the replicas' CATCH_UP_INTERVAL (default theirs, 1.5 s): 3600 shows what a "
        "design loses without the periodic watermark sweep, which runs in every design",
    )
    parser.add_argument("--client-procs", type=int, default=2, help="client processes")
    parser.add_argument(
        "--connect-concurrency",
        type=int,
        default=64,
        help="handshakes in flight per client process",
    )
    parser.add_argument(
        "--profile", metavar="DIR", help="py-spy the surviving replica during each storm, into DIR"
    )
    parser.add_argument(
        "--profile-seconds", type=int, default=8, help="with --profile: seconds from the kill"
    )
    parser.add_argument("--write", metavar="PATH", help="update the block in this file")
    parser.add_argument("--json", metavar="PATH", help="also dump every figure as JSON")
    args = parser.parse_args(argv)
    args.designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    unknown = set(args.designs) - set(load.DESIGNS)
    if unknown:
        parser.error(f"unknown design(s) {sorted(unknown)}; known: {', '.join(load.DESIGNS)}")
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if set(args.scenarios) - {"storm", "outage"}:
        parser.error("--scenarios takes storm, outage or both")
    return args


def main(argv=None):
    args = parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    command = " ".join(["bench/failures.py", *(argv if argv is not None else sys.argv[1:])])
    loads = [Path("/proc/loadavg").read_text().split()[0]]
    calibration = [cpu_calibration()]
    say(f"load average {loads[0]}, CPU calibration {calibration[0]:.0f} ms")
    results = []
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="webchat-failures-") as work:
        postgres = StatsPostgres.start(Cleanups(stack))
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            conn.execute("CREATE ROLE bench LOGIN SUPERUSER")
        for round_ in range(args.rounds):
            for scenario in args.scenarios:
                for design in args.designs:
                    say(f"round {round_ + 1} of {args.rounds}: {scenario}, {design}")
                    started = Path("/proc/loadavg").read_text().split()[0]
                    with Run(design, args, postgres, Path(work)) as run:
                        results.append(getattr(run, scenario)())
                    results[-1]["round"] = round_ + 1
                    results[-1]["loadavg"] = (started, Path("/proc/loadavg").read_text().split()[0])
                    say(json.dumps({k: v for k, v in results[-1].items()
                                    if k not in ("redis", "sql")}))  # fmt: skip
    loads.append(Path("/proc/loadavg").read_text().split()[0])
    calibration.append(cpu_calibration())
    text = report(results, args, command, loads, calibration)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.write:
        write_block(args.write, text, *MARKERS)
        say(f"written to {args.write}")


if __name__ == "__main__":
    main()
