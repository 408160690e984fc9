"""Keep the long-lived heap out of the cyclic garbage collector's full collections.

A replica holding 2,000 stream sockets has ~375,000 objects the collector tracks (daphne's
and autobahn's protocol objects, Channels' consumer tasks and coroutines, our consumer
state). Python 3.11's full collection walks all of them at once, holding the GIL: 120-150
ms here, every ~9 s under 100 POSTs/s, and everything on the replica stops meanwhile. That
was the whole tail of bench/load.py's POST-to-frame latency (p99 115 ms, p50 5 ms; see
docs/benchmarks.md).

:class:`HeapFreezer` moves every object still alive after a collection of the middle or
the oldest generation into the collector's permanent generation (``gc.freeze()``), which
no collection walks: a full collection then walks only what was allocated in the last
fraction of a second, and takes a few milliseconds. Frozen objects are still freed by
reference counting as usual; only reference cycles among them that become garbage (a
closed socket's protocol objects, say) wait, until the process's resident memory has grown
by ``THAW_GROWTH`` (a half, by default) since the last thaw. Then everything is unfrozen
and the next full collection walks the whole heap once, as Python would have done on its
own (it runs one whenever the old generation has grown by a quarter). Memory held by frozen
garbage is thus bounded by that growth; a replica whose sockets stay connected rarely
thaws at all (bench/load.py reports the pauses and thaws of each run).

Installed once per process by ``webchat/asgi.py`` unless ``WEBCHAT_GC_FREEZE`` is false
(setting or environment variable; system check ``webchat.E003``), and only where resident
memory can be read (Linux ``/proc``): without it nothing would ever thaw. Its pauses are exported
as ``webchat_gc_pause_seconds{generation}``, with ``webchat_gc_thaws_total``.
"""

import gc
import os
import time

from notifier.stats import Histogram

#: Pause bucket upper bounds, seconds.
PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
#: Growth of resident memory since the last thaw that triggers the next one.
THAW_GROWTH = 0.5
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int:
    """This process's resident memory (Linux ``/proc``; 0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


class HeapFreezer:
    """Freezes the survivors of each collection of generation 1 or 2; thaws when the
    process's resident memory has grown by ``thaw_growth`` since the last thaw. Works from
    the collector's own callbacks, so it needs no thread or task: a collection may run on
    any thread.

    Growth is measured in memory, not in objects: counting the frozen objects
    (``gc.get_freeze_count()``) walks all of them, as long as the pause this avoids. Memory
    is also what frozen garbage costs.
    """

    def __init__(self, thaw_growth=THAW_GROWTH, memory=resident_bytes):
        self.thaw_growth = thaw_growth
        self.memory = memory
        self.pauses = {generation: Histogram(PAUSE_BUCKETS) for generation in range(3)}
        self.thaws = 0
        self.installed = False
        self._started = None
        self._baseline = 0
        self._thawed = False

    def install(self) -> bool:
        """Called once when the process has loaded its code: freeze it, then follow each
        collection. Returns whether it is installed (a second call changes nothing; without
        a memory reading it does not install)."""
        if self.installed or not self.memory():
            return self.installed
        gc.collect()
        gc.freeze()
        self._baseline = self.memory()
        gc.callbacks.append(self._on_collection)
        self.installed = True
        return True

    def uninstall(self):
        """Stop following collections and unfreeze everything (tests)."""
        if self.installed:
            gc.callbacks.remove(self._on_collection)
            gc.unfreeze()
            self.installed = False

    def _on_collection(self, phase, info):
        # Called by the collector around every collection, with the GIL held; a collection
        # cannot start in here, but freezing and unfreezing only move its lists.
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        if self._started is not None:
            self.pauses[generation].observe(time.perf_counter() - self._started)
        if generation == 0 or (self._thawed and generation == 1):
            return  # thawed: nothing is frozen again before the full collection ran
        gc.freeze()
        if generation != 2:
            return
        if self._thawed:
            # This full collection walked the whole heap: measure growth from here.
            self._thawed = False
            self._baseline = self.memory()
        elif self.memory() > self._baseline * (1 + self.thaw_growth):
            # The next full collection walks everything once and frees frozen cycles.
            gc.unfreeze()
            self._thawed = True
            self.thaws += 1


#: The process's freezer (``webchat/asgi.py`` installs it).
heap_freezer = HeapFreezer()
