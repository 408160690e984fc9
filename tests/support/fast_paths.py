"""Tests of a fast path's own behaviour (``notifier.compat``): skipped where that fast path is
off, on a dependency version it was not written for or in a run with
``DEPENDENCY_FAST_PATHS=0`` (CI's run of the public paths). Its public-path twin runs in
every run (``@override_settings(DEPENDENCY_FAST_PATHS=False)`` classes)::

    @fast_path(django_internals, asgiref_internals)
    class HopTests(SimpleTestCase): ...
"""

import unittest


def fast_path(*compat_modules):
    """Skip the decorated test (class) unless every one of ``compat_modules`` runs fast."""
    off = [module.__name__ for module in compat_modules if not module.fast()]
    return unittest.skipIf(off, f"fast path off: {', '.join(off)}")
