"""Prometheus metrics of the backplane, read from the notifier's own stats at scrape time.

Nothing here runs on the publish or delivery paths: :class:`NotifierCollector` reads the
counters the notifier, its sender, listener, probe and resyncer keep anyway, when Prometheus
scrapes. Register it on a registry (``webchat.metrics`` does)::

    registry.register(NotifierCollector())

Names (counters end in ``_total``)::

    webchat_notifier_published_total            notifications published by this process
    webchat_notifier_local_failures_total       local group sends that failed
    webchat_notifier_mirrored_total             payloads PUBLISHed to Redis (re-sent ones too)
    webchat_notifier_publish_failures_total     payloads in failed PUBLISH round trips
    webchat_notifier_publish_dropped_total      payloads given up (queue or retry set full,
                                                unsent at shutdown)
    webchat_notifier_publish_superseded_total   payloads replaced by a newer bump while waiting
    webchat_notifier_resync_requests_total      resync requests published for our peers
    webchat_notifier_publish_failing_seconds    how long every PUBLISH has failed (0: they pass)
    webchat_backplane_received_total            messages on the global channel
    webchat_backplane_delivered_total           ... delivered to local groups
    webchat_backplane_dropped_total{reason}     ... dropped: malformed, self_echo, unknown_version,
                                                bad_signature (signed wire only)
    webchat_backplane_control_bad_signature_total  resync requests refused: unsigned or forged
    webchat_backplane_connects_total            subscriptions (the first one included)
    webchat_backplane_reconnects_total          subscriptions after the first
    webchat_backplane_disconnects_total         connections lost
    webchat_backplane_reconnect_failures_total  connection attempts that failed
                                                (logged as redis_reconnect_fail)
    webchat_backplane_listener_errors_total     unexpected errors (loop restarted)
    webchat_backplane_listener_state{state}     1 for the current state, 0 for the others
    webchat_backplane_resyncs_total{reason}     resync passes: connect, reconnect, peer
    webchat_backplane_resync_groups_total       groups told to re-read
    webchat_backplane_probe_round_trip_seconds  histogram of probe round trips
    webchat_backplane_probe_age_seconds         seconds since the last round trip
    webchat_backplane_probe_failures_total      probe PUBLISHes that failed
    webchat_backplane_probe_lost_total          probes that never came back
    webchat_backplane_duplicate_instance        1 while another process uses our instance id
    webchat_backplane_lag_seconds               histogram: PUBLISH to delivery (stamped ones)
    webchat_backplane_up                        1 when /readyz's backplane check passes
    webchat_backplane_degraded                  1 while it passes degraded (shared trouble)
"""

import time

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.utils import floatToGoString

from .dispatch import DROP_REASONS
from .health import DEGRADED, backplane_status
from .listener import CLOSED, CONNECTED, CONNECTING, IDLE, RECONNECTING
from .resync import REASONS as RESYNC_REASONS
from .runtime import get_runtime

LISTENER_STATES = (IDLE, CONNECTING, CONNECTED, RECONNECTING, CLOSED)

_NOTIFIER_COUNTERS = (
    ("published", "published", "Notifications published by this process."),
    ("local_failures", "local_failures", "Local group sends that failed."),
    ("mirrored", "mirrored", "Payloads PUBLISHed to Redis (re-sent ones included)."),
    ("mirror_failures", "publish_failures", "Payloads in failed PUBLISH round trips."),
    ("mirror_dropped", "publish_dropped", "Payloads given up without being PUBLISHed."),
    ("mirror_superseded", "publish_superseded",
     "Payloads replaced by a newer bump of their conversation while waiting to be re-sent."),
    ("resync_requests", "resync_requests", "Resync requests published for the other replicas."),
)


def histogram_family(name, documentation, histogram):
    """A Prometheus histogram family from a :class:`notifier.stats.Histogram`."""
    family = HistogramMetricFamily(name, documentation)
    buckets = [(floatToGoString(bound), count) for bound, count in histogram.cumulative()]
    family.add_metric([], buckets, histogram.sum)
    return family


def _counter(name, documentation, value, labels=None):
    family = CounterMetricFamily(name, documentation, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


class NotifierCollector:
    """Yields the backplane's metrics from the process's runtime (see the module docstring).

    ``runtime``: a callable returning the :class:`notifier.runtime.Runtime` (default: the
    process's).
    """

    def __init__(self, runtime=get_runtime):
        self._runtime = runtime

    def collect(self):
        runtime = self._runtime()
        stats = runtime.notifier.stats()
        for key, name, documentation in _NOTIFIER_COUNTERS:
            if key in stats:
                yield _counter(f"webchat_notifier_{name}", documentation, stats[key])
        failing = runtime.notifier.publish_failing()
        yield GaugeMetricFamily("webchat_notifier_publish_failing_seconds",
                                "Seconds every PUBLISH has failed (0 while they go through).",
                                value=0 if failing is None else time.monotonic() - failing[0])
        listener = runtime.listener
        status = backplane_status(runtime)
        yield GaugeMetricFamily("webchat_backplane_up",
                                "1 when the backplane check of /readyz passes.",
                                value=1 if status["ok"] else 0)
        yield GaugeMetricFamily("webchat_backplane_degraded",
                                "1 while /readyz passes degraded: Redis trouble every replica "
                                "shares (the backplane check is not ok in strict mode).",
                                value=1 if status.get("state") == DEGRADED else 0)
        if listener is None:
            return
        yield from self._listener(listener)
        if listener.resyncer is not None:
            yield from self._resyncer(listener.resyncer)
        if listener.probe is not None:
            yield from self._probe(listener.probe)

    def _listener(self, listener):
        counters = listener.counters.snapshot()
        yield _counter("webchat_backplane_received", "Messages received on the global channel.",
                       counters["received"])
        yield _counter("webchat_backplane_delivered", "Messages delivered to local groups.",
                       counters["delivered"])
        dropped = CounterMetricFamily("webchat_backplane_dropped",
                                      "Messages dropped by the listener, by reason.",
                                      labels=["reason"])
        for reason in DROP_REASONS:
            dropped.add_metric([reason], counters[reason])
        yield dropped
        yield _counter("webchat_backplane_control_bad_signature",
                       "Resync requests refused as unsigned or forged (signed wire only).",
                       counters["control_bad_signature"])
        connects = counters["connects"]
        yield _counter("webchat_backplane_connects", "Subscriptions, the first one included.",
                       connects)
        yield _counter("webchat_backplane_reconnects", "Subscriptions after the first one.",
                       max(0, connects - 1))
        yield _counter("webchat_backplane_disconnects", "Subscriber connections lost.",
                       counters["disconnects"])
        yield _counter("webchat_backplane_reconnect_failures",
                       "Connection attempts that failed (logged as redis_reconnect_fail).",
                       counters["reconnect_failures"])
        yield _counter("webchat_backplane_listener_errors",
                       "Unexpected listener errors (the loop restarted).", counters["errors"])
        state = GaugeMetricFamily("webchat_backplane_listener_state",
                                  "The listener's state: 1 for the current one.",
                                  labels=["state"])
        for name in LISTENER_STATES:
            state.add_metric([name], 1 if listener.state == name else 0)
        yield state
        yield histogram_family("webchat_backplane_lag_seconds",
                               "Seconds from a stamped message's PUBLISH to its local delivery.",
                               listener.lag)

    def _resyncer(self, resyncer):
        counters = resyncer.counters.snapshot()
        passes = CounterMetricFamily("webchat_backplane_resyncs",
                                     "Resync passes over the local consumers, by reason.",
                                     labels=["reason"])
        for reason in RESYNC_REASONS:
            passes.add_metric([reason], counters[reason])
        yield passes
        yield _counter("webchat_backplane_resync_groups",
                       "Conversation groups told to re-read from their cursor.",
                       counters["groups"])

    def _probe(self, probe):
        status = probe.status()
        yield histogram_family("webchat_backplane_probe_round_trip_seconds",
                               "Round trips of the probe through Redis.", probe.rtt)
        age = status["since_last_round_trip_s"]
        yield GaugeMetricFamily("webchat_backplane_probe_age_seconds",
                                "Seconds since the last probe round trip (-1: none yet).",
                                value=-1 if age is None else age)
        yield _counter("webchat_backplane_probe_failures", "Probe PUBLISHes that failed.",
                       status["publish_failures"])
        yield _counter("webchat_backplane_probe_lost", "Probes that never came back.",
                       status["lost"])
        yield GaugeMetricFamily("webchat_backplane_duplicate_instance",
                                "1 while another process uses this process's instance id.",
                                value=1 if status["duplicate_instance"] else 0)
