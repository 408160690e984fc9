"""Measuring helpers for ``bench/load.py``: /proc sampling, Redis command counts, statistics,
plots and the ``docs/benchmarks.md`` section. Nothing here starts a process."""

import os
import platform
import re
import threading
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

SECTION_HEADING = "## Load: sockets at scale"


def markers(name):
    """The comment lines around a block that ``bench/load.py --write`` regenerates."""
    return (
        f"<!-- load:{name}:begin (bench/load.py --write regenerates this block) -->",
        f"<!-- load:{name}:end -->",
    )


def cpu_seconds(pid):
    """User + system CPU seconds of ``pid`` so far (0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid):
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except OSError:
        return 0


def machine_busy():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class Window:
    """CPU of each watched process over a window, and its peak RSS (sampled every 0.25 s).

    ``start()`` then ``stop()``; ``result()`` gives ``{name: {"cpu": % of one core,
    "rss_mb": peak}}`` plus ``"machine"``: % of all cores busy (every process on the
    machine, other people's included).
    """

    def __init__(self, pids):
        self.pids = dict(pids)
        self._stop = threading.Event()
        self.peak = dict.fromkeys(self.pids, 0)

    def start(self):
        self.wall = time.monotonic()
        self.cpu = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.machine = machine_busy()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.25):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], rss_bytes(pid))

    def stop(self):
        self._stop.set()
        self._thread.join()
        wall = time.monotonic() - self.wall
        busy, total = machine_busy()
        out = {}
        for name, pid in self.pids.items():
            self.peak[name] = max(self.peak[name], rss_bytes(pid))
            out[name] = {
                "cpu": 100 * (cpu_seconds(pid) - self.cpu[name]) / wall,
                "rss_mb": self.peak[name] / 2**20,
            }
        out["machine"] = {
            "cpu": 100 * (busy - self.machine[0]) / max(1, total - self.machine[1]),
            "cores": os.cpu_count(),
        }
        self.seconds = wall
        return out


def gc_counts(port, token):
    """A replica's GC pause histogram and thaws from its ``/metrics`` (with its ``token``):
    ``{"pauses": {generation: {upper bound: cumulative count}}, "thaws": n}``, or None when
    the replica does not answer."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    pauses, thaws = {}, 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "webchat_gc_pause_seconds_bucket":
                bound = float(sample.labels["le"])
                pauses.setdefault(sample.labels["generation"], {})[bound] = sample.value
            elif sample.name == "webchat_gc_thaws_total":
                thaws = sample.value
    return {"pauses": pauses, "thaws": thaws}


def gc_delta(before, after, over=(0.025, 0.1)):
    """GC pauses longer than each of ``over`` (seconds) and thaws between two snapshots,
    summed over replicas; None when a snapshot is missing."""
    if not before or not after or None in before or None in after:
        return None
    out = {f"over_{int(limit * 1000)}ms": 0 for limit in over}
    out["thaws"] = 0
    for first, second in zip(before, after, strict=True):
        out["thaws"] += second["thaws"] - first["thaws"]
        for generation, buckets in second["pauses"].items():
            earlier = first["pauses"].get(generation, {})
            total = buckets[float("inf")] - earlier.get(float("inf"), 0)
            for limit in over:
                within = buckets[limit] - earlier.get(limit, 0)
                out[f"over_{int(limit * 1000)}ms"] += total - within
    return {name: int(value) for name, value in out.items()}


def command_counts(client):
    """``{command: calls}`` from ``INFO commandstats`` (our own INFO calls left out)."""
    stats = client.info("commandstats")
    counts = {}
    for key, value in stats.items():
        name = key.removeprefix("cmdstat_")
        if name != "info":
            counts[name] = value["calls"]
    return counts


def command_delta(before, after):
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    return {name: calls for name, calls in sorted(delta.items()) if calls}


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def summary_ms(latencies_us):
    ordered = sorted(latencies_us)
    return {
        "n": len(ordered),
        "p50": percentile(ordered, 0.50) / 1000,
        "p99": percentile(ordered, 0.99) / 1000,
        "max": (ordered[-1] / 1000) if ordered else float("nan"),
    }


#: The activity the CPU calibration encodes and decodes (the shape of a Direct Line one).
_CALIBRATION_ACTIVITY = {
    "type": "message", "id": "c0-000042", "timestamp": "2026-12-02T19:00:00.000000Z",
    "channelId": "directline", "from": {"id": "bot", "role": "bot"},
    "conversation": {"id": "c0"}, "text": "hello " * 8, "channelData": {"t": 1, "p": "m"},
}  # fmt: skip


def cpu_calibration(repeats=5):
    """Milliseconds of CPU for a fixed pure-Python workload (JSON, dicts, strings: what a
    replica does), the best of ``repeats``. The same code on the same machine kind gives
    different numbers when the host is busy (this VM reports no steal time): compare runs
    through this figure, not through their absolute latencies."""
    import json

    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for i in range(4000):
            text = json.dumps({**_CALIBRATION_ACTIVITY, "id": f"c0-{i:06d}"})
            activity = json.loads(text)
            "".join(sorted(activity)).encode().decode()
        best = min(best, time.process_time() - started)
    return best * 1000


def machine_description():
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[1])
    return (
        f"{os.cpu_count()} cores (nproc), {model}, {mem_kb / 2**20:.1f} GiB RAM, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def plot_latencies(path, title, sides, p99_target_ms=None, what="POST to frame"):
    """A histogram of POST-to-frame latencies (log-spaced bins) with p50/p99/max marked.

    ``sides`` is ``{"same replica": [us...], "other replica": [us...]}``.
    """
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    every = [v for values in sides.values() for v in values]
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    if every:
        low = max(0.05, min(every) / 1000)
        high = max(every) / 1000 * 1.05
        bins = np.logspace(np.log10(low), np.log10(max(high, low * 2)), 80)
        for label, values in sides.items():
            if values:
                ax.hist(np.asarray(values) / 1000, bins=bins, alpha=0.6, label=label)
        stats = summary_ms(every)
        for name, style in (("p50", ":"), ("p99", "--"), ("max", "-")):
            ax.axvline(stats[name], color="black", linestyle=style, linewidth=1,
                       label=f"{name} {stats[name]:.1f} ms")  # fmt: skip
        if p99_target_ms:
            ax.axvline(p99_target_ms, color="red", linewidth=1,
                       label=f"p99 target {p99_target_ms} ms")  # fmt: skip
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(f"{what} (ms, log scale)")
    ax.set_ylabel("frames")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_section(path, body, name="main"):
    """Put ``body`` between the markers of block ``name`` in ``path``, leaving the rest (the
    other sections, the hand-written text around the blocks) alone. A new block goes at the
    end, under this harness's heading (added once)."""
    begin, end = markers(name)
    path = Path(path)
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        if SECTION_HEADING not in text:
            text = text.rstrip("\n") + "\n\n" + SECTION_HEADING
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
