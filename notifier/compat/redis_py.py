"""redis-py's and hiredis's internals: the only module that touches them.

Two fast paths read past redis-py's public API (what each buys: docs/benchmarks.md):

* :mod:`notifier.pipeline` takes a pooled connection (``ConnectionPool.get_connection()``,
  whose signature changed in 5.3) and writes a batch of PUBLISHes in RESP itself;
* :mod:`notifier.reader` takes the replies hiredis has already parsed
  (``connection._parser._reader.gets()`` and hiredis's ``NOT_ENOUGH_DATA``).

They run on the redis-py versions in :data:`FAST_PATH_VERSIONS` while
``DEPENDENCY_FAST_PATHS`` is on. Otherwise :func:`fast` is False and the callers use a
``Pipeline`` and ``parse_response``/``read_response``, one reply per call. Below
:data:`FLOOR` nothing works (the asyncio client has no ``aclose()``): system check
``notifier.E020`` and the Redis notifier refuse to start.
"""

import redis

from . import FastPath, parse_version

#: The installed redis-py, as it names itself and as a tuple (``(8, 1, 0)``).
INSTALLED = redis.__version__
VERSION = parse_version(INSTALLED)

#: The oldest redis-py the notifier works with (public API only).
FLOOR = (5, 0, 1)
FLOOR_TEXT = ".".join(map(str, FLOOR))

#: ``[first, end)``: the redis-py versions the fast paths were written and tested for.
FAST_PATH_VERSIONS = ((5, 3), (9,))

try:
    from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
except ImportError:  # another layout: the public path only
    NOT_ENOUGH_DATA = _AsyncHiredisParser = None

#: Whether this redis-py is one the fast paths were written for.
SUPPORTED = (FAST_PATH_VERSIONS[0] <= VERSION < FAST_PATH_VERSIONS[1]
             and _AsyncHiredisParser is not None)

#: Whether the fast paths run: a supported redis-py and the setting on.
fast = FastPath(SUPPORTED)


def below_floor():
    """The error message when the installed redis-py is older than :data:`FLOOR`, else None."""
    if VERSION >= FLOOR:
        return None
    return (f"redis-py {INSTALLED} is installed; the notifier needs redis-py "
            f">= {FLOOR_TEXT}.")


async def get_connection(pool):
    """A connection from ``pool`` (redis-py >= 5.3 takes no command name). Fast path only."""
    return await pool.get_connection()


def hiredis_parser(connection):
    """``(parser, gets)`` of ``connection``'s hiredis parser, when every reply it holds may
    be taken straight from hiredis; else ``(None, None)``: one reply per public read.

    Not with redis-py's pure-Python parser, nor with a health-check interval (redis-py then
    checks the connection before each read).
    """
    parser = connection._parser if connection is not None else None
    if type(parser) is not _AsyncHiredisParser or connection.health_check_interval:
        return None, None
    return parser, parser._reader.gets
