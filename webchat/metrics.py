"""The service's Prometheus registry: backplane, stream and HTTP metrics, served at ``/metrics``.

Collectors read what the code keeps anyway at scrape time (the notifier's stats, the
per-replica socket counters); the stream consumers add to :data:`stream_stats`, plain
integers on the event loop, so sending a frame costs two additions. A scrape runs on the
same loop (``webchat.ops``), so it reads consistent values.

Stream metrics::

    webchat_stream_open_sockets{tenant}          open stream sockets on this replica
    webchat_stream_frames_sent_total             ActivitySet frames sent
    webchat_stream_activities_sent_total         activities in those frames
    webchat_stream_replay_activities             histogram: activities in each socket's replay
    webchat_stream_resyncs_total                 resync requests handled by sockets
    webchat_stream_catch_up_sweeps_total         watermark sweeps (webchat.catch_up)
    webchat_stream_catch_up_woken_total          conversations a sweep found behind (a
                                                 notification lost, or one it came before)
    webchat_stream_catch_up_failures_total       sweeps that failed (the database away)

GC metrics (:mod:`webchat.gc_freeze`)::

    webchat_gc_pause_seconds{generation}          histogram: cyclic GC collection pauses
    webchat_gc_thaws_total                        times the frozen heap was unfrozen
                                                  (the frozen object count is not exported:
                                                  counting walks every frozen object)

HTTP metrics are in :mod:`webchat.http_metrics`; backplane metrics in
:mod:`notifier.metrics`; ``process_*`` from prometheus-client's process collector.
"""

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from notifier.metrics import NotifierCollector, histogram_family
from notifier.stats import Histogram

from .gc_freeze import heap_freezer
from .limits import socket_slots

#: Bucket upper bounds for replay sizes (activities; MAX_REPLAY is 1000 by default).
REPLAY_BUCKETS = (0, 1, 5, 10, 25, 50, 100, 250, 500, 1000)

#: The registry ``/metrics`` serves (not prometheus-client's global one: importing other
#: libraries never adds to it, and tests can read it).
REGISTRY = CollectorRegistry()


class StreamStats:
    """Counts what the stream consumers of this process send. Event loop only."""

    def __init__(self):
        self.frames = 0
        self.activities = 0
        self.resyncs = 0
        self.replays = Histogram(REPLAY_BUCKETS)

    def sent(self, activities):
        """Called by a consumer after it sent one frame of ``activities`` activities."""
        self.frames += 1
        self.activities += activities

    def replayed(self, activities):
        """Called once per socket with the size of its first read (its replay)."""
        self.replays.observe(activities)


#: The process's stream counters.
stream_stats = StreamStats()


class StreamCollector:
    """Yields the stream metrics (see the module docstring) at scrape time."""

    def __init__(self, stats=stream_stats, slots=socket_slots):
        self.stats = stats
        self.slots = slots

    @staticmethod
    def _catch_up():
        from .catch_up import catch_up  # needs the models: imported at scrape time

        counters = catch_up.counters.snapshot()
        return (
            ("catch_up_sweeps", "Watermark sweeps of the local stream sockets.",
             counters["sweeps"]),
            ("catch_up_woken", "Conversations a watermark sweep found behind.",
             counters["woken"]),
            ("catch_up_failures", "Watermark sweeps that failed.", counters["failed"]),
        )

    def collect(self):
        sockets = GaugeMetricFamily("webchat_stream_open_sockets",
                                    "Open stream sockets on this replica, by tenant.",
                                    labels=["tenant"])
        for tenant, count in sorted(self.slots.tenant_counts().items()):
            sockets.add_metric([str(tenant)], count)
        yield sockets
        stats = self.stats
        for name, documentation, value in (
            ("frames_sent", "ActivitySet frames sent to stream sockets.", stats.frames),
            ("activities_sent", "Activities sent in those frames.", stats.activities),
            ("resyncs", "Resync requests handled by stream sockets.", stats.resyncs),
            *self._catch_up(),
        ):
            family = CounterMetricFamily(f"webchat_stream_{name}", documentation)
            family.add_metric([], value)
            yield family
        yield histogram_family("webchat_stream_replay_activities",
                               "Activities each socket replayed when it connected.",
                               stats.replays)


class GCCollector:
    """Yields the GC metrics at scrape time (pauses are only followed once installed)."""

    def __init__(self, freezer=heap_freezer):
        self.freezer = freezer

    def collect(self):
        freezer = self.freezer
        pauses = HistogramMetricFamily("webchat_gc_pause_seconds",
                                       "Pauses of the cyclic garbage collector, by generation.",
                                       labels=["generation"])
        for generation, histogram in freezer.pauses.items():
            buckets = [(floatToGoString(bound), count) for bound, count in histogram.cumulative()]
            pauses.add_metric([str(generation)], buckets, histogram.sum)
        yield pauses
        thaws = CounterMetricFamily("webchat_gc_thaws",
                                    "Times the frozen heap was unfrozen for a full collection.")
        thaws.add_metric([], freezer.thaws)
        yield thaws


REGISTRY.register(NotifierCollector())
REGISTRY.register(StreamCollector())
REGISTRY.register(GCCollector())
ProcessCollector(registry=REGISTRY)


def render():
    """The exposition text of :data:`REGISTRY` (Prometheus text format 0.0.4)."""
    return generate_latest(REGISTRY)
