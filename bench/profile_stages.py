"""Where a daphne replica's CPU goes, by stage, from ``bench/cpu_per_frame.py --profile DIR``.

    .venv/bin/python bench/profile_stages.py DIR [--post-us 2800 --fan-post-us 11000 --fanout 100]

Reads py-spy's raw collapsed stacks of the ``post`` phase (``daphne-webchat-p.txt``: POSTs to
unwatched conversations) and the ``fan`` phase (``daphne-webchat-f.txt``: every POST one frame
on each socket of its conversation), drops the samples of threads that wait (py-spy counts a
thread blocked in ``queue.get``, a lock or ``epoll`` as active), and sorts the rest into the
stages below (the first, in their order, with a marker in the stack). With the
measured CPU per POST of each phase (``bench/cpu_per_frame.py --json``: ``per_post_us`` and
``fan_per_post_us``) it turns each stage's share of the samples into µs. Sampling counts wall
time: on a loaded machine a thread waiting for a core shows where it waits, so shares hold
only as far as every stage is slowed alike.
"""

import argparse
import re
from collections import Counter
from pathlib import Path

#: (stage, markers): a sample belongs to the first stage (in this order) with a marker
#: anywhere in its stack; so the reactor, at the root of every stack on the loop, only takes
#: what no other stage claims.
STAGES = (
    ("WebSocket keepalive: daphne's pings, pongs read, timeout checks", (
        "Server.timeout_checker", "WebSocketAdapterProtocol.dataReceived")),
    ("frame send: channels, daphne, autobahn (framing, buffering)", (
        "daphne/ws_protocol.py", "autobahn/", "channels/generic/")),
    ("TCP writes: Twisted transport, every socket (frames, HTTP answers)", (
        "FileDescriptor.doWrite", "writeSomeData")),
    ("stream read: SQL, encode (DB thread)", ("webchat/pages.py", "stream_page", "read_page")),
    ("POST: view, SQLite append (DB thread)", ("webchat/views/", "webchat/transcript.py")),
    ("publish: notifier sender", ("notifier/outbound.py", "notifier/pipeline.py",
                                  "notifier/transport.py", "notifier/publishing.py")),
    ("listener: read, decode, group send", ("notifier/listener.py", "notifier/reader.py",
                                            "notifier/dispatch.py", "notifier/wire.py")),
    ("consumer: wake-up, drain, shared read hand-off", (
        "webchat/consumers.py", "webchat/stream_reads.py", "channels/consumer.py",
        "channels/utils.py", "channels/generic/", "notifier/layers.py")),
    ("POST: HTTP, ASGI, Django (event loop)", (
        "twisted/web/http.py", "daphne/http_protocol.py", "django/core/handlers/",
        "webchat/handler.py", "webchat/ops.py", "webchat/forwarded.py", "notifier/asgi.py",
        "webchat/middleware.py", "corsheaders/", "webchat/http_metrics.py")),
    ("thread hand-offs (executor, call_soon_threadsafe)", (
        "run_in_executor", "call_soon_threadsafe", "asgiref/sync.py", "webchat/db_threads.py",
        "_read_from_self")),
    ("Twisted reactor: socket reads, timers", ("twisted/",)),
)
OTHER = "the rest"
LOOP = "asyncio loop: task steps, future callbacks (C)"
POST_STAGES = ("POST:", "publish:")
#: Innermost frames of a thread that waits rather than runs.
WAITS = (
    re.compile(r"^_worker \(concurrent/futures/thread\.py:81\)$"),  # work_queue.get
    re.compile(r"^SQLiteWriteGate\.hold"),  # the write gate's lock
    re.compile(r"^EpollSelector\.select"),
    re.compile(r"^Condition\.wait|^Event\.wait|^Thread\.join"),
)


def stages(path):
    """``{stage: samples}`` of one raw py-spy file, and the samples dropped as waits."""
    counts, waits = Counter(), 0
    for line in Path(path).read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if any(pattern.match(frames[-1]) for pattern in WAITS):
            waits += int(n)
            continue
        if frames[-1].startswith(("Handle._run ", "BaseEventLoop._run_once ")):
            # The loop itself, in C: task steps, future callbacks (a woken consumer's
            # resumption, shield's callbacks), before any Python frame of theirs.
            stage = LOOP
        else:
            stage = next((name for name, markers in STAGES
                          if any(marker in stack for marker in markers)), OTHER)  # fmt: skip
        counts[stage] += int(n)
    return counts, waits


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", help="the --profile DIR of bench/cpu_per_frame.py")
    parser.add_argument("--post-us", type=float, help="measured CPU µs per POST (post phase)")
    parser.add_argument("--fan-post-us", type=float,
                        help="measured CPU µs per POST in the fan phase, its frames included")
    parser.add_argument("--fanout", type=int, default=100, help="frames per POST in the fan phase")
    args = parser.parse_args()
    directory = Path(args.directory)
    post, post_waits = stages(directory / "daphne-webchat-p.txt")
    fan, fan_waits = stages(directory / "daphne-webchat-f.txt")
    post_total, fan_total = sum(post.values()), sum(fan.values())
    print(f"samples on CPU: post phase {post_total} ({post_waits} waiting dropped), fan phase "
          f"{fan_total} ({fan_waits} dropped)\n")  # fmt: skip
    print("| stage | post phase: share | µs per POST | fan phase: share "
          f"| µs per POST with its {args.fanout} frames | the same per frame |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    names = [name for name, _ in STAGES] + [LOOP, OTHER]
    frame_path = 0.0
    for name in names:
        p_share, f_share = post[name] / post_total, fan[name] / fan_total
        p_us = f"{p_share * args.post_us:,.0f}" if args.post_us else ""
        f_us = f"{f_share * args.fan_post_us:,.0f}" if args.fan_post_us else ""
        # The POST's own stages scale with POSTs, not frames: no per-frame figure for them.
        per_frame = ""
        if args.fan_post_us and not name.startswith(POST_STAGES):
            frame_path += f_share * args.fan_post_us / args.fanout
            per_frame = f"{f_share * args.fan_post_us / args.fanout:,.1f}"
        print(f"| {name} | {100 * p_share:.0f} % | {p_us} | {100 * f_share:.0f} % | {f_us} "
              f"| {per_frame} |")  # fmt: skip
    if args.fan_post_us:
        print(f"| the frame's stages together | | | | | {frame_path:,.1f} |")


if __name__ == "__main__":
    main()
