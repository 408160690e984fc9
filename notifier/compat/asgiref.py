"""asgiref's internals: the only module that touches them.

``webchat.db_threads`` runs database work on threads of its own, except when sync code waits
for the loop through ``async_to_sync`` (Django's test client, a management command): that
thread may hold the transaction the work must see. Telling so reads ``AsyncToSync``'s
``executors`` and ``loop_thread_executors``, exactly as ``sync_to_async`` does to pick its
thread. Both have the same meaning in asgiref 3.6.0 through 3.13.0 (read in each release's
``sync.py``). On another asgiref, or with ``DEPENDENCY_FAST_PATHS = False``, :func:`fast` is
False and ``db_threads`` runs everything through ``sync_to_async(thread_sensitive=True)``,
as Django does for sync code.
"""

import asyncio

import asgiref
from asgiref.sync import AsyncToSync

from . import FastPath, parse_version

INSTALLED = asgiref.__version__
VERSION = parse_version(INSTALLED)

#: ``[first, end)``: the asgiref versions the fast path was written for.
FAST_PATH_VERSIONS = ((3, 6), (3, 14))

SUPPORTED = (FAST_PATH_VERSIONS[0] <= VERSION < FAST_PATH_VERSIONS[1]
             and hasattr(AsyncToSync, "executors")
             and isinstance(getattr(AsyncToSync, "loop_thread_executors", None), dict))

#: Whether the fast path runs: a supported asgiref and the setting on.
fast = FastPath(SUPPORTED)


def sync_caller_waiting():
    """Whether sync code waits for this event loop through ``async_to_sync``: in this
    context, or as the thread that made the loop (asgiref's own two tests for sending
    thread-sensitive work to such a thread; the second covers tasks started in a fresh
    context, as Channels' test communicators start applications). Fast path only."""
    if getattr(AsyncToSync.executors, "current", None) is not None:
        return True
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return False
    return loop in AsyncToSync.loop_thread_executors
