"""The tables of ``bench/failures.py``: medians over rounds, ratios against the backplane."""

import statistics

from bench.load_support import machine_description


def fmt(value, spec=".2f", none="—"):
    return none if value is None else format(value, spec)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(ours, theirs):
    """``theirs / ours`` as ``N.Nx``: above 1x the backplane (``ours``) needs less."""
    if ours is None or theirs is None:
        return "—"
    if ours == 0:
        return "∞" if theirs else "1.0x"
    return f"{theirs / ours:.1f}x"


def _storm_row(runs):
    kinds = ("connect", "page", "sweep", "other")
    return {
        "moved": runs[0]["moved"],
        "reconnected": median(r["reconnected_s"] for r in runs),
        "caught": median(r["caught_up_s"] for r in runs),
        "redis": median(sum(r["redis"].values()) for r in runs),
        "redis_socket": median(r["redis_per_socket"] for r in runs),
        "sql": median(sum(r["sql"].values()) for r in runs),
        "sql_socket": {k: median(r["sql_per_socket"][k] for r in runs) for k in kinds},
        "quiet": median(r["latency"]["quiet"]["p99"] for r in runs),
        "storm": median(r["latency"]["storm"]["p99"] for r in runs),
        "cpu": median(r["replica_cpu_s"] for r in runs),
        "server_closes": sum(r["closes"].get(c, 0) for r in runs for c in ("1011", "4500")),
        "bad": (sum(r["repeats"] for r in runs), sum(r["gaps"] for r in runs),
                sum(r["not_caught_up"] for r in runs)),
        "caught_all": ", ".join(fmt(r["caught_up_s"]) for r in runs),
    }  # fmt: skip


def storm_table(storms, designs):
    lines = [
        f"### Reconnect storm: {storms[0]['moved']:,} sockets move, {storms[0]['steady']:,} stay",
        "",
        "| design | reconnected s | caught up s (rounds) | Redis commands | per socket | "
        "statements | per socket: connect, page, other | steady p99 ms: baseline, storm | "
        "survivor CPU s | 1011/4500 closes | repeats, gaps, not caught up |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    rows = {}
    for design in designs:
        runs = [r for r in storms if r["design"] == design]
        if not runs:
            continue
        row = rows[design] = _storm_row(runs)
        per = row["sql_socket"]
        lines.append(
            f"| {design} | {fmt(row['reconnected'])} | {fmt(row['caught'])} "
            f"({row['caught_all']}) | {row['redis']:,.0f} | {row['redis_socket']:.1f} | "
            f"{row['sql']:,.0f} | {per['connect']:.2f}, {per['page']:.2f}, "
            f"{per['other']:.2f} | {fmt(row['quiet'], '.1f')}, {fmt(row['storm'], '.1f')} | "
            f"{fmt(row['cpu'])} | {row['server_closes']} | "
            f"{row['bad'][0]}, {row['bad'][1]}, {row['bad'][2]} |"
        )
    base = rows.get("backplane")
    if base:
        lines.append("")
        for design, row in rows.items():
            if design != "backplane":
                lines.append(
                    f"- {design} against backplane: caught up "
                    f"{ratio(base['caught'], row['caught'])} as long; Redis commands "
                    f"{ratio(base['redis'], row['redis'])}; statements "
                    f"{ratio(base['sql'], row['sql'])}; steady p99 during the storm "
                    f"{ratio(base['storm'], row['storm'])}; survivor CPU "
                    f"{ratio(base['cpu'], row['cpu'])}."
                )
    return lines


def _kinds(run):
    kinds = run.get("sql_kinds")
    if kinds is None:
        return "—"
    return f"{kinds['page']:,}/{kinds['sweep']:,}/{kinds['other']:,}"


def outage_table(outages, designs, gap):
    lines = [
        f"### Redis outage: {outages[0]['sockets']:,} sockets, SIGKILL, {gap:g} s down, "
        "restarted empty",
        "",
        "| design | activities posted | frames due | lost after settle (rounds) | "
        "conversations with a loss | catch-up s (rounds) | statements: page, sweep, other | "
        "POST statuses | repeats, gaps |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for design in designs:
        runs = [r for r in outages if r["design"] == design]
        if not runs:
            continue
        statuses = {}
        for r in runs:
            for k, v in r["statuses"].items():
                statuses[k] = statuses.get(k, 0) + v
        lines.append(
            f"| {design} | {median(r['posted'] for r in runs):,.0f} | "
            f"{median(r['expected_frames'] for r in runs):,.0f} | "
            f"{', '.join(format(r['lost'], ',') for r in runs)} | "
            f"{', '.join(str(r['conversations_lost']) for r in runs)} of "
            f"{runs[0]['conversations']} | "
            f"{', '.join(fmt(r['catch_up_s'], '.2f', 'never') for r in runs)} | "
            f"{', '.join(_kinds(r) for r in runs)} | "
            f"{', '.join(f'{k}: {v}' for k, v in sorted(statuses.items()))} | "
            f"{sum(r['repeats'] for r in runs)}, {sum(r['gaps'] for r in runs)} |"
        )
    return lines


def report(results, args, command, loads, calibration):
    """The Markdown block: conditions, command, then one table per scenario run."""
    storms = [r for r in results if r["scenario"] == "storm"]
    outages = [r for r in results if r["scenario"] == "outage"]
    lines = [
        "## Failures: reconnect storm and Redis outage (`bench/failures.py`)",
        "",
        f"Machine: {machine_description()}; shared with other engineers. Load average "
        f"(1 min) at the start {loads[0]}, at the end {loads[1]}. CPU calibration "
        f"{calibration[0]:.0f} ms before, {calibration[1]:.0f} ms after (lower is faster; "
        f"`bench/load_support.py`). {args.rounds} interleaved round(s) per design; medians "
        "unless the rounds are listed.",
        "",
        "Command, from the repository root:",
        "",
        f"    .venv/bin/python {command}",
        "",
        "The script's docstring says what each scenario does. Statements are counted by a "
        "private PostgreSQL 15 (`pg_stat_statements`, the replicas' role only), Redis "
        "commands by `INFO commandstats`, both from the kill until every moved socket is "
        "caught up, less the baseline's steady traffic over as long. *Per socket*: per moved "
        "socket, with the storm's own posts taken out at what one cost in the baseline "
        "(*connect*: the conversation read of `webchat/queries.py` `CONVERSATION`; *page*: "
        "`ACTIVITIES_PAGE`, a stream read). Ratios are the layer's figure over the "
        "backplane's: above 1x the backplane needs less.",
        "",
    ]
    runs = "; ".join(
        f"{r['scenario']} {r['design']} (round {r['round']}) {r['loadavg'][0]} to {r['loadavg'][1]}"
        for r in results
    )
    lines += [f"Load average (1 min) at each run's start and end: {runs}.", ""]
    if storms:
        lines += [*storm_table(storms, args.designs), ""]
    if outages:
        lines += [*outage_table(outages, args.designs, args.outage_gap), ""]
    return "\n".join(lines)
