"""bench/replicas.py's report: medians of rounds, the model's fitted constants, markdown, plot."""

import json
import os
import statistics
import sys
import time
from pathlib import Path

import backplane
import numpy

COUNTED = ("given_up", "resent", "superseded", "reconnects", "duplicates")
MODEL_REPLICAS = (2, 4, 8, 16, 32, 64, 128)
LABELS = {"global": "one global channel (this backplane)",
          "sharded": "K = R sharded channels, affinity",
          "pubsub_layer": "RedisPubSubChannelLayer, per group"}


def medians(runs):
    """One row per (contender, R, M): the median of each figure over rounds."""
    rows = []
    for (contender, replicas, rate), rounds in sorted(runs.items()):
        row = {"contender": contender, "replicas": replicas, "rate": rate,
               "rounds": len(rounds), "sent": sum(r["sent"] for r in rounds),
               "lost": sum(r["lost"] for r in rounds),
               **{k: sum(r[k] for r in rounds) for k in COUNTED},
               "load": (min(r["load"][0] for r in rounds), max(r["load"][1] for r in rounds))}
        for key in ("achieved", "drain_s", "redis_us", "replica_us", "replica_max_us",
                    "p50_ms", "p99_ms"):
            row[key] = statistics.median(r[key] for r in rounds)
        rows.append(row)
    return rows


def phases(args):
    """The rates measured, the burst (rate 0) last."""
    return [*args.rates, 0] if args.burst else list(args.rates)


def label(rate):
    return f"{rate:,}" if rate else "burst"


def reference(args):
    """The phase whose constants the model uses: the burst (reads batch, as they do in a
    saturated loop), else the highest rate."""
    return 0 if args.burst else max(args.rates)


def saturated(row):
    """The wall clock could not keep up: the rate fell short, or deliveries trailed."""
    return row["achieved"] < 0.95 * row["rate"] or row["drain_s"] > 1.0 or row["p99_ms"] > 100


def fit(rows, contender, rate):
    """The model's constants from the rows of one phase (None with fewer than 2 R).

    Free least-squares fit over R: Redis µs/notification = a + b·R, mean replica µs per
    notification = d + p/R."""
    points = [r for r in rows if r["contender"] == contender and r["rate"] == rate]
    if len(points) < 2:
        return None
    replicas = numpy.array([r["replicas"] for r in points], dtype=float)
    (a, b), *_ = numpy.linalg.lstsq(numpy.column_stack([numpy.ones_like(replicas), replicas]),
                                    numpy.array([r["redis_us"] for r in points]), rcond=None)
    (d, p), *_ = numpy.linalg.lstsq(numpy.column_stack([numpy.ones_like(replicas), 1 / replicas]),
                                    numpy.array([r["replica_us"] for r in points]), rcond=None)
    free = {"a": a, "b": b, "d": d, "p": p}
    if contender == "global":
        return {**free, "free": free}
    # Routed: each notification has 2 subscribers whatever R (no b), and a replica reads
    # only its own conversations' (no d). The free fit stays beside, as the check.
    return {"a": statistics.median(r["redis_us"] for r in points), "b": 0.0, "d": 0.0,
            "p": statistics.median(r["replica_us"] * r["replicas"] for r in points),
            "free": free}


def limits(constants, replicas):
    """Total notifications/s at which Redis, or one replica, needs one full core."""
    redis = 1e6 / numpy.maximum(constants["a"] + constants["b"] * replicas, 1e-9)
    replica = 1e6 / numpy.maximum(constants["d"] + constants["p"] / replicas, 1e-9)
    return redis, replica


SAVED = ("replicas_list", "rates", "contenders", "conversations", "duration", "repeat", "burst",
         "load_start", "load_end", "command", "date")


def save(args, runs, path):
    """Keep every round's figures beside the report, to re-render it (``--report-from``)."""
    results = [result for rounds in runs.values() for result in rounds]
    path.write_text(json.dumps({"args": {k: getattr(args, k) for k in SAVED},
                                "results": results}, indent=1) + "\n")


def load(args, path):
    """The inverse of :func:`save`: set ``args``' run settings, return the runs."""
    data = json.loads(path.read_text())
    for key, value in data["args"].items():
        setattr(args, key, value)
    runs = {}
    for result in data["results"]:
        key = (result["contender"], result["replicas"], result["rate"])
        runs.setdefault(key, []).append(result)
    return runs


def render(args, runs):
    args.command = getattr(args, "command", None) or " ".join(["bench/replicas.py",
                                                              *sys.argv[1:]])
    args.date = getattr(args, "date", None) or time.strftime("%Y-%m-%d %H:%M UTC",
                                                             time.gmtime())
    if args.write:
        save(args, runs, Path(args.write).with_suffix(".json"))
    rows = medians(runs)
    fits = {(c, m): fit(rows, c, m) for c in args.contenders for m in phases(args)}
    table = [
        "| contender | R | M/s target | M/s achieved | Redis CPU µs/notification "
        "| replica CPU µs/notification: mean (max) | Redis cores | cores per replica "
        "| p50 ms | p99 ms | lost / expected "
        "| given up, superseded, resent, duplicates, reconnects | wall clock | load |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| --- | --- |",
    ]
    for r in sorted(rows, key=lambda r: (r["replicas"], r["rate"] or 1e9, r["contender"])):
        table.append(
            f"| {r['contender']} | {r['replicas']} | {label(r['rate'])} | {r['achieved']:,.0f} "
            f"| {r['redis_us']:.2f} | {r['replica_us']:.2f} ({r['replica_max_us']:.2f}) "
            f"| {r['redis_us'] * r['achieved'] / 1e6:.2f} "
            f"| {r['replica_us'] * r['achieved'] / 1e6:.2f} "
            f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {r['lost']:,} / {2 * r['sent']:,} | {r['given_up']:,}, {r['superseded']:,}, "
            f"{r['resent']:,}, "
            f"{r['duplicates']:,}, {r['reconnects']:,} "
            f"| {'-' if not r['rate'] else 'saturated' if saturated(r) else 'keeps up'} "
            f"| {r['load'][0]:.2f}-{r['load'][1]:.2f} |"
        )
    constants = [
        "| contender | M/s | a: Redis µs/notification | b: Redis µs per subscriber "
        "| d: replica µs per notification it reads | p: replica µs per own notification "
        "| free fit a, b, d, p |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (contender, rate), c in fits.items():
        if c:
            free = ", ".join(f"{c['free'][k]:.2f}" for k in "abdp")
            constants.append(f"| {contender} | {label(rate)} | {c['a']:.2f} | {c['b']:.2f} "
                             f"| {c['d']:.2f} | {c['p']:.2f} | {free} |")
    model = [
        "| R | " + " | ".join(f"{c}: Redis, replica limit" for c in args.contenders) + " |",
        "| ---: | " + " | ".join("---:" for _ in args.contenders) + " |",
    ]
    for replicas in MODEL_REPLICAS:
        cells = []
        for contender in args.contenders:
            c = fits.get((contender, reference(args)))
            cells.append("-" if not c else "{:,.0f}, {:,.0f}".format(*limits(c, replicas)))
        model.append(f"| {replicas} | " + " | ".join(cells) + " |")
    text = [
        "## Measurements (generated by `bench/replicas.py`)",
        f"Machine: {backplane.machine()}. "
        f"Date: {args.date}. "
        f"Load average (1 min) at the start {args.load_start[0]:.2f}, at the end "
        f"{args.load_end[0]:.2f} (shared machine; each row shows the lowest and highest it "
        f"saw). {args.repeat} interleaved round(s); each figure is the median of rounds.",
        f"Command, from the repository root:\n\n    .venv/bin/python {args.command}",
        f"{args.conversations:,} conversations, each with one consumer on each of 2 of the R "
        f"replicas (g mod R and g+1 mod R); replica g mod R publishes g's notifications, "
        f"every replica paced at M/R for {args.duration:g} s per phase; then a burst of "
        f"{args.burst:,} (each replica its share, as fast as it can; *achieved*: first "
        "publish to last delivery). CPU per notification = "
        "CPU seconds in the phase (publishing, draining) / notifications sent: Redis from INFO "
        "cpu, each replica from its process time (the mean over replicas, and the busiest). "
        "Latency: publish call to the remote holder's consumer. *Lost* counts both "
        "deliveries of each notification over all rounds (sums over rounds, like the next "
        "column). What the backplane counted itself (channels_redis counts none of these): "
        "*given up* (its sender's queue full, or a consumer's), *superseded* (a newer "
        "watermark of the same conversation replaced it in a batch waiting to be re-sent), "
        "*resent* (in a batch whose "
        "round trip failed, sent again with the next), and listener *reconnects*; "
        "*duplicates*: a watermark a consumer already had, i.e. a re-sent batch that Redis "
        "had in fact taken (not counted as deliveries). *Wall clock saturated*: under 95 % "
        "of the rate achieved, deliveries trailing by more than 1 s after publishing "
        "stopped, or p99 over 100 ms; the machine has 2 cores for Redis, R replicas and "
        "the other engineers' work, so CPU per notification is the figure to read there.",
        "\n".join(table),
        "### Fitted constants",
        "Per contender and phase: Redis µs/notification = a + b·R; mean replica µs per "
        "notification in the system = d + p/R. With one global channel every replica reads "
        "every notification (d) and Redis writes it to every subscriber (b): a least-squares "
        "fit over R. With routing (sharded, per group) each notification has 2 subscribers "
        "whatever R, and a replica reads only its own conversations' notifications, so b = d "
        "= 0, a is the median of Redis's cost over R and p the median of R × the replica's; "
        "the last column is the free fit over R for these too, as a check of that shape.",
        "\n".join(constants),
        f"### Modelled saturation (constants of the {label(reference(args))} phase)",
        "Total notifications/s at which Redis (one core: 10^6 / (a + b·R)) or each replica "
        "(one core: 10^6 / (d + p/R)) is fully busy with notifications alone; the lower of "
        "the two is the limit.",
        "\n".join(model),
    ]
    if args.write:
        plot(rows, fits, args, Path(args.write).with_suffix(".png"))
        text.append(f"![CPU per notification and modelled limits]"
                    f"({Path(args.write).with_suffix('.png').name})")
    return "\n\n".join(text) + "\n"


def plot(rows, fits, args, path):
    os.environ.setdefault("MPLBACKEND", "Agg")
    from matplotlib import pyplot

    phase = reference(args)
    figure, axes = pyplot.subplots(1, 3, figsize=(16, 4.8))
    span = numpy.linspace(min(args.replicas_list), max(args.replicas_list), 50)
    for contender, colour in zip(args.contenders, ("C0", "C1", "C2"), strict=False):
        points = sorted((r for r in rows if r["contender"] == contender
                         and r["rate"] == phase), key=lambda r: r["replicas"])
        c = fits.get((contender, phase))
        x = [r["replicas"] for r in points]
        axes[0].plot(x, [r["redis_us"] for r in points], "o", color=colour,
                     label=LABELS[contender])
        axes[1].plot(x, [r["replica_us"] for r in points], "o", color=colour,
                     label=LABELS[contender])
        if c:
            axes[0].plot(span, c["a"] + c["b"] * span, "-", color=colour, alpha=0.6)
            axes[1].plot(span, c["d"] + c["p"] / span, "-", color=colour, alpha=0.6)
            model = numpy.array(MODEL_REPLICAS, dtype=float)
            redis_limit, replica_limit = limits(c, model)
            axes[2].plot(model, numpy.minimum(redis_limit, replica_limit), "o-",
                         color=colour, label=LABELS[contender])
    axes[0].set(title=f"Redis CPU per notification ({label(phase)})",
                xlabel="replicas R", ylabel="µs", ylim=(0, None))
    axes[1].set(title=f"CPU per notification, per replica ({label(phase)})",
                xlabel="replicas R", ylabel="µs", ylim=(0, None))
    axes[2].set(title="Modelled limit: first core (Redis or replica) full",
                xlabel="replicas R", ylabel="total notifications/s", xscale="log",
                yscale="log")
    for axis in axes:
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
