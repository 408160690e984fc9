"""Server CPU per delivered stream frame and per POST: webchat under each ASGI server, and
the floor (the same frames from a bare ASGI app, ``bench/asgi_floor.py``) under each.

    .venv/bin/python bench/cpu_per_frame.py                            # print the table
    .venv/bin/python bench/cpu_per_frame.py --write docs/benchmarks.md  # + the docs block
    .venv/bin/python bench/cpu_per_frame.py --profile /tmp/prof --json /tmp/run.json
    .venv/bin/python bench/profile_stages.py /tmp/prof --post-us P --fan-post-us F
    .venv/bin/python bench/cpu_per_frame.py --report-from /tmp/run.json   # table again

``--profile`` adds one daphne/webchat cell under py-spy (its figures are not in the table);
``bench/profile_stages.py`` sorts its stacks into stages (P and F: the medians of
``per_post_us`` and ``fan_per_post_us`` of daphne/webchat in the ``--json`` file).

One private redis-server (free port, stopped by pid) and one SQLite database (WAL) for the
whole run. A *cell* is one (server, app) pair: a fresh seed (``bench/load_seed.py``: its own
tenants and conversations), one server process on a free port, one clients process
(``bench/load_clients.py``) holding ``--fanout`` stream sockets on each of ``--conversations``
conversations, then, each timed by the server process's CPU (user + system, from
``/proc/<pid>/stat``) while the poster (``bench/load_poster.py``, bot API, tenant secret)
sends ``--rate`` POSTs/s for ``--duration`` s:

* ``idle``: 2 s with nothing posted (the server's own timers), subtracted from both phases;
* ``post``: POSTs to conversations no socket watches: CPU per POST;
* ``fan``: POSTs to the watched ones, every POST one frame on each of their sockets: CPU per
  delivered frame = (phase CPU - POSTs x CPU per POST) / frames received, so it includes
  the notification, the stream's shared read and the socket writes.

Before the phases a probe socket reads one frame to record its size (webchat's and the
floor's frames are the same ActivitySet shape). Cells run in interleaved rounds (every
server and app once per round, the order rotated), and the table gives the median over
rounds. Servers: daphne (``-v 0``: no access log; ``daphne-log`` is daphne as
``scripts/serve`` runs it, access log on stdout, here a file), uvicorn (``--no-access-log``;
what ``auto`` picks in this venv: h11, the ``websockets`` Sans-I/O protocol, the asyncio
loop; no httptools or uvloop) and hypercorn (one asyncio worker, which it runs in a child
process: the CPU counted is the process tree's; no access log by default). WebSocket pings
every 20 s on all.
"""

import argparse
import json
import math
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import docs_block  # noqa: E402
from bench.load_support import cpu_seconds, machine_description  # noqa: E402
from tests.support.processes import stop_process  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.replicas import Cluster, listening_socket  # noqa: E402

PYTHON = sys.executable
BEGIN_MARKER = "<!-- bench/cpu_per_frame.py: begin -->"
END_MARKER = "<!-- bench/cpu_per_frame.py: end -->"
APPS = {"webchat": "webchat.asgi:application", "floor": "bench.asgi_floor:app"}
PING = ["20"]
SERVERS = ("daphne", "daphne-log", "uvicorn", "hypercorn")


def server_command(server, fd, app):
    if server in ("daphne", "daphne-log"):
        quiet = ["-v", "0"] if server == "daphne" else []
        return [PYTHON, "-m", "daphne", "--fd", fd, *quiet, "--ping-interval", *PING,
                "--ping-timeout", "30", app]  # fmt: skip
    if server == "uvicorn":
        return [PYTHON, "-m", "uvicorn", "--fd", fd, "--no-access-log", "--log-level", "warning",
                "--ws-ping-interval", *PING, "--ws-ping-timeout", "30", app]  # fmt: skip
    if server == "hypercorn":
        return [PYTHON, "-m", "hypercorn", "--bind", f"fd://{fd}", "--log-level", "warning",
                "--websocket-ping-interval", *PING, app]  # fmt: skip
    raise ValueError(f"unknown server {server!r}: daphne, daphne-log, uvicorn or hypercorn")


def say(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def tree_cpu_seconds(pid):
    """CPU seconds of ``pid`` and of its live descendants (hypercorn serves from a child)."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        total += cpu_seconds(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            children = []
        pending.extend(int(child) for child in children)
    return total


def loadavg():
    return float(Path("/proc/loadavg").read_text().split()[0])


class Clients:
    """One ``bench/load_clients.py`` process, driven over JSON lines."""

    def __init__(self):
        self.process = subprocess.Popen([PYTHON, str(ROOT / "bench" / "load_clients.py")],
                                        cwd=ROOT, text=True, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE)  # fmt: skip

    def ask(self, **command):
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"clients process {self.process.pid} exited")
        return json.loads(line)

    def stop(self):
        if self.process.poll() is None:
            try:
                self.ask(cmd="close")
                self.process.wait(10)
            except (OSError, RuntimeError, subprocess.TimeoutExpired):
                stop_process(self.process, 5)


class Cell:
    """One server process serving one app, measured through its phases."""

    def __init__(self, server, app, args, cluster, workdir):
        self.server, self.app, self.args, self.cluster = server, app, args, cluster
        self.workdir = workdir / f"{server}-{app}-{uuid.uuid4().hex[:6]}"
        self.workdir.mkdir()

    def run(self, profile_dir=None):
        args = self.args
        self.seed = self.make_seed()
        sock = listening_socket()
        log = open(self.workdir / "server.log", "wb")  # noqa: SIM115 (closed in finally)
        command = server_command(self.server, str(sock.fileno()), APPS[self.app])
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.cluster.env, stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        pass_fds=(sock.fileno(),))  # fmt: skip
        self.port = sock.getsockname()[1]
        sock.close()
        clients = None
        try:
            self.wait_up()
            result = {"server": self.server, "app": self.app, "frame_bytes": self.probe()}
            clients = Clients()
            fan = self.seed["conversations"][: args.conversations]
            sockets = []
            for conversation, _tenant, token in fan:
                url = (f"ws://127.0.0.1:{self.port}/v3/directline/conversations/"
                       f"{conversation}/stream?watermark=&t={token}")  # fmt: skip
                sockets.extend([url, conversation, 0] for _ in range(args.fanout))
            opened = clients.ask(cmd="connect", sockets=sockets, concurrency=50)
            if opened["failed"] or opened["errors"]:
                raise RuntimeError(f"{self.server}/{self.app}: sockets failed: {opened}")
            result["sockets"] = opened["connected"]
            result["frame"] = self.frame
            time.sleep(1.0)
            alive = clients.ask(cmd="counts")
            if alive["open"] != len(sockets):  # refused after the handshake (a 4xxx close)
                raise RuntimeError(f"{self.server}/{self.app}: sockets closed: {alive}")
            pid = self.process.pid
            started, before = time.monotonic(), tree_cpu_seconds(pid)
            time.sleep(2.0)
            idle = (tree_cpu_seconds(pid) - before) / (time.monotonic() - started)
            result["idle_cpu_per_s"] = idle
            quiet = self.seed["conversations"][args.conversations : 2 * args.conversations]
            self.post(clients, fan, "w", 2.0)  # warm-up: code paths, caches, connections
            post = self.post(clients, quiet, "p", args.duration, profile_dir)
            fanned = self.post(clients, fan, "f", args.duration, profile_dir)
            per_post = (post["cpu"] - idle * post["seconds"]) / max(1, post["ok"])
            frames_cpu = fanned["cpu"] - idle * fanned["seconds"] - per_post * fanned["ok"]
            result.update(
                posts=post["ok"], per_post_us=per_post * 1e6,
                fan_posts=fanned["ok"], frames=fanned["frames"],
                activities=fanned["activities"],
                per_frame_us=frames_cpu / max(1, fanned["frames"]) * 1e6,
                fan_per_post_us=(fanned["cpu"] - idle * fanned["seconds"])
                / max(1, fanned["ok"]) * 1e6,
                statuses={**post["statuses"], **fanned["statuses"]},
                post_http_ms=post["http_ms"], fan_http_ms=fanned["http_ms"],
            )  # fmt: skip
            return result
        finally:
            if clients is not None:
                clients.stop()
            stop_process(self.process, 10)
            log.close()

    def make_seed(self):
        args = self.args
        tenants = 2 * math.ceil(args.conversations * args.fanout / 500)
        out = self.workdir / "seed.json"
        subprocess.run(
            [PYTHON, str(ROOT / "bench" / "load_seed.py"), "--tenants", str(tenants),
             "--conversations", str(2 * args.conversations + 1),
             "--prefix", f"cpf-{uuid.uuid4().hex[:8]}", "--out", str(out)],
            cwd=ROOT, env=self.cluster.env, check=True,
        )  # fmt: skip
        return json.loads(out.read_text())

    def wait_up(self, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                tail = (self.workdir / "server.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{self.server}/{self.app} exited:\n{tail}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v3/directline/ping",
                                       timeout=2)  # fmt: skip
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.server}/{self.app} did not answer") from None
                time.sleep(0.1)

    def probe(self):
        """Bytes of one frame: a socket on the last seeded conversation, one POST."""
        from websockets.sync.client import connect

        conversation, tenant, token = self.seed["conversations"][-1]
        secret = self.seed["secrets"][tenant]
        url = (f"ws://127.0.0.1:{self.port}/v3/directline/conversations/{conversation}"
               f"/stream?watermark=&t={token}")  # fmt: skip
        with connect(url, compression=None, open_timeout=30) as ws:
            time.sleep(0.3)
            body = json.dumps({"type": "message", "text": "load p 0",
                               "channelData": {"t": time.monotonic_ns(), "p": "x", "r": 0}})
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.port}/v3/directline/bot/conversations/"
                f"{conversation}/activities", data=body.encode(), method="POST",
                headers={"Authorization": f"Bearer {secret}",
                         "Content-Type": "application/json"},
            )  # fmt: skip
            urllib.request.urlopen(request, timeout=10).read()
            frame = ws.recv(timeout=10)
        self.frame = frame
        return len(frame.encode())

    def post(self, clients, targets, phase, duration, profile_dir=None):
        config = self.workdir / f"targets-{phase}.json"
        config.write_text(json.dumps({
            "ports": [self.port],
            "targets": [[c, self.seed["secrets"][t]] for c, t, _ in targets],
        }))  # fmt: skip
        out = self.workdir / f"post-{phase}.json"
        counts = clients.ask(cmd="counts")
        pid = self.process.pid
        spy = None
        if profile_dir and phase in ("p", "f"):
            spy = subprocess.Popen(
                [str(Path(PYTHON).parent / "py-spy"), "record", "--pid", str(pid),
                 "--duration", str(int(duration)), "--rate", "200", "--format", "raw",
                 "--output", str(Path(profile_dir) / f"{self.server}-{self.app}-{phase}.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        started, before = time.monotonic(), tree_cpu_seconds(pid)
        subprocess.run(
            [PYTHON, str(ROOT / "bench" / "load_poster.py"), "--config", str(config),
             "--phase", phase, "--rate", str(self.args.rate), "--duration", str(duration),
             "--out", str(out)],
            cwd=ROOT, check=True,
        )  # fmt: skip
        # Until the frames stop coming (every POST is answered before its frames need be).
        frames, still = counts["frames"], 0
        while still < 3:
            time.sleep(0.2)
            now = clients.ask(cmd="counts")
            still = still + 1 if now["frames"] == frames else 0
            frames = now["frames"]
        cpu, seconds = tree_cpu_seconds(pid) - before, time.monotonic() - started - 0.6
        if spy is not None:
            spy.wait(duration + 30)
        posted = json.loads(out.read_text())
        return {
            "ok": posted["ok"], "statuses": posted["statuses"], "http_ms": posted["http_ms"],
            "cpu": cpu, "seconds": seconds, "frames": frames - counts["frames"],
            "activities": now["phases"].get(phase, 0),
        }  # fmt: skip


def median(values):
    return statistics.median(values) if values else float("nan")


def ratio(results, key, server, app, base_server, base_app):
    """Median over rounds of ``key`` of (server, app) over (base_server, base_app) in the
    same round: cells of one round ran minutes apart, so their ratio is steadier than the
    ratio of medians when the machine's load moves between rounds."""
    values = []
    for round_ in sorted({r["round"] for r in results}):
        cell = {(r["server"], r["app"]): r[key] for r in results if r["round"] == round_}
        base = cell.get((base_server, base_app))
        # A phase too short for /proc's 10 ms ticks can measure nothing, or less than nothing.
        if (server, app) in cell and base and base > 0:
            values.append(cell[(server, app)] / base)
    return median(values)


def report(results, args, loads, servers, apps, started):
    def cells(server, app):
        return [r for r in results if r["server"] == server and r["app"] == app]

    rounds = len({r["round"] for r in results})
    lines = [
        "## CPU per delivered frame and per POST, against the floor (`bench/cpu_per_frame.py`)",
        "",
        f"Machine: {machine_description()}. Date: {time.strftime('%Y-%m-%d', started)}. "
        f"Load average (1 min) at the start {loads[0]:.2f}, at the end {loads[-1]:.2f}, "
        f"over the run {min(loads):.2f}-{max(loads):.2f} (the machine is shared with other "
        f"sessions' work: CPU time, not wall clock, is the figure). {rounds} interleaved "
        "rounds (every cell once per round, the order rotated); medians, with the range over "
        "rounds; ratios are medians of the ratios within each round.",
        "",
        "Command, from the repository root:",
        "",
        "    .venv/bin/python bench/cpu_per_frame.py --write docs/benchmarks.md",
        "",
        f"One server process, {args.conversations} conversations x {args.fanout} stream "
        f"sockets ({args.conversations * args.fanout} sockets), {args.rate:g} POSTs/s for "
        f"{args.duration:g} s per phase through the bot API; SQLite (WAL) and a private "
        "redis-server for webchat (Redis backplane, bot off, limits off, DEBUG off). "
        "*per POST*: server CPU per POST to a conversation no socket watches; *per frame*: "
        "server CPU per frame delivered on a watched conversation, less the POST's own "
        "(so the notification, the shared stream read and the write, over "
        f"{args.fanout} sockets); *x floor*: webchat against the floor app "
        "(`bench/asgi_floor.py`) under the same server; *vs daphne*: against the same app "
        "under daphne. The script's docstring says how each server is run.",
        "",
        "| server | app | CPU µs per POST (range) | x floor | vs daphne "
        "| CPU µs per frame (range) | x floor | vs daphne | frame bytes | frames sent "
        "| activities received / expected | idle CPU % |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for server in servers:
        for app in apps:
            rows = cells(server, app)
            if not rows:
                continue
            post = [r["per_post_us"] for r in rows]
            frame = [r["per_frame_us"] for r in rows]
            figures = []
            for key in ("per_post_us", "per_frame_us"):
                floor = ratio(results, key, server, app, server, "floor")
                daphne = ratio(results, key, server, app, "daphne", app)
                figures.append(("" if app == "floor" else f"{floor:.1f}x", f"{daphne:.2f}x"))
            expected = sum(r["fan_posts"] for r in rows) * args.fanout
            lines.append(
                f"| {server} | {app} | {median(post):,.0f} ({min(post):,.0f}-{max(post):,.0f}) "
                f"| {figures[0][0]} | {figures[0][1]} "
                f"| {median(frame):,.1f} ({min(frame):,.1f}-{max(frame):,.1f}) "
                f"| {figures[1][0]} | {figures[1][1]} | {rows[0]['frame_bytes']} "
                f"| {sum(r['frames'] for r in rows):,} "
                f"| {sum(r['activities'] for r in rows):,} / {expected:,} "
                f"| {100 * median([r['idle_cpu_per_s'] for r in rows]):.1f} |"
            )
    statuses = {}
    for r in results:
        for status, n in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    lines += ["", f"POST answers over the run: {statuses}."]
    return "\n".join(lines)


def write_block(path, body):
    docs_block.write_block(path, body, BEGIN_MARKER, END_MARKER)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", nargs="+", default=list(SERVERS),
                        help=", ".join(SERVERS))
    parser.add_argument("--apps", nargs="+", default=list(APPS), choices=list(APPS),
                        help="webchat and/or the floor (bench/asgi_floor.py)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--conversations", type=int, default=20, help="watched conversations")
    parser.add_argument("--fanout", type=int, default=100, help="sockets per conversation")
    parser.add_argument("--rate", type=float, default=50, help="POSTs per second")
    parser.add_argument("--duration", type=float, default=10, help="seconds per phase")
    parser.add_argument("--profile", metavar="DIR",
                        help="after the rounds, one more daphne/webchat cell under py-spy "
                             "(raw collapsed stacks of the post and fan phases in DIR)")
    parser.add_argument("--json", metavar="PATH", help="write every cell's figures here")
    parser.add_argument("--write", metavar="PATH", help="update the marked block in PATH")
    parser.add_argument("--report-from", metavar="JSON",
                        help="no run: the report of a run saved with --json")
    args = parser.parse_args()
    if args.report_from:
        saved = json.loads(Path(args.report_from).read_text())
        for name, value in saved["args"].items():
            setattr(args, name, value)
        text = report(saved["results"], args, saved["loads"], args.servers, args.apps,
                      time.gmtime(saved["started"]))  # fmt: skip
        print(text)
        if args.write:
            write_block(args.write, text)
        return
    for server in args.servers:
        server_command(server, "3", "x")  # an unknown name fails before anything starts

    # SIGTERM ends the run through the finally blocks: every process started here stops.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.time()
    loads = [loadavg()]
    redis_server = RedisServer()
    redis_server.start()
    env = {"DEBUG": "0", "WEBCHAT_BOT": "", "LOG_LEVEL": "WARNING",
           "DJANGO_SECRET_KEY": uuid.uuid4().hex * 2, "WEBCHAT_TOKEN_SIGNING_KEY": uuid.uuid4().hex,
           "ALLOWED_HOSTS": "127.0.0.1,localhost", "CORS_ALLOWED_ORIGINS": "http://127.0.0.1",
           "WEBCHAT_METRICS_TOKEN": uuid.uuid4().hex,
           # webchat's settings with the stream's per-IP and per-conversation caps raised
           "DJANGO_SETTINGS_MODULE": "bench.cpu_per_frame_settings"}  # fmt: skip
    cluster = Cluster(database="sqlite", redis_url=redis_server.url, extra_env=env)
    results = []
    try:
        cluster.manage("migrate", "--noinput")
        workdir = Path(tempfile.mkdtemp(prefix="cpu-per-frame-", dir=cluster.directory))
        pairs = [(s, a) for s in args.servers for a in args.apps]
        for round_ in range(args.rounds):
            shift = round_ % len(pairs)
            for server, app in pairs[shift:] + pairs[:shift]:
                say(f"round {round_ + 1}: {server} / {app} (load {loadavg():.2f})")
                result = Cell(server, app, args, cluster, workdir).run()
                result["round"] = round_
                result["load"] = loadavg()
                results.append(result)
                say(f"  per POST {result['per_post_us']:,.0f} µs, per frame "
                    f"{result['per_frame_us']:,.1f} µs, frames {result['frames']}")  # fmt: skip
            loads.append(loadavg())
        if args.profile:
            Path(args.profile).mkdir(parents=True, exist_ok=True)
            say(f"profiling daphne / webchat into {args.profile}")
            Cell("daphne", "webchat", args, cluster, workdir).run(profile_dir=args.profile)
        loads.append(loadavg())
    finally:
        cluster.stop()
        redis_server.cleanup()
    if args.json:
        kept = {name: getattr(args, name) for name in ("servers", "apps", "rounds",
                "conversations", "fanout", "rate", "duration")}  # fmt: skip
        Path(args.json).write_text(json.dumps({"results": results, "loads": loads,
                                               "args": kept, "started": started}, indent=1))
    text = report(results, args, loads, args.servers, args.apps, time.gmtime(started))
    print(text)
    if args.write:
        write_block(args.write, text)


if __name__ == "__main__":
    main()
