"""Django's internals: the only module that touches them.

Two fast paths of ``webchat`` lean on how Django works inside (what each buys:
docs/benchmarks.md):

* ``webchat.handler`` calls ``ASGIHandler.handle()`` itself for Direct Line requests,
  skipping the ``ThreadSensitiveContext`` that ``ASGIHandler.__call__`` opens per request;
* ``webchat.middleware`` overrides ``MiddlewareMixin.__acall__`` to run hooks inline, reads
  its ``async_mode``, and hands Django a coroutine ``process_view``, which Django adapts
  when it loads the middleware.
* ``webchat.db_threads`` keeps a connection open on its workers and closes it only when it
  failed (``errors_occurred``) and no longer answers outside a transaction
  (``in_atomic_block``), what Django's own ``close_if_unusable_or_obsolete`` reads.

Written for Django 5.2 (webchat needs it). On another Django, or with ``DEPENDENCY_FAST_PATHS =
False``, :func:`fast` is False: the handler and the middleware behave as Django's own.
"""

import django
from django.core.handlers.asgi import ASGIHandler
from django.utils.deprecation import MiddlewareMixin

from . import FastPath

VERSION = django.VERSION[:3]

#: ``[first, end)``: the Django versions the fast paths were written for.
FAST_PATH_VERSIONS = ((5, 2), (6, 0))

SUPPORTED = (FAST_PATH_VERSIONS[0] <= VERSION < FAST_PATH_VERSIONS[1]
             and callable(getattr(MiddlewareMixin, "__acall__", None))
             and callable(getattr(ASGIHandler, "handle", None)))

#: Whether the fast paths run: a supported Django and the setting on.
fast = FastPath(SUPPORTED)
