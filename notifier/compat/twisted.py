"""Twisted's internals: the only module that touches them.

Under daphne the runtime registers its shutdown with the reactor only when that reactor
drives the runtime's event loop. ``AsyncioSelectorReactor`` keeps its loop in the private
``_asyncioEventloop`` (Twisted 22.4 through 26.x). On another Twisted, or with
``DEPENDENCY_FAST_PATHS = False``, the public answer is used: an asyncio reactor that is
running drives the running loop (daphne's case: it installs that reactor on the loop it
runs).
"""

import sys

from . import fast_paths_enabled, parse_version

#: ``[first, end)``: the Twisted versions the fast path was written for.
FAST_PATH_VERSIONS = ((22, 4), (27,))


def _version():
    twisted = sys.modules.get("twisted")
    return parse_version(getattr(twisted, "__version__", "0"))


def reactor_drives(reactor, loop):
    """Whether ``reactor`` (an installed Twisted reactor) runs on the asyncio ``loop``."""
    if (fast_paths_enabled() and FAST_PATH_VERSIONS[0] <= _version() < FAST_PATH_VERSIONS[1]
            and hasattr(reactor, "_asyncioEventloop")):
        return reactor._asyncioEventloop is loop
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    return isinstance(reactor, AsyncioSelectorReactor) and bool(reactor.running) and \
        loop.is_running()
