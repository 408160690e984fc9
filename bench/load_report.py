"""The table, the targets and the docs section of ``bench/load.py``."""

import math

from bench.load_support import machine_description, plot_latencies, summary_ms, write_section

P99_TARGET_MS = 25


def median_numbers(rounds):
    """One dict shaped like each of ``rounds``: numbers are the median over the rounds
    (NaN left out), anything else comes from the first round."""
    first = rounds[0]
    if len(rounds) == 1:
        return first
    if isinstance(first, dict):
        return {key: median_numbers([r.get(key, value) for r in rounds])
                for key, value in first.items()}  # fmt: skip
    if isinstance(first, int | float) and not isinstance(first, bool):
        values = sorted(v for v in rounds if isinstance(v, int | float) and not math.isnan(v))
        if not values:
            return float("nan")
        middle = len(values) // 2
        return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2
    return first


def merge_latencies(reports):
    """Merge the client processes' dumps: ``{phase: {"same", "other", "last_frame_ns"}}``."""
    merged = {}
    for report in reports:
        for phase, data in report.items():
            into = merged.setdefault(
                phase, {"same": [], "other": [], "stored": [], "last_frame_ns": None,
                        "sent_ns": [], "latency_us": []}
            )
            into["sent_ns"].extend(data.get("sent_ns", []))
            into["latency_us"].extend(data["same"] + data["other"])
            into["stored"].extend(data.get("stored", []))
            into["same"].extend(data["same"])
            into["other"].extend(data["other"])
            last = data["last_frame_ns"]
            if last is not None:
                into["last_frame_ns"] = max(into["last_frame_ns"] or 0, last)
    return merged


def phase_numbers(result, phase_key, tag):
    """Latency and cost numbers of one posted phase of one design's result."""
    posted = result.get(phase_key)
    if not posted:
        return {}
    lat = result["latencies"].get(
        tag, {"same": [], "other": [], "stored": [], "last_frame_ns": None}
    )
    every = summary_ms(lat["same"] + lat["other"])
    stored = summary_ms(lat["stored"])
    ok = posted["ok"]
    redis_calls = posted["redis"]
    out = {
        "rate": posted["rate"],
        "ok": ok,
        "statuses": posted["statuses"],
        "behind_ms": posted["behind_ms"],
        "http_p50": posted["http_ms"]["p50"],
        "http_p99": posted["http_ms"]["p99"],
        "p50": every["p50"],
        "p99": every["p99"],
        "max": every["max"],
        "stored_p50": stored["p50"],
        "stored_p99": stored["p99"],
        "p99_same": summary_ms(lat["same"])["p99"],
        "p99_other": summary_ms(lat["other"])["p99"],
        "frames": posted["received"],
        "expected": posted["expected_frames"],
        "redis_per_activity": sum(redis_calls.values()) / max(1, ok),
        "publish_per_activity": redis_calls.get("publish", 0) / max(1, ok),
        "redis_commands": redis_calls,
        "usage": posted["usage"],
        "gc": posted.get("gc"),
    }
    last, first = lat["last_frame_ns"], posted["first_ns"]
    out["p99_by_second"] = p99_by_second(lat, first)
    expected = posted["expected_frames"]
    out["missing"] = max(0, expected - posted["received"])
    if last and first and expected:
        # Activities whose frames reached every socket, per second from the first POST to
        # the last frame (frames that never came count as activities not delivered).
        share = min(1.0, posted["received"] / expected)
        out["delivered_rate"] = ok * share / ((last - first) / 1e9)
    else:
        out["delivered_rate"] = float("nan")
    return out


def p99_by_second(lat, first_ns):
    """POST-to-frame p99 (ms) of the activities posted in each second of the phase (from its
    first POST): shows whether a phase starts slow (e.g. work left over from connecting)."""
    pairs = list(zip(lat.get("sent_ns", []), lat.get("latency_us", []), strict=True))
    if not pairs or first_ns is None:
        return []
    seconds = {}
    for sent, latency in pairs:
        seconds.setdefault(max(0, (sent - first_ns) // 10**9), []).append(latency)
    return [round(summary_ms(seconds.get(s, []))["p99"], 1) for s in range(max(seconds) + 1)]


def calibration_line(args):
    """The CPU calibration measured before and after the run (``bench.load_support``)."""
    start, end = getattr(args, "calibration", (None, None))
    if start is None:
        return ""
    return (
        f"CPU calibration (a fixed pure-Python workload, best of 5, lower is faster; the host's "
        f"other tenants move it): {start:.0f} ms before the run, {end:.0f} ms after."
    )


def numbers(result):
    connect = result["connect"]
    out = {
        "design": result["design"],
        "connected": connect["connected"],
        "sockets": connect["sockets"],
        "connect_errors": connect["errors"],
        "connect_seconds": connect["seconds"],
        "redis_per_connect": connect["redis_per_connect"],
        "connect_redis": connect["redis"],
        "redis_background": result.get("redis_background", {}),
        "paced": phase_numbers(result, "paced", "m"),
        "burst": phase_numbers(result, "burst", "b"),
        "crowded": phase_numbers(result, "crowded", "c"),
        "fanout": phase_numbers(result, "fanout", "f"),
        "fanout_burst": phase_numbers(result, "fanout_burst", "F"),
    }
    idle = result.get("idle")
    if idle:
        out["idle"] = {
            "sockets_on_replica0": connect["connected"] // 2 + idle["connected"],
            "connected": idle["connected"],
            "errors": idle["errors"],
            "seconds": idle["seconds"],
            "redis_per_connect": idle["redis_per_connect"],
            "rss_before_mb": idle["rss_before_mb"],
            "rss_after_mb": idle["rss_after_mb"],
            "kb_per_socket": 1024
            * (idle["rss_after_mb"] - idle["rss_before_mb"])
            / max(1, idle["connected"]),
            "open_at_end": result.get("open_at_end"),
        }
    return out


def print_design(result):
    n = numbers(result)
    paced = n["paced"]
    if not paced:
        fan = n["fanout"] or {"rate": 0, "p50": 0, "p99": 0}
        print(
            f"  {n['design']}: {n['connected']}/{n['sockets']} sockets; fan-out only "
            f"{fan['rate']:.0f}/s p50 {fan['p50']:.1f} p99 {fan['p99']:.1f} ms",
            flush=True,
        )
        return
    print(
        f"  {n['design']}: {n['connected']}/{n['sockets']} sockets, "
        f"{n['redis_per_connect']:.2f} Redis cmds/connect; paced {paced['rate']:.0f}/s "
        f"p50 {paced['p50']:.1f} p99 {paced['p99']:.1f} max {paced['max']:.1f} ms, "
        f"frames {paced['frames']}/{paced['expected']}, "
        f"{paced['redis_per_activity']:.2f} cmds/activity; POST burst "
        f"{n['burst'].get('delivered_rate', float('nan')):.0f}, fan-out burst "
        f"{n['fanout_burst'].get('delivered_rate', float('nan')):.0f} activities/s delivered",
        flush=True,
    )


def _fmt(value, digits=1):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


# (label, getter, digits, compare: True when a ratio is meaningful)
ROWS = [
    ("sockets open (both replicas)", lambda n: n["connected"], 0, False),
    ("Redis commands per connect", lambda n: n["redis_per_connect"], 2, False),
    ("Redis background commands/s, nothing happening",
     lambda n: sum(n["redis_background"].values()), 1, False),
    ("connect time for all sockets (s)", lambda n: n["connect_seconds"], 1, True),
    ("paced: activities/s achieved", lambda n: n["paced"]["rate"], 1, True),
    ("paced: POST→frame p50 (ms)", lambda n: n["paced"]["p50"], 1, True),
    ("paced: POST→frame p99 (ms)", lambda n: n["paced"]["p99"], 1, True),
    ("paced: POST→frame max (ms)", lambda n: n["paced"]["max"], 1, True),
    ("paced: stored→frame p50 / p99 (ms; fan-out path only)",
     lambda n: f"{_fmt(n['paced']['stored_p50'])} / {_fmt(n['paced']['stored_p99'])}", 1, False),
    ("paced: p99 same replica / other replica (ms)",
     lambda n: f"{_fmt(n['paced']['p99_same'])} / {_fmt(n['paced']['p99_other'])}", 1, False),
    ("paced: frames received / expected",
     lambda n: f"{n['paced']['frames']:,.0f} / {n['paced']['expected']:,.0f}", 0, False),
    ("burst: frames received / expected",
     lambda n: f"{n['burst']['frames']:,.0f} / {n['burst']['expected']:,.0f}", 0, False),
    ("paced: POST answer p50 / p99 (ms)",
     lambda n: f"{_fmt(n['paced']['http_p50'])} / {_fmt(n['paced']['http_p99'])}", 1, False),
    ("paced: Redis commands per activity", lambda n: n["paced"]["redis_per_activity"], 2, True),
    ("paced: PUBLISH per activity", lambda n: n["paced"]["publish_per_activity"], 2, False),
    ("paced: CPU replica 0 / 1 (% of a core)",
     lambda n: "{:.0f} / {:.0f}".format(n["paced"]["usage"]["replica0"]["cpu"],
                                        n["paced"]["usage"]["replica1"]["cpu"]), 0, False),
    ("paced: CPU redis / poster / clients (%)",
     lambda n: "{:.0f} / {:.0f} / {:.0f}".format(
         n["paced"]["usage"]["redis"]["cpu"], n["paced"]["usage"]["poster"]["cpu"],
         sum(v["cpu"] for k, v in n["paced"]["usage"].items() if k.startswith("clients"))),
     0, False),
    ("paced: CPU of other people's processes (% of a core)",
     lambda n: n["paced"]["usage"]["others"]["cpu"], 0, False),
    ("paced: machine busy, all processes (% of all cores)",
     lambda n: n["paced"]["usage"]["machine"]["cpu"], 0, False),
    ("paced: GC pauses over 25 ms / over 100 ms, GC thaws (both replicas)",
     lambda n: "{over_25ms} / {over_100ms}, {thaws}".format(**n["paced"]["gc"])
     if n["paced"].get("gc") else "–", 0, False),
    ("paced: peak RSS replica 0 / 1 (MB)",
     lambda n: "{:.0f} / {:.0f}".format(n["paced"]["usage"]["replica0"]["rss_mb"],
                                        n["paced"]["usage"]["replica1"]["rss_mb"]), 0, False),
    ("fan-out only: activities/s written (worker, no HTTP)",
     lambda n: n["fanout"]["rate"], 1, True),
    ("fan-out only: write→frame p50 (ms)", lambda n: n["fanout"]["p50"], 1, True),
    ("fan-out only: write→frame p99 (ms)", lambda n: n["fanout"]["p99"], 1, True),
    ("fan-out only: write→frame max (ms)", lambda n: n["fanout"]["max"], 1, True),
    ("fan-out only: frames received / expected",
     lambda n: f"{n['fanout']['frames']:,.0f} / {n['fanout']['expected']:,.0f}", 0, False),
    ("fan-out only: Redis commands per activity",
     lambda n: n["fanout"]["redis_per_activity"], 2, True),
    ("fan-out only: CPU replica 0 / 1 / worker (%)",
     lambda n: "{:.0f} / {:.0f} / {:.0f}".format(n["fanout"]["usage"]["replica0"]["cpu"],
                                              n["fanout"]["usage"]["replica1"]["cpu"],
                                              n["fanout"]["usage"]["poster"]["cpu"]), 0, False),
    ("fan-out burst: activities/s written (one writer, flat out)",
     lambda n: n["fanout_burst"]["rate"], 0, True),
    ("fan-out burst: activities/s delivered to every socket",
     lambda n: n["fanout_burst"]["delivered_rate"], 0, True),
    ("fan-out burst: write→frame p99 (ms)", lambda n: n["fanout_burst"]["p99"], 1, True),
    ("fan-out burst: frames received / expected",
     lambda n: f"{n['fanout_burst']['frames']:,.0f} / {n['fanout_burst']['expected']:,.0f}", 0,
     False),
    ("burst: activities/s posted", lambda n: n["burst"]["rate"], 0, True),
    ("burst: activities/s delivered to every socket",
     lambda n: n["burst"]["delivered_rate"], 0, True),
    ("burst: POST→frame p99 (ms)", lambda n: n["burst"]["p99"], 1, True),
    ("burst: stored→frame p99 (ms)", lambda n: n["burst"]["stored_p99"], 1, True),
    ("burst: CPU replica 0 / 1 (%)",
     lambda n: "{:.0f} / {:.0f}".format(n["burst"]["usage"]["replica0"]["cpu"],
                                        n["burst"]["usage"]["replica1"]["cpu"]), 0, False),
    ("idle: sockets on replica 0", lambda n: n.get("idle", {}).get("sockets_on_replica0"), 0,
     False),
    ("idle: Redis commands per connect", lambda n: n.get("idle", {}).get("redis_per_connect"),
     2, False),
    ("idle: replica 0 RSS before → after (MB)",
     lambda n: "{:.0f} → {:.0f}".format(n["idle"]["rss_before_mb"], n["idle"]["rss_after_mb"])
     if n.get("idle") else None, 0, False),
    ("idle: RSS per socket (KB)", lambda n: n.get("idle", {}).get("kb_per_socket"), 1, True),
    ("crowded: POST→frame p99 (ms)", lambda n: n.get("crowded", {}).get("p99"), 1, True),
]  # fmt: skip


def setup_line(a):
    """The "Setup:" sentence of a block: what ran, from the harness's arguments."""
    phases = []
    if a.warmup:
        phases.append(f"warm-up {a.warmup:g} s at {a.rate:g}/s")
    if a.duration:
        phases.append(f"paced POSTs at {a.rate:g}/s for {a.duration:g} s")
    if a.fanout_only:
        phases.append(
            f"fan-out only (a worker writes, no HTTP) at {a.rate:g}/s, then flat out, "
            f"{a.fanout_only:g} s each"
        )
    if a.burst:
        phases.append(f"POST burst {a.burst:g} s, {a.connections} connections per replica")
    if a.idle > a.sockets:
        crowd = f"{a.idle:,} sockets on replica 0"
        if a.duration:
            crowd += f', then {a.rate:g}/s for {a.duration / 2:g} s ("crowded")'
        phases.append(crowd)
    database = a.database
    if database == "sqlite":
        database += f" (WAL, synchronous={a.sqlite_synchronous})"
    rounds = (
        f" {a.rounds} rounds, designs interleaved: each number is the median over the rounds, "
        "each plot has every round's frames."
        if a.rounds > 1
        else ""
    )
    return (
        f"Setup: {a.sockets:,} sockets per replica ({a.fanout} per conversation on each "
        f"replica), {a.client_procs} client processes, database {database}. Phases: "
        + "; ".join(phases)
        + "."
        + rounds
    )


class Report:
    def __init__(self, args, results, command):
        self.args = args
        self.command = command
        by_design = {}
        for result in results:
            by_design.setdefault(result["design"], []).append(result)
        #: Per design: the median of each number over the rounds.
        self.per_design = [median_numbers([numbers(r) for r in group])
                           for group in by_design.values()]  # fmt: skip
        #: Per design: every round's latencies together (for the plots).
        self.latencies = {
            design: merge_latencies([r["latencies"] for r in group])
            for design, group in by_design.items()
        }

    def numbers(self):
        return {"command": self.command, "machine": machine_description(),
                "cpu_calibration_ms": getattr(self.args, "calibration", None),
                "designs": self.per_design}  # fmt: skip

    def table(self):
        designs = [n["design"] for n in self.per_design]
        base = self.per_design[0]
        others = self.per_design[1:]
        head = ["", *designs, *(f"{n['design']} / {base['design']}" for n in others)]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for label, get, digits, compare in ROWS:
            cells = [label]
            values = []
            for n in self.per_design:
                try:
                    value = get(n)
                except (KeyError, TypeError):
                    value = None
                values.append(value)
                cells.append(value if isinstance(value, str) else _fmt(value, digits))
            if all(v is None for v in values):
                continue  # a phase this run skipped
            for value in values[1:]:
                if compare and isinstance(value, int | float) and values[0]:
                    cells.append(f"{value / values[0]:.2f}×")
                else:
                    cells.append("")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def targets(self):
        n = next((n for n in self.per_design if n["design"] == "backplane"), None)
        if n is None:
            return []
        a = self.args
        out = []
        paced, idle = n["paced"], n.get("idle", {})
        if paced:
            lossless = paced["frames"] >= paced["expected"]
            out.append(
                (
                    f"{a.sockets:,} sockets per replica, p99 POST→frame ≤ {P99_TARGET_MS} ms at "
                    f"{a.rate:g} activities/s",
                    paced["p99"] <= P99_TARGET_MS
                    and lossless
                    and paced["rate"] >= 0.97 * a.rate
                    and n["connected"] == 2 * a.sockets,
                    f"p99 {paced['p99']:.1f} ms at {paced['rate']:.0f}/s posted, "
                    f"{n['connected']:,.0f} sockets, "
                    f"frames {paced['frames']:,.0f}/{paced['expected']:,.0f}",
                )
            )
        fan = n["fanout"]
        if fan:
            out.append(
                (
                    f"(fan-out only, no HTTP) p99 write→frame ≤ {P99_TARGET_MS} ms at {a.rate:g}/s",
                    fan["p99"] <= P99_TARGET_MS
                    and fan["frames"] >= fan["expected"]
                    and fan["rate"] >= 0.97 * a.rate,
                    f"p99 {fan['p99']:.1f} ms at {fan['rate']:.0f}/s written",
                )
            )
        if idle:
            out.append(
                (
                    f"{a.idle:,} idle sockets on one replica",
                    idle["sockets_on_replica0"] >= a.idle
                    and (idle.get("open_at_end") or 0) >= a.idle + a.sockets,
                    f"{idle['sockets_on_replica0']:,.0f} open, "
                    f"{idle['kb_per_socket']:.1f} KB RSS each",
                )
            )
        out.append(
            (
                "0 Redis commands per connect",
                n["redis_per_connect"] == 0 and idle.get("redis_per_connect", 0) == 0,
                f"{n['redis_per_connect']:.2f} (load), "
                f"{idle.get('redis_per_connect', 0):.2f} (idle)",
            )
        )
        counted = paced or fan
        if counted:
            # Net of the background (the listener's probe): a probe landing in the window
            # or not moves the count by one, hence the rounding.
            out.append(
                (
                    "≤ 1 PUBLISH per activity",
                    round(counted["publish_per_activity"], 2) <= 1.0,
                    f"{counted['publish_per_activity']:.2f} PUBLISH, "
                    f"{counted['redis_per_activity']:.2f} commands in all",
                )
            )
        rivals = [m for m in self.per_design if m["design"] != "backplane"]
        for phase, what in (("fanout_burst", "fan-out"), ("burst", "POST")):
            if rivals and n[phase]:
                ours = n[phase]["delivered_rate"]
                theirs = [m[phase].get("delivered_rate", float("nan")) for m in rivals]
                out.append(
                    (
                        f"{what} throughput ahead of both channels_redis layers",
                        all(ours > t for t in theirs),
                        f"{ours:.0f} vs "
                        + ", ".join(
                            f"{m['design']} {t:.0f}" for m, t in zip(rivals, theirs, strict=True)
                        )
                        + " activities/s delivered to every socket",
                    )
                )
        return out

    def markdown(self, plots):
        a = self.args
        lines = [
            f"### Results, `{a.section}` block (generated by `bench/load.py`)",
            "",
            f"Command: `.venv/bin/python {self.command}`",
            "",
            f"Machine: {machine_description()}. Clients, poster, Redis and both replicas "
            "share these cores (their CPU is in the table). " + calibration_line(a),
            "",
            setup_line(a),
            "",
            self.table(),
            "",
            "Targets (backplane design):",
            "",
        ]  # fmt: skip
        for what, met, detail in self.targets():
            lines.append(f"- {'met' if met else '**missed**'}: {what} ({detail})")
        lines.append("")
        for design, plot in plots:
            lines.append(f"![POST-to-frame latency, {design}]({plot})")
        return "\n".join(lines) + "\n"

    def write(self, path):
        a = self.args
        plots = []
        for design, latencies in self.latencies.items():
            if "m" in latencies:
                lat, what, axis = latencies["m"], "POST→frame", "POST to frame"
                sides = {"same replica": lat["same"], "other replica": lat["other"]}
            else:
                lat, what = latencies.get("f", {"other": []}), "write→frame (no HTTP)"
                axis = "worker's write to frame"
                sides = {"both replicas": lat["other"]}
            prefix = "load" if a.section == "main" else f"load-{a.section}"
            name = f"{prefix}-latency-{design}.png"
            rounds = f", {a.rounds} rounds" if a.rounds > 1 else ""
            plot_latencies(
                path.parent / name,
                f"{design}: {what}, {a.sockets:,} sockets/replica, {a.rate:g} activities/s"
                + rounds, sides, P99_TARGET_MS, axis,
            )  # fmt: skip
            plots.append((design, name))
        write_section(path, self.markdown(plots), a.section)


def print_targets(report):
    for what, met, detail in report.targets():
        print(f"  {'MET   ' if met else 'MISSED'} {what}: {detail}")
